"""Stand-in for ``slicer.parameterNodeWrapper`` (Slicer's ``Base/Python/slicer/parameterNodeWrapper``).

Kept from the real one, because the panel depends on it:

* ``@parameterNodeWrapper`` turns annotated class attributes into typed properties stored in a
  real ``vtkMRMLScriptedModuleNode``: ``int``/``float``/``str``/``bool`` as parameter strings,
  MRML node types as node references; defaults are written when absent; ``Choice`` and
  ``WithinRange`` validators raise ``ValueError``; ``wrapper.parameterNode`` is the MRML node.
* ``connectParametersToGui(mapping)`` binds widgets two-way and returns a tag on every version;
  ``disconnectGui(tag)`` unbinds. On every modification of the node, *every* bound widget is
  rewritten from the node, with the widget's signals live (so a widget set without setting its
  parameter is pushed back, and emits ``valueChanged``).
* ``connectGui(ui)`` returns None, as on Slicer 5.6 and 5.8 (the tag is returned from 5.10).

Not kept: parameter packs, serializers for other types, ``createGui``, units.
"""

from __future__ import annotations

import itertools
import typing

import vtk


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of {self.choices}")


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{value!r} is not within [{self.minimum}, {self.maximum}]")


def _is_node_type(kind) -> bool:
    return isinstance(kind, type) and kind.__name__.startswith("vtkMRML")


class _Parameter:
    """One annotated attribute: its type, validators and default."""

    def __init__(self, name: str, annotation, default):
        if typing.get_origin(annotation) is typing.Annotated:
            self.kind, *self.validators = typing.get_args(annotation)
        else:
            self.kind, self.validators = annotation, []
        self.name = name
        self.default = None if _is_node_type(self.kind) else (default if default is not None else self.kind())

    def read(self, node):
        if _is_node_type(self.kind):
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        return text == "True" if self.kind is bool else self.kind(text)

    def write(self, node, value) -> None:
        if _is_node_type(self.kind):
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
            return
        value = self.kind(value)
        for validator in self.validators:
            validator.validate(value)
        node.SetParameter(self.name, str(value))


class _Binding:
    """One widget bound to one parameter (the real wrapper's GuiConnector)."""

    def __init__(self, wrapper, parameter: _Parameter, widget):
        from . import qt_slicer

        self.wrapper, self.parameter, self.widget = wrapper, parameter, widget
        self.read_widget, self.write_widget, self.signal = qt_slicer.connector(widget, parameter)
        self.signal.connect(self.widget_changed)
        self.writing = False

    def widget_changed(self, *_args) -> None:
        if not self.writing:
            setattr(self.wrapper, self.parameter.name, self.read_widget())

    def update_widget(self) -> None:
        self.writing = True
        try:
            self.write_widget(getattr(self.wrapper, self.parameter.name))
        finally:
            self.writing = False

    def disconnect(self) -> None:
        self.signal.disconnect(self.widget_changed)


class _Wrapper:
    """Base of the generated classes."""

    _parameters: dict[str, _Parameter] = {}
    _tags = itertools.count(1)

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        self._bindings: dict[int, list[_Binding]] = {}
        self._observer = None
        for parameter in self._parameters.values():
            if not _is_node_type(parameter.kind) and not parameterNode.GetParameter(parameter.name):
                parameter.write(parameterNode, parameter.default)

    def connectGui(self, ui):
        """As on Slicer 5.6/5.8: binds, but returns None (so the caller can never disconnect)."""
        self.connectParametersToGui({p.name: getattr(ui, w) for p in self._parameters.values()
                                     for w in dir(ui) if _bound_name(getattr(ui, w)) == p.name})

    def connectParametersToGui(self, mapping: dict) -> int:
        tag = next(self._tags)
        self._bindings[tag] = [_Binding(self, self._parameters[name], widget) for name, widget in mapping.items()]
        if self._observer is None:
            self._observer = self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, self._update_gui)
        self._update_gui()
        return tag

    def disconnectGui(self, tag) -> None:
        for binding in self._bindings.pop(tag, []):
            binding.disconnect()
        if not self._bindings and self._observer is not None:
            self.parameterNode.RemoveObserver(self._observer)
            self._observer = None

    @property
    def bound_widgets(self) -> int:
        """How many widget bindings are live (a test hook; the real wrapper keeps them privately)."""
        return sum(len(b) for b in self._bindings.values())

    def _update_gui(self, *_args) -> None:
        for bindings in list(self._bindings.values()):
            for binding in bindings:
                binding.update_widget()


def _bound_name(widget):
    property_of = getattr(widget, "property", None)
    return property_of("SlicerParameterName") if callable(property_of) else None


def parameterNodeWrapper(cls):
    """Class decorator: typed properties over a ``vtkMRMLScriptedModuleNode`` (see the module docstring)."""
    parameters = {name: _Parameter(name, annotation, cls.__dict__.get(name))
                  for name, annotation in typing.get_type_hints(cls, include_extras=True).items()}

    def make_property(parameter: _Parameter):
        return property(lambda self: parameter.read(self.parameterNode),
                        lambda self, value: parameter.write(self.parameterNode, value))

    namespace = {name: make_property(p) for name, p in parameters.items()}
    namespace.update(_parameters=parameters, __doc__=cls.__doc__, __module__=cls.__module__)
    return type(cls.__name__, (_Wrapper,), namespace)
