"""``python -m DiffSegExtension ...`` — the way the Slicer module starts the engine."""

import sys

from DiffSegExtension.cli import main

if __name__ == "__main__":
    sys.exit(main())
