"""Stand-ins for Slicer's Qt layer, on PyQt5: the ``qt`` module, CTK/qMRML widgets, ``loadUI``.

* :func:`qt_module` — PythonQt's ``qt`` module: every class of QtCore/QtGui/QtWidgets under one
  name, plus PythonQt's ``obj.connect("signal(type)", slot)`` (:func:`pythonqt_connect`), which
  picks the overload named by the C++ signature as PythonQt does.
* :class:`qMRMLWidget` — emits ``mrmlSceneChanged`` from ``setMRMLScene`` (the .ui connects it to
  every node selector's ``setMRMLScene``).
* :class:`qMRMLNodeComboBox` — lists the scene's nodes of its ``nodeTypes`` (only the exact class
  when ``showChildNodeTypes`` is off, as the real one; filtered by ``addAttribute``), follows node
  additions and removals (and re-filters before a node is selected, where the real one re-filters
  on every node modification), emits ``currentNodeChanged(vtkMRMLNode*)``.
* :class:`ctkSliderWidget` (a double spin box: value, range, ``valueChanged(double)``) and
  :class:`ctkCollapsibleButton` (a group box with ``collapsed``).
* :func:`load_ui` — ``slicer.util.loadUI``: PyQt5's ``uic`` with these classes as the .ui's custom
  widgets; the .ui's signal/slot connections are made afterwards, by name.
* :func:`child_widget_variables` — ``slicer.util.childWidgetVariables``.
* :func:`connector` — the parameter-node wrapper's GUI connectors for these widget classes.

PythonQt also exposes Qt properties as Python attributes (``button.enabled = True``); PyQt5 cannot,
so the panel code uses only setters and methods, which mean the same in both.
"""

from __future__ import annotations

import io
import sys
import types
import xml.etree.ElementTree as ET

from PyQt5 import QtCore, QtGui, QtWidgets, uic

#: C++ argument types of PythonQt signatures that PyQt5 signals carry as Python objects.
_OBJECT_TYPES = {"vtkMRMLNode*", "vtkMRMLScene*"}


def pythonqt_connect(self, signature: str, slot) -> bool:
    """PythonQt's ``QObject.connect("name(type, ...)", callable)``: the named overload, else an error."""
    name, _, arguments = signature.partition("(")
    arguments = arguments.rstrip(")").replace(" ", "")
    signal = getattr(self, name)
    if arguments:
        key = object if arguments in _OBJECT_TYPES else arguments
        signal = signal[key]
    signal.connect(slot)
    return True


def qt_module() -> types.ModuleType:
    """The ``qt`` module as PythonQt shows it (:func:`slicer_app.install` adds :func:`pythonqt_connect`)."""
    module = types.ModuleType("qt", "PythonQt's qt module, stood in for by PyQt5")
    for source in (QtCore, QtGui, QtWidgets):
        for name in dir(source):
            if name.startswith("Q") or name == "Qt":
                setattr(module, name, getattr(source, name))
    return module


class qMRMLWidget(QtWidgets.QWidget):
    mrmlSceneChanged = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    def setText(self, text: str) -> None:
        self.setTitle(text)

    def setCollapsed(self, collapsed: bool) -> None:
        self.setCheckable(True)
        self.setChecked(not collapsed)


