"""The panel's own code (``DiffSeg.py``, ``DiffSegLib/widget.py``) under real Qt, driven as a user would.

Qt is PyQt5 on the offscreen platform; the .ui file, the MRML scene, the parameter node and the
engine (``python -m DiffSegExtension`` through a ``PythonSlicer`` launcher) are real. What exists
only in Slicer is replaced by the documented stand-ins in ``standins/``. One scripted session:
load volumes, choose a model, Apply, progress, Cancel, Apply again, threshold, click a ranked
slice, re-run here, refine (cancelled, then run) and undo, a run that ends while the module is hidden,
leave and re-enter, close the scene, the self-test, reload, cleanup. Each defect of issue 9 that lives in this code is asserted
where the session passes it. A second session runs a region model and drives the region selector.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import REPO, write_case  # noqa: E402

QtWidgets = pytest.importorskip("PyQt5.QtWidgets")
from PyQt5 import QtCore, QtGui  # noqa: E402

from DiffSegLib import selftest  # noqa: E402
from standins import slicer_app  # noqa: E402

APP = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
PHANTOM_MODEL = REPO / "Resources" / "Models" / "phantom"
pytestmark = pytest.mark.slow


def slicer_array(node) -> np.ndarray:
    """A volume node's voxels (KJI), as ``slicer.util.arrayFromVolume`` gives them."""
    import slicer

    return slicer.util.arrayFromVolume(node)


