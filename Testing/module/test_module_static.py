"""Static checks of the Slicer side that need no Slicer: .ui ↔ code ↔ parameters, CMake lists, icon."""

from __future__ import annotations

import ast
import py_compile
import re
import subprocess
import sys
import tokenize
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "DiffSegModule"
UI_FILE = REPO / "Resources" / "UI" / "DiffSeg.ui"
MODALITIES = ("flair", "t1", "t1ce", "t2")

#: Widget classes that parameterNodeWrapper can bind, per annotated type (Slicer docs, "GUI Connection").
CONNECTORS = {
    "int": {"QSpinBox", "QSlider", "ctkSliderWidget"},
    "float": {"ctkSliderWidget", "QDoubleSpinBox", "ctkDoubleSpinBox", "ctkDoubleSlider"},
    "str": {"QComboBox", "ctkComboBox", "QLineEdit", "QLabel", "QTextEdit"},
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton"},
    "node": {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyTreeView"},
}


def _ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _dynamic_property(widget: ET.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name and prop.get("stdset") == "0":
            return prop.findtext("string")
    return None


def _parameters() -> dict[str, str]:
    """name → annotation source of DiffSegParameterNode (read with ast: slicer-core cannot import it)."""
    tree = ast.parse((MODULE / "DiffSegLib" / "parameters.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffSegParameterNode")
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body if isinstance(n, ast.AnnAssign)}


def _used_ui_names() -> set[str]:
    from DiffSegLib.panel import GUI_BINDINGS

    names = set(GUI_BINDINGS.values())
    for path in (MODULE / "DiffSegLib" / "widget.py", MODULE / "DiffSeg.py"):
        text = path.read_text()
        names |= set(re.findall(r"\bui\.([A-Za-z_]\w*)", text))
        for template in re.findall(r'getattr\(ui, f"\{row\.modality\}(\w+)"\)', text):
            names |= {f"{m}{template}" for m in MODALITIES}
    return names


def test_every_widget_the_code_uses_exists_in_the_ui():
    used, widgets = _used_ui_names(), _ui_widgets()
    assert len(used) > 15
    missing = sorted(used - set(widgets))
    assert not missing, f"used in the code but not in DiffSeg.ui: {missing}"


def test_ui_is_a_qmrmlwidget_whose_node_selectors_get_the_scene():
    root = ET.parse(UI_FILE).getroot()
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget"
    selectors = {n for n, w in _ui_widgets().items() if w.get("class") == "qMRMLNodeComboBox"}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)" and c.findtext("sender") == top.get("name")}
    assert selectors and selectors == connected
    custom = {c.findtext("class") for c in root.iter("customwidget")}
    used_classes = {w.get("class") for w in _ui_widgets().values()}
    assert {c for c in used_classes if c.startswith(("ctk", "qMRML"))} <= custom


def test_parameters_and_ui_bindings_match():
    params, widgets = _parameters(), _ui_widgets()
    bound = {_dynamic_property(w, "SlicerParameterName"): (name, w.get("class")) for name, w in widgets.items()
             if _dynamic_property(w, "SlicerParameterName")}
    assert set(bound) <= set(params), f"bound to unknown parameters: {sorted(set(bound) - set(params))}"
    assert set(params) - set(bound) == {"model", "region", "includePoints", "excludePoints"}, \
        "every parameter but the model, region and point lists (set by code) is bound"
    from DiffSegLib.panel import GUI_BINDINGS

    assert GUI_BINDINGS == {parameter: name for parameter, (name, _) in bound.items()}, \
        "the widget binds exactly what the .ui names"
    for parameter, (widget_name, widget_class) in bound.items():
        annotation = params[parameter]
        kind = "node" if "vtkMRML" in annotation else next(k for k in ("int", "float", "str", "bool") if k in annotation)
        assert widget_class in CONNECTORS[kind], f"{widget_name} ({widget_class}) cannot bind {parameter}: {annotation}"
        if kind == "node":
            types = [s.text for s in widgets[widget_name].iter("string")
                     if s.text and s.text.startswith("vtkMRML")]
            assert types == [annotation], f"{widget_name} lists {types}, the parameter is {annotation}"
        if kind == "str" and widget_class in ("QComboBox", "ctkComboBox"):
            assert "Choice" in annotation, f"{parameter}: a combo box binding needs a Choice validator"


#: Qt properties that PythonQt (Slicer) exposes as attributes and PyQt5 (the Qt tests) as methods.
PROPERTY_NAMES = ("text", "enabled", "toolTip", "value", "checked", "count", "visible", "currentIndex", "maximum")


@pytest.mark.parametrize("name", ["DiffSegLib/widget.py", "DiffSeg.py"])
def test_qt_code_uses_only_calls_that_mean_the_same_in_pythonqt_and_pyqt(name):
    """``button.enabled = x`` works only in PythonQt, ``spin.value()`` only in PyQt5: the Qt session test
    proves the panel's code only if it uses neither (setters and other methods mean the same in both)."""
    with open(MODULE / name, "rb") as source:  # code only: strings and comments blanked
        code = " ".join('""' if t.type == tokenize.STRING else t.string
                        for t in tokenize.tokenize(source.readline) if t.type != tokenize.COMMENT)
    properties = "|".join(PROPERTY_NAMES)
    assert re.findall(rf"\.\s*({properties})\b", code) == [], "a Qt property as attribute, setter target or getter"


def test_module_python_files_compile():
    for path in [*MODULE.rglob("*.py")]:
        py_compile.compile(str(path), doraise=True)


def test_logic_imports_without_qt_or_torch():
    code = ("import sys; sys.path[:0] = [sys.argv[1]]; import DiffSegLib.logic, DiffSegLib.review, DiffSegLib.runner; "
            "bad = [m for m in ('qt', 'ctk', 'torch', 'slicer.ScriptedLoadableModule', 'DiffSegLib.widget') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code, str(MODULE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _cmake_list(path: Path, variable: str) -> list[str]:
    text = path.read_text()
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not found in {path}"
    return [line.strip() for line in match.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def test_every_module_python_file_is_listed_in_the_module_cmakelists():
    listed = {item.replace("${MODULE_NAME}", "DiffSeg") for item in _cmake_list(MODULE / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS")}
    present = {p.relative_to(MODULE).as_posix() for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts}
    assert present - listed == set(), f"not installed: {sorted(present - listed)}"
    assert listed - present == set(), f"listed but missing: {sorted(listed - present)}"
    text = (MODULE / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_engine_and_resources_are_listed_in_the_top_level_cmakelists():
    top = REPO / "CMakeLists.txt"
    scripts = set(_cmake_list(top, "DIFFSEG_ENGINE_SCRIPTS"))
    resources = set(_cmake_list(top, "DIFFSEG_SHARED_RESOURCES"))
    engine = {p.relative_to(REPO).as_posix() for p in (REPO / "DiffSegExtension").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    shipped = {p.relative_to(REPO).as_posix() for folder in ("Icons", "UI", "Models")
               for p in (REPO / "Resources" / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert engine - scripts == set(), f"engine files not installed: {sorted(engine - scripts)}"
    assert shipped - resources == set(), f"resources not installed: {sorted(shipped - resources)}"
    for item in scripts | resources:
        assert (REPO / item).is_file(), f"listed in CMakeLists.txt but missing: {item}"


def test_top_level_cmakelists_is_a_slicer_extension():
    text = (REPO / "CMakeLists.txt").read_text()
    for needle in ("cmake_minimum_required", "project(DiffSeg)", "EXTENSION_HOMEPAGE", 'EXTENSION_CATEGORY "Segmentation"',
                   "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                   'EXTENSION_DEPENDS "PyTorch"', "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                   "add_subdirectory(DiffSegModule)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                   "include(${Slicer_EXTENSION_CPACK})", "SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR}",
                   "DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}",
                   "INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}"):
        assert needle in text, needle


def test_icon_is_a_128_pixel_png():
    data = (REPO / "Resources" / "Icons" / "DiffSeg.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (128, 128)


def test_engine_requirements_for_slicer_match_pyproject():
    sys.path.insert(0, str(MODULE))
    from DiffSegLib import dependencies

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() for d in declared}
    ours = {r.split(">")[0].lower() for r in dependencies.ENGINE_REQUIREMENTS.values()}
    ours |= {"torch"} | {n.lower() for n in dependencies.SHIPPED_BY_SLICER}
    assert ours == names, f"module installs {sorted(ours)}, the engine declares {sorted(names)}"


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in MODULE.rglob("*.py")
                                        if "__pycache__" not in p.parts))
def test_module_files_stay_small(path):
    assert len((REPO / path).read_text().splitlines()) <= 400


def test_panel_rendering_from_the_ui(tmp_path):
    """The schematic panel image (for the README) is drawn from DiffSeg.ui without Qt."""
    from render_panel import render
    from PIL import Image

    image = Image.open(render(tmp_path / "panel.png", expand_region=True))
    assert image.width == 460 and image.height > 600


def test_minimum_slicer_version_follows_the_engines_python_requirement():
    """pyproject's requires-python → the module's check → the README: one version everywhere."""
    sys.path.insert(0, str(MODULE))
    from DiffSegLib import dependencies

    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert tuple(int(part) for part in required.removeprefix(">=").split(".")) == dependencies.MIN_PYTHON
    readme = (REPO / "README.md").read_text()
    stated = set(re.findall(r"Slicer ≥ (\d+\.\d+)", readme))
    assert stated == {dependencies.MIN_SLICER}, f"README states Slicer ≥ {sorted(stated)}"
    assert f"Slicer {dependencies.MIN_SLICER}" in dependencies.python_problem((3, 9, 10))


def _engine_constant(relative: str, name: str):
    """A literal module-level constant of an engine file, read with ast (no torch import)."""
    tree = ast.parse((REPO / "DiffSegExtension" / relative).read_text())
    return next(ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets))


def test_module_inference_defaults_ensembles_and_samplers_are_the_engines():
    """A card without ``inference_defaults`` runs with the same settings from the panel as from the CLI, and the
    panel offers exactly the ``--ensemble`` and ``--sampler`` choices the engine accepts."""
    sys.path.insert(0, str(MODULE))
    from DiffSegLib import logic, models

    assert models.DEFAULT_INFERENCE == _engine_constant("model_card.py", "DEFAULT_INFERENCE")
    assert logic.ENSEMBLES == _engine_constant("inference/segment.py", "ENSEMBLES")
    assert "Choice(list(ENSEMBLES))" in _parameters()["ensemble"]
    tree = ast.parse((REPO / "DiffSegExtension" / "diffusion" / "samplers" / "__init__.py").read_text())
    engine = next(n.value for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "SAMPLERS")
    assert set(models.SAMPLERS) == {ast.literal_eval(key) for key in engine.keys}
    assert "Choice(list(SAMPLERS))" in _parameters()["sampler"]


def test_the_warm_engines_flag_is_the_one_the_engine_waits_on():
    """A mismatch would not fail a run: the waiting engine would exit at once and every run start cold."""
    sys.path.insert(0, str(MODULE))
    from DiffSegLib import warmengines

    assert warmengines.WAIT_FLAG == _engine_constant("__main__.py", "WAIT_FLAG")