class ctkSliderWidget(QtWidgets.QDoubleSpinBox):
    """``value``/``setValue``, ``minimum``/``maximum``/``singleStep``/``decimals``, ``valueChanged(double)``."""


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    currentNodeChanged = QtCore.pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._types, self._attributes, self._children = [], [], True
        self._none, self._scene, self._tags = False, None, []
        self.currentIndexChanged[int].connect(lambda _i: self.currentNodeChanged.emit(self.currentNode()))

    # -- properties set by the .ui --------------------------------------------------------------
    def setNodeTypes(self, types_: list) -> None:
        self._types = list(types_)
        self._refresh()

    def setShowChildNodeTypes(self, show: bool) -> None:
        self._children = bool(show)
        self._refresh()

    def setNoneEnabled(self, enabled: bool) -> None:
        self._none = bool(enabled)
        self._refresh()

    def setAddEnabled(self, _enabled: bool) -> None:
        """Adding/removing nodes from the combo's menu is not stood in for."""

    setRemoveEnabled = setAddEnabled

    def addAttribute(self, class_name: str, name: str, value) -> None:
        self._attributes.append((class_name, name, str(value)))
        self._refresh()

    # -- scene ------------------------------------------------------------------------------------
    def setMRMLScene(self, scene) -> None:
        """Follow ``scene``; the observers go with the widget (as qvtkConnect's do)."""
        self._forget_scene()
        self._scene = scene
        tags = [scene.AddObserver(e, lambda *_: self._refresh())
                for e in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent)]
        self._tags = tags
        self.destroyed.connect(lambda *_: [scene.RemoveObserver(tag) for tag in tags])
        self._refresh()

    def _forget_scene(self) -> None:
        for tag in self._tags:
            self._scene.RemoveObserver(tag)
        self._tags = []

    def _nodes(self) -> list:
        if self._scene is None:
            return []
        found = []
        for class_name in self._types:
            collection = self._scene.GetNodesByClass(class_name)
            for i in range(collection.GetNumberOfItems()):
                node = collection.GetItemAsObject(i)
                if not self._children and node.GetClassName() != class_name:
                    continue
                if all(node.GetAttribute(a) == v for c, a, v in self._attributes if node.IsA(c)):
                    found.append(node)
        return found

    def _refresh(self) -> None:
        current = self.currentNode()
        nodes = self._nodes()
        self.blockSignals(True)
        self.clear()
        if self._none:
            self.addItem("None", "")
        for node in nodes:
            self.addItem(node.GetName(), node.GetID())
        index = self.findData(current.GetID()) if current is not None and current in nodes else -1
        # Without "None", the real combo box selects the first node as soon as there is one.
        self.setCurrentIndex(index if index >= 0 else (0 if self._none or nodes else -1))
        self.blockSignals(False)
        if self.currentNode() is not current:
            self.currentNodeChanged.emit(self.currentNode())

    def currentNode(self):
        node_id = self.currentData()
        return self._scene.GetNodeByID(node_id) if node_id and self._scene is not None else None

    def setCurrentNode(self, node) -> None:
        self._refresh()  # the real one re-filters whenever a node is modified (e.g. gets an attribute)
        index = self.findData(node.GetID()) if node is not None else (0 if self._none else -1)
        self.setCurrentIndex(index)


CUSTOM_WIDGETS = {cls.__name__: cls for cls in (qMRMLWidget, qMRMLNodeComboBox, ctkSliderWidget, ctkCollapsibleButton)}


def load_ui(path: str):
    """``slicer.util.loadUI``: the .ui's top widget, custom widgets included, connections made."""
    tree = ET.parse(path)
    root = tree.getroot()
    connections = root.find("connections")
    wiring = []
    if connections is not None:
        wiring = [(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                  for c in connections]
        root.remove(connections)
    for name, cls in CUSTOM_WIDGETS.items():  # uic imports each custom widget from its header's module
        sys.modules.setdefault(name, types.SimpleNamespace(**{name: cls}))
    text = io.StringIO(ET.tostring(root, encoding="unicode"))
    widget = uic.loadUi(text)
    top = root.find("widget").get("name")
    find = lambda name: widget if name == top else widget.findChild(QtCore.QObject, name)  # noqa: E731
    for sender, signal, receiver, slot in wiring:
        pythonqt_connect(find(sender), signal, getattr(find(receiver), slot.split("(")[0]))
    return widget


def child_widget_variables(widget) -> types.SimpleNamespace:
    """``slicer.util.childWidgetVariables``: every named child as an attribute."""
    children = widget.findChildren(QtCore.QObject)
    return types.SimpleNamespace(**{c.objectName(): c for c in children if c.objectName()})


def connector(widget, parameter):
    """(read, write, change signal) of a bound widget, as the real wrapper's GUI connectors do it."""
    if isinstance(widget, qMRMLNodeComboBox):
        return widget.currentNode, widget.setCurrentNode, widget.currentNodeChanged
    if isinstance(widget, QtWidgets.QCheckBox):
        return widget.isChecked, widget.setChecked, widget.toggled
    if isinstance(widget, QtWidgets.QComboBox):  # a Choice: the connector fills the combo with the choices
        widget.blockSignals(True)
        widget.clear()
        for choice in next(v for v in parameter.validators if hasattr(v, "choices")).choices:
            widget.addItem(str(choice))
        widget.blockSignals(False)
        return widget.currentText, widget.setCurrentText, widget.currentTextChanged
    if isinstance(widget, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):  # range from WithinRange
        for bounds in (v for v in parameter.validators if hasattr(v, "maximum")):
            widget.setRange(bounds.minimum, bounds.maximum)
        return widget.value, widget.setValue, widget.valueChanged
    raise TypeError(f"no GUI connector for {type(widget).__name__}")

