"""Where things are: the engine package, the Resources folder, the Python that runs the engine.

Two layouts are supported, and every lookup tries both:

* **installed extension** (built with CMake): ``qt-scripted-modules/`` holds ``DiffSeg.py``,
  ``DiffSegLib/``, the engine package ``DiffSegExtension/`` and ``Resources/{Icons,UI,Models}``
  side by side (see the top-level ``CMakeLists.txt``);
* **source checkout** (module path pointed at ``<repo>/DiffSegModule``): ``DiffSeg.py`` and
  ``DiffSegLib/`` live in ``<repo>/DiffSegModule``, while ``DiffSegExtension/`` and
  ``Resources/`` live one level up, in ``<repo>``.

No Qt, no MRML: importable anywhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

#: Folder that holds ``DiffSeg.py`` (and this package).
MODULE_DIR = Path(__file__).resolve().parent.parent

ENGINE_PACKAGE = "DiffSegExtension"


def _candidates() -> list[Path]:
    """Folders that may hold the engine package and ``Resources/``: installed first, then source."""
    return [MODULE_DIR, MODULE_DIR.parent]


def engine_root() -> Path:
    """The folder that contains the ``DiffSegExtension`` package (goes on the child's PYTHONPATH).

    :raises FileNotFoundError: if neither layout has the engine package.
    """
    for folder in _candidates():
        if (folder / ENGINE_PACKAGE / "__init__.py").is_file():
            return folder
    raise FileNotFoundError(
        f"The DiffSeg engine package '{ENGINE_PACKAGE}' was not found next to {MODULE_DIR} or in its "
        "parent folder. Reinstall the DiffSeg extension (or check out the whole repository).")


def resources_dir() -> Path:
    """The ``Resources`` folder holding ``Icons/``, ``UI/`` and ``Models/``."""
    for folder in _candidates():
        if (folder / "Resources" / "UI" / "DiffSeg.ui").is_file():
            return folder / "Resources"
    raise FileNotFoundError(f"DiffSeg's Resources folder (with UI/DiffSeg.ui) was not found near {MODULE_DIR}.")


def resource_path(relative: str) -> Path:
    """Absolute path of a file under ``Resources`` (e.g. ``"UI/DiffSeg.ui"``)."""
    return resources_dir() / relative


def module_icon() -> Path | None:
    """``Resources/Icons/DiffSeg.png`` if present (both layouts), else None.

    Slicer gives every scripted module a default icon (its own ``Resources/Icons/<name>.png`` next
    to the module file, else a generic one), so the module sets this one whenever the file exists:
    in a source checkout Slicer does not find it.
    """
    for folder in _candidates():
        icon = folder / "Resources" / "Icons" / "DiffSeg.png"
        if icon.is_file():
            return icon
    return None


def bundled_models_dir() -> Path:
    """``Resources/Models`` (may not exist yet in a fresh checkout)."""
    for folder in _candidates():
        models = folder / "Resources" / "Models"
        if models.is_dir():
            return models
    return MODULE_DIR.parent / "Resources" / "Models"


def engine_python() -> str:
    """The Python interpreter that runs the engine in a child process.

    Inside Slicer this is ``PythonSlicer`` (Slicer's own interpreter launcher, on ``PATH`` in the
    Slicer environment; the sibling of ``sys.executable`` otherwise). Outside Slicer (tests, the
    console of a plain Python) it is ``sys.executable``.
    """
    try:
        import slicer

        in_slicer = hasattr(slicer, "app")
    except ImportError:
        in_slicer = False
    if in_slicer:
        found = shutil.which("PythonSlicer")
        if found:
            return found
        sibling = Path(sys.executable).parent / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
        if sibling.is_file():
            return str(sibling)
        raise FileNotFoundError("PythonSlicer was not found: the engine cannot be started.")
    return sys.executable
