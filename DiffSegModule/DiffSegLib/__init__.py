"""DiffSeg module library: everything the Slicer module does except its Qt panel.

* :mod:`.logic` — ``DiffSegLogic`` (MRML only; importable under ``slicer-core``)
* :mod:`.runner` — the engine child process and its progress events (no Qt, no MRML)
* :mod:`.inputs`, :mod:`.geometry`, :mod:`.volumeio`, :mod:`.results`, :mod:`.review` — the steps
* :mod:`.models`, :mod:`.paths`, :mod:`.dependencies` — model cards, locations, Python packages
* :mod:`.parameters`, :mod:`.widget` — the panel (Qt; imported only inside Slicer)

Submodules are not imported here, so importing the package costs nothing and pulls in no Qt.
"""