def wait_until(predicate, timeout: float = 120.0) -> None:
    """Run the Qt event loop (timers: polling, threshold) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting in the Qt event loop"
        APP.processEvents()
        time.sleep(0.02)
    APP.processEvents()


def settle(seconds: float = 0.2) -> None:
    """Run the Qt event loop for a while (longer than the threshold's settle timer)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        APP.processEvents()
        time.sleep(0.02)


@pytest.fixture
def session(monkeypatch, harness, tmp_path):
    """The stand-ins installed and the module file imported fresh; removed afterwards."""
    home = tmp_path / "slicer-app"
    home.mkdir()
    app, boxes = slicer_app.install(monkeypatch, harness, home)
    for name in ("DiffSeg", "DiffSegLib.widget", "DiffSegLib.parameters"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import DiffSeg

    yield types.SimpleNamespace(app=app, boxes=boxes, module=DiffSeg, harness=harness, tmp=tmp_path)
    for name in ("DiffSeg", "DiffSegLib.widget", "DiffSegLib.parameters"):
        sys.modules.pop(name, None)


def test_icon_is_the_modules_own(session):
    """Slicer's default icon is never null; DiffSeg's replaces it (defect 6)."""
    parent = types.SimpleNamespace()
    session.module.DiffSeg(parent)
    assert parent.title == "DiffSeg" and parent.categories == ["Segmentation"]
    assert QtGui.QIcon(str(REPO / "Resources" / "Icons" / "DiffSeg.png")).availableSizes() == \
        parent.icon.availableSizes() == [QtGui.QPixmap(128, 128).size()]


def test_scripted_session(session):
    s, harness = session, session.harness
    ui_of = lambda widget: widget.panel.ui  # noqa: E731

    # A widget made without a parent runs setup() itself and keeps what it made (defect 7).
    widget = s.module.DiffSegWidget()
    assert widget.panel is not None and widget.logic is widget.panel.logic
    s.app.widgets["DiffSeg"] = widget
    ui, controller = ui_of(widget), widget.panel.controller

    # Load volumes (after the panel exists: auto-assign follows node additions), enter the module.
    case = selftest.PHANTOM  # a case where the bundled phantom model finds the tumour with few steps
    files = write_case(s.tmp / "data", seed=case["seed"], shape=case["shape"], spacing=case["spacing"])
    s.app.selectModule("DiffSeg")
    volumes = {m: harness.load_volume(files[m], f"case3_{m}") for m in ("flair", "t1", "t1ce", "t2")}
    wait_until(lambda: controller.params.flairVolume is not None)
    assert ui.flairVolumeSelector.currentNode().GetID() == volumes["flair"].GetID()

    # Choose the phantom model in the combo box; its card's defaults reach the bound widgets.
    combo = ui.modelComboBox
    index = combo.findData(str(PHANTOM_MODEL))
    combo.setCurrentIndex(index)
    combo.activated[int].emit(index)
    assert controller.card().name == "phantom" and ui.membersSpinBox.value() == 5 and ui.stepsSpinBox.value() == 10
    assert ui.ensembleComboBox.currentText() == controller.card().default("ensemble")
    assert [ui.ensembleComboBox.itemText(i) for i in range(ui.ensembleComboBox.count())] == ["adaptive", "full"]
    for modality, node in volumes.items():
        assert getattr(ui, f"{modality}VolumeSelector").currentNode().GetID() == node.GetID()
    assert ui.t1Label.text() == "T1 (reference):" and ui.applyButton.isEnabled()
    # "Load from folder...": cancelled, a folder that is no model, and a copied model folder.
    copied = s.tmp / "my-model"
    shutil.copytree(PHANTOM_MODEL, copied)
    s.boxes.folders = ["", str(s.tmp), str(copied)]
    for _ in range(3):
        last = combo.findData("")
        combo.setCurrentIndex(last)
        combo.activated[int].emit(last)
    assert "is not a DiffSeg model folder" in s.boxes.of_kind("error")[0]
    assert combo.itemData(combo.currentIndex()) == str(copied) and combo.findData(str(copied)) >= 0

    # Settings through the widgets (GUI → parameter node), and the sampler hint follows.
    ui.samplerComboBox.setCurrentText("ddim")
    ui.membersSpinBox.setValue(4)
    ui.stepsSpinBox.setValue(200)
    ui.ensembleComboBox.setCurrentText("adaptive")
    assert (controller.params.sampler, controller.params.members, controller.params.steps) == ("ddim", 4, 200)
    assert controller.params.ensemble == "adaptive"
    assert ui.qualityHintLabel.text().endswith("= 800 network passes per slice near the tumour; adaptive ensemble: "
                                               "fewer away from it, where only a first screening sample runs.")
    ui.ensembleComboBox.setCurrentText("full")
    assert ui.qualityHintLabel.text().endswith("4 members x 200 steps = 800 network passes per slice.")

    # Apply, progress, Cancel: the scene is untouched.
    before = harness.snapshot()
    ui.applyButton.click()
    assert ui.applyButton.text() == "Cancel" and not ui.progressBar.isHidden()
    wait_until(lambda: ui.progressBar.maximum() > 0 and ui.progressBar.value() > 0)
    assert ": step " in ui.statusLabel.text()
    ui.applyButton.click()
    assert ui.applyButton.text() == "Apply" and ui.progressBar.isHidden()
    assert ui.statusLabel.text() == "Cancelled; nothing was added to the scene." and harness.snapshot() == before

    # Suspicious inputs ask first (declined here), then Apply again for real.
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk_shift(12.0)
    transform.SetMatrixTransformToParent(shift)
    volumes["t2"].SetAndObserveTransformNodeID(transform.GetID())
    assert ui.applyButton.isEnabled()
    s.boxes.answers = [False]
    ui.applyButton.click()
    assert "'case3_t2' (T2) covers only" in s.boxes.of_kind("confirm")[-1] and controller.handle is None
    volumes["t2"].SetAndObserveTransformNodeID(None)
    ui.stepsSpinBox.setValue(selftest.RUN["steps"])
    ui.membersSpinBox.setValue(selftest.RUN["members"])
    ui.applyButton.click()
    wait_until(lambda: controller.handle is None)
    first = controller.params.outputSegmentation
    assert first is not None and ui.outputSegmentationSelector.currentNode().GetID() == first.GetID()
    assert ui.statusLabel.text().startswith("Done in ") and ui.rerunButton.isEnabled()
    assert ui.uncertainSlicesListWidget.count() > 0 and ui.thresholdSliderWidget.value() == 0.5
    assert first.GetAttribute("DiffSeg.Ensemble") == "full"

    # Threshold: slider → parameter → (after it settles) the segment.
    ui.thresholdSliderWidget.setValue(0.3)
    wait_until(lambda: first.GetAttribute("DiffSeg.Threshold") == "0.3")

    # Click the most uncertain slice: the slice view is centred on it.
    item = ui.uncertainSlicesListWidget.item(0)
    ui.uncertainSlicesListWidget.itemClicked.emit(item)
    from DiffSegLib import geometry, panelview, review

    reference = volumes["t1"]
    expected = geometry.slice_center_world(reference, review.slice_axis_of(first), item.data(QtCore.Qt.UserRole))
    matrix = harness.slice_node.GetSliceToRAS()
    assert np.allclose([matrix.GetElement(r, 3) for r in range(3)], expected, atol=1e-3)

    # Re-run here on a slice range: merged into the same result, its own time reported.
    ui.restrictSlicesCheckBox.setChecked(True)
    ui.sliceStartSpinBox.setValue(10)
    ui.sliceStopSpinBox.setValue(13)
    ui.rerunMembersSpinBox.setValue(3)
    ui.rerunButton.click()
    wait_until(lambda: controller.handle is None)
    assert first.GetAttribute("DiffSeg.LastRefinement").startswith("slices 10:13 with 3 members (full)")
    assert ui.statusLabel.text() == panelview.done_status(first.GetAttribute("DiffSeg.Seconds"))
    ui.restrictSlicesCheckBox.setChecked(False)

    # Refine: disabled without guidance; placing makes a coloured point list and turns on point placement; a point
    # enables Refine, which turns into Cancel while it runs (the scene stays as it was); a refinement makes the
    # point's voxel tumour in the same nodes and empties the list; Undo puts the result back exactly.
    from DiffSegLib import results

    assert not ui.refineButton.isEnabled() and ui.refineButton.toolTip() == panelview.NO_GUIDANCE
    assert not ui.undoRefineButton.isEnabled()
    ui.placeExcludeButton.click()
    ui.placeIncludeButton.click()
    include, exclude = controller.params.includePoints, controller.params.excludePoints
    interaction = harness.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    selection = harness.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    assert interaction.GetCurrentInteractionMode() == interaction.Place and selection.GetActivePlaceNodeID() == include.GetID()
    assert include.GetDisplayNode().GetSelectedColor() != exclude.GetDisplayNode().GetSelectedColor()
    probability_node = results.output_volumes(first)[0]
    probability = np.array(slicer_array(probability_node))
    k = int(np.argmax((probability >= 0.3).sum(axis=(1, 2))))
    j, i = np.argwhere(probability[k] == 0)[len(np.argwhere(probability[k] == 0)) // 2]
    include.AddControlPointWorld(*(geometry.ijk_to_ras(reference) @ [i, j, k, 1.0])[:3])
    assert ui.refineButton.isEnabled() and ui.guidanceLabel.text() == "1 include, 0 exclude points."
    before = harness.snapshot()
    ui.refineButton.click()
    assert ui.refineButton.text() == "Cancel" and not ui.rerunButton.isEnabled()
    ui.refineButton.click()
    assert ui.refineButton.text() == "Refine" and ui.statusLabel.text() == panelview.STATUS_CANCELLED
    assert harness.snapshot() == before
    ui.refineButton.click()
    wait_until(lambda: controller.handle is None)
    assert slicer_array(probability_node)[k, j, i] == 1.0 and results.output_volumes(first)[0] is probability_node
    assert include.GetNumberOfControlPoints() == 0 and not ui.refineButton.isEnabled()
    assert ui.statusLabel.text().startswith("Done") and ui.undoRefineButton.isEnabled()
    ui.undoRefineButton.click()
    assert np.array_equal(slicer_array(probability_node), probability) and not ui.undoRefineButton.isEnabled()
    assert ui.statusLabel.text() == panelview.STATUS_UNDONE

    # Another result (T1 and T2 swapped: new inputs) that ends while the module is hidden (defect 10);
    # on re-entry it is under review, and the slider shows *its* threshold, not the first one's (defect 1).
    ui.t1VolumeSelector.setCurrentNode(volumes["t2"])
    ui.t2VolumeSelector.setCurrentNode(volumes["t1"])
    ui.applyButton.click()
    widget.exit()
    assert controller.params.bound_widgets == 0
    wait_until(lambda: controller.handle is None)
    second = controller.params.outputSegmentation
    assert second.GetID() != first.GetID()
    widget.enter()
    assert ui.outputSegmentationSelector.currentNode().GetID() == second.GetID()
    assert ui.thresholdSliderWidget.value() == 0.5 and first.GetAttribute("DiffSeg.Threshold") == "0.3"
    settle()  # give a threshold echo (there must be none) the time to act
    assert second.GetAttribute("DiffSeg.Threshold") == "0.5"
    ui.outputSegmentationSelector.setCurrentNode(first)
    assert ui.thresholdSliderWidget.value() == 0.3

    # Leave and re-enter three times: one set of bindings, settings kept (defect 3).
    for _ in range(3):
        widget.exit()
        assert controller.params.bound_widgets == 0
        widget.enter()
        assert controller.params.bound_widgets == 18
    assert ui.samplerComboBox.currentText() == "ddim" and controller.params.sampler == "ddim"

    # Close the scene: a fresh parameter node, bound at once since the panel is shown.
    harness.scene.Clear(0)
    assert controller.params is not None and controller.params.outputSegmentation is None
    assert controller.params.bound_widgets == 18 and not ui.applyButton.isEnabled()
    assert ui.applyButton.toolTip().startswith("Select a volume for")

    # The self-test's steps, after the module was left (defect 5).
    widget.exit()
    s.module.DiffSegTest().runTest()
    assert controller.params.model == str(PHANTOM_MODEL)

    # Reload drops the library modules so they are imported again; cleanup leaves no observer.
    saved = {n: m for n, m in sys.modules.items() if n == "DiffSegLib" or n.startswith("DiffSegLib.")}
    widget.onReload()
    reloaded = [n for n in saved if n in sys.modules]
    sys.modules.update(saved)
    assert reloaded == [] and widget.reload_requested
    widget.cleanup()
    assert widget.panel.Observations == [] and controller.Observations == []


def test_region_model_session(session, tiny_region_run):
    """A region model (FLAIR required, T1ce and T2 optional) loaded from its folder: optional selectors left
    empty, Apply, then the region selector drives the threshold (each region keeps its own) and the ranking."""
    s, harness = session, session.harness
    widget = s.module.DiffSegWidget()
    s.app.widgets["DiffSeg"] = widget
    ui, controller = widget.panel.ui, widget.panel.controller
    files = write_case(s.tmp / "data", seed=2)
    s.app.selectModule("DiffSeg")
    volumes = {m: harness.load_volume(files[m], f"case2_{m}") for m in ("flair", "t1ce", "t2")}
    wait_until(lambda: controller.params.flairVolume is not None)
    s.boxes.folders = [str(tiny_region_run)]
    last = ui.modelComboBox.findData("")
    ui.modelComboBox.setCurrentIndex(last)
    ui.modelComboBox.activated[int].emit(last)
    assert controller.card().regions == ("wt", "tc", "et")
    assert (ui.flairLabel.text(), ui.t1ceLabel.text(), ui.t2Label.text()) == \
        ("FLAIR (reference):", "T1ce (contrast) (optional):", "T2 (optional):")
    assert ui.t1Label.isHidden() and ui.t1VolumeSelector.isHidden() and ui.tumorRegionComboBox.isHidden()
    ui.t1ceVolumeSelector.setCurrentNode(None)
    ui.t2VolumeSelector.setCurrentNode(None)
    assert controller.params.t2Volume is None and ui.applyButton.isEnabled()
    ui.flairVolumeSelector.setCurrentNode(None)
    assert not ui.applyButton.isEnabled() and ui.applyButton.toolTip().startswith("Select a volume for FLAIR")
    ui.flairVolumeSelector.setCurrentNode(volumes["flair"])
    ui.t2VolumeSelector.setCurrentNode(volumes["t2"])
    ui.membersSpinBox.setValue(3)
    ui.stepsSpinBox.setValue(2)
    ui.deviceComboBox.setCurrentText("cpu")
    ui.applyButton.click()
    wait_until(lambda: controller.handle is None)
    seg = controller.params.outputSegmentation
    assert seg is not None and ui.statusLabel.text().startswith("Done in ")
    combo = ui.tumorRegionComboBox
    assert not combo.isHidden() and not ui.tumorRegionLabel.isHidden()
    assert [combo.itemText(i) for i in range(combo.count())] == ["Whole tumor", "Tumor core", "Enhancing tumor"]
    assert combo.currentIndex() == 0

    # Enhancing tumour: its threshold moves, the others stay; back to the whole tumour shows 0.5.
    combo.setCurrentIndex(2)
    combo.activated[int].emit(2)
    assert controller.params.region == "et" and combo.currentIndex() == 2
    from DiffSegLib import panelview, results, review

    ranked = review.rank_slices(seg, limit=panelview.RANKED_SLICES_SHOWN, region="et")
    assert ui.uncertainSlicesListWidget.count() == len(ranked)
    assert harness.composite.GetForegroundVolumeID() == results.output_volumes(seg, "et")[1].GetID()
    ui.thresholdSliderWidget.setValue(0.3)
    wait_until(lambda: seg.GetAttribute("DiffSeg.Threshold_et") == "0.3")
    combo.setCurrentIndex(0)
    combo.activated[int].emit(0)
    assert ui.thresholdSliderWidget.value() == 0.5
    settle()
    assert review.thresholds_of(seg) == {"wt": 0.5, "tc": 0.5, "et": 0.3}
    widget.cleanup()


def vtk_shift(millimetres: float):
    from DiffSegLib.geometry import vtk_matrix

    matrix = np.eye(4)
    matrix[1, 3] = millimetres
    return vtk_matrix(matrix)
