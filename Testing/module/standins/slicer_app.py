"""Stand-ins for the Slicer application around a scripted module, and :func:`install` for all of them.

* :class:`ScriptedLoadableModule` — sets the module's default icon, as Slicer does for every
  scripted module (never a null icon).
* :class:`ScriptedLoadableModuleWidget` — without a parent it makes a ``qMRMLWidget`` with a
  layout, calls ``setup()`` itself and shows it (Slicer's ``ScriptedLoadableModule.py``);
  ``onReload`` only records the request (Slicer re-imports the module file).
* :class:`ScriptedLoadableModuleTest` — ``unittest.TestCase`` with ``delayDisplay`` (logged).
* :class:`Application` — ``slicer.app``: ``temporaryPath``, the module widgets, and the module
  manager's ``selectModule`` (exit the shown module, enter the new one) and ``getModuleWidget``.
* :class:`MessageBoxes` — ``slicer.util.errorDisplay`` / ``confirmOkCancelDisplay`` and
  ``QFileDialog.getExistingDirectory``, which are modal and would wait for a user: they record
  what was shown and answer from a script.
* ``slicer.util.loadVolume`` / ``loadLabelVolume`` — through the scene's real volumes logic;
  ``slicer.modules.<name>.logic()`` — the scene's registered module logics.
* ``PythonSlicer`` — a launcher script on ``PATH`` that runs this Python (Slicer's launcher sets
  up its environment and runs its Python the same way).
"""

from __future__ import annotations

import logging
import os
import sys
import types
import unittest
from pathlib import Path

import slicer
from PyQt5 import QtCore, QtGui, QtWidgets

from . import parameter_node_wrapper, qt_slicer


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        pixmap = QtGui.QPixmap(16, 16)
        pixmap.fill(QtGui.QColor("grey"))
        parent.icon = QtGui.QIcon(pixmap)  # Slicer's generic module icon


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        if not parent:
            self.parent = qt_slicer.qMRMLWidget()
            self.parent.setLayout(QtWidgets.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        self.reload_requested = False
        if not parent:
            self.setup()
            self.parent.show()

    def setup(self) -> None:
        """Slicer adds the Reload & Test section here (developer mode only)."""

    def onReload(self) -> None:
        self.reload_requested = True


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message: str, msec: int = 1000) -> None:
        logging.info("self-test: %s", message)


class MessageBoxes:
    """Records every message box; ``answers`` are popped by confirmations (True when empty)."""

    def __init__(self):
        self.shown: list[tuple[str, str]] = []
        self.answers: list[bool] = []
        self.folders: list[str] = []

    def errorDisplay(self, text, windowTitle=None, **_kwargs) -> None:
        self.shown.append(("error", text))

    def confirmOkCancelDisplay(self, text, windowTitle=None, **_kwargs) -> bool:
        self.shown.append(("confirm", text))
        return self.answers.pop(0) if self.answers else True

    def getExistingDirectory(self, parent=None, caption="", *_args) -> str:
        self.shown.append(("folder", caption))
        return self.folders.pop(0) if self.folders else ""

    def of_kind(self, kind: str) -> list[str]:
        return [text for k, text in self.shown if k == kind]


class Application:
    """``slicer.app`` and the module manager."""

    def __init__(self, temporary_path: Path, volumes_logic):
        self.temporaryPath = str(temporary_path)
        self.volumes_logic = volumes_logic
        self.widgets: dict[str, object] = {}
        self.shown: str | None = None

    def selectModule(self, name: str) -> None:
        if self.shown and self.shown != name:
            self.widgets[self.shown].exit()
        self.shown = name
        self.widgets[name].enter()

    def getModuleWidget(self, name: str):
        return self.widgets[name]

    def loadVolume(self, path, properties=None, returnNode=False):
        return self.volumes_logic.AddArchetypeVolume(str(path), (properties or {}).get("name", Path(path).stem))

    def loadLabelVolume(self, path, properties=None, returnNode=False):
        return self.volumes_logic.AddArchetypeVolume(str(path), (properties or {}).get("name", Path(path).stem), 1)


def python_slicer_launcher(folder: Path) -> Path:
    """A ``PythonSlicer`` in ``folder`` that runs this interpreter with the given arguments."""
    launcher = folder / "PythonSlicer"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def install(monkeypatch, harness, home: Path):
    """Put every stand-in in place for one test (undone by ``monkeypatch``); returns (app, boxes)."""
    qt = qt_slicer.qt_module()
    boxes = MessageBoxes()
    app = Application(home, harness.logics["Volumes"])
    loadable = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleTest):
        setattr(loadable, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setattr(QtCore.QObject, "connect", qt_slicer.pythonqt_connect, raising=False)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", loadable)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", parameter_node_wrapper)
    monkeypatch.setattr(slicer, "ScriptedLoadableModule", loadable, raising=False)
    monkeypatch.setattr(slicer, "parameterNodeWrapper", parameter_node_wrapper, raising=False)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer, "qMRMLWidget", qt_slicer.qMRMLWidget, raising=False)
    modules = {name.lower(): types.SimpleNamespace(logic=lambda logic=logic: logic) for name, logic in harness.logics.items()}
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(**modules), raising=False)
    for name, value in (("loadUI", qt_slicer.load_ui), ("childWidgetVariables", qt_slicer.child_widget_variables),
                        ("errorDisplay", boxes.errorDisplay), ("confirmOkCancelDisplay", boxes.confirmOkCancelDisplay),
                        ("selectModule", app.selectModule), ("getModuleWidget", app.getModuleWidget),
                        ("loadVolume", app.loadVolume), ("loadLabelVolume", app.loadLabelVolume)):
        monkeypatch.setattr(slicer.util, name, value)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", boxes.getExistingDirectory)
    bin_folder = home / "bin"
    bin_folder.mkdir(exist_ok=True)
    python_slicer_launcher(bin_folder)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return app, boxes
