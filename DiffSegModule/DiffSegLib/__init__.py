"""DiffSeg module library: everything the Slicer module does except its Qt panel.

* :mod:`.logic` — ``DiffSegLogic`` (MRML only; importable under ``slicer-core``)
* :mod:`.runner` — the engine child process and its progress events (no Qt, no MRML)
* :mod:`.inputs`, :mod:`.suspicious`, :mod:`.geometry`, :mod:`.volumeio`, :mod:`.results`,
  :mod:`.review` — the steps
* :mod:`.models`, :mod:`.paths`, :mod:`.dependencies` — model cards, locations, Python packages
* :mod:`.panel`, :mod:`.panelview` — the panel's behaviour and what it shows (no Qt; tested under
  ``slicer-core``)
* :mod:`.parameters`, :mod:`.widget` — the panel's parameter node and Qt side (inside Slicer)

Submodules are not imported here, so importing the package costs nothing and pulls in no Qt.
"""
