"""The panel's behaviour without Qt (``PanelController``) on a real scene with a real engine child process.

The engine is ``stub_engine`` (fast, failures on demand); the parameter node is the module's own
``DiffSegParameterNode`` over a real ``vtkMRMLScriptedModuleNode`` (``standins.parameter_node_wrapper``).
What a user sees is checked on the :class:`PanelView` handed to ``render``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import types

import numpy as np
import pytest
import slicer

from DiffSegLib import dependencies, panelview, regions, results, review, segments
from DiffSegLib.geometry import vtk_matrix
from DiffSegLib.logic import DiffSegLogic
from DiffSegLib.panel import PanelController


class Dialogs:
    """Records the dialogs; confirmations answer from ``answers`` (True when empty)."""

    def __init__(self):
        self.errors, self.questions, self.answers, self.folders = [], [], [], []

    def confirm(self, text):
        self.questions.append(text)
        return self.answers.pop(0) if self.answers else True

    def error(self, text):
        self.errors.append(text)

    def choose_folder(self):
        return self.folders.pop(0) if self.folders else ""


@pytest.fixture
def make_panel(harness, stub, parameter_class):
    """A controller on the stub engine (``mode``), entered, with the stub model chosen."""
    made = []

    def make(mode: str = "ok"):
        views, dialogs = [], Dialogs()
        controller = PanelController(stub.logic(mode), parameter_class, dialogs, views.append)
        controller.enter()
        controller.model_chosen(str(stub.card.path))
        controller.params.members, controller.params.steps = 4, 3
        controller.views, controller.dialogs_seen = views, dialogs
        made.append(controller)
        return controller

    yield make
    for controller in made:
        controller.cleanup()


def run_to_end(controller, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while controller.poll():
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.02)


def test_apply_is_enabled_only_when_the_inputs_can_run(make_panel, volumes):
    panel = make_panel()
    view = panel.views[-1]
    assert view.apply_enabled and view.apply_text == "Apply" and view.apply_tooltip == "Segment the tumour with " \
        "'Stub' and compute its uncertainty."
    assert [r.shown for r in view.rows] == [True] * 4 and view.rows[0].label == "FLAIR (reference):"
    assert view.quality_hint.endswith("4 members x 3 steps = 12 network passes per slice.")
    panel.params.t1Volume = None
    assert not panel.views[-1].apply_enabled and panel.views[-1].apply_tooltip.startswith("Select a volume for T1")


def test_apply_state_follows_transforms_and_the_roi(harness, make_panel, volumes):
    """Node references are not observed by the parameter node: the controller observes them (defect 4)."""
    panel = make_panel()
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    volumes["t2"].SetAndObserveTransformNodeID(transform.GetID())
    assert panel.views[-1].apply_enabled
    far = np.eye(4)
    far[0, 3] = 400.0
    transform.SetMatrixTransformToParent(vtk_matrix(far))  # the volume itself is not modified
    assert not panel.views[-1].apply_enabled and "do not overlap in physical space" in panel.views[-1].apply_tooltip
    transform.SetMatrixTransformToParent(vtk_matrix(np.eye(4)))
    assert panel.views[-1].apply_enabled
    roi = harness.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "region")
    roi.SetCenterWorld(*volumes["flair"].GetImageData().GetCenter())
    roi.SetSize(400, 400, 400)
    panel.params.roi = roi
    assert panel.views[-1].apply_enabled
    roi.SetCenterWorld(5000, 5000, 5000)  # the ROI node changes, the parameter node does not
    assert not panel.views[-1].apply_enabled and "does not cross" in panel.views[-1].apply_tooltip


def test_a_run_shows_progress_then_is_put_under_review(make_panel):
    panel = make_panel()
    panel.apply_clicked()
    running = panel.views[-1]
    assert running.apply_text == "Cancel" and running.apply_tooltip == panelview.CANCEL_TOOLTIP
    assert running.progress_visible and running.status == panelview.STATUS_STARTING and not running.rerun_enabled
    run_to_end(panel)
    assert any(v.progress_maximum == 3 and v.status.startswith("sampling: step") for v in panel.views)
    done = panel.views[-1]
    segmentation = panel.params.outputSegmentation
    assert segmentation is not None and done.status.startswith("Done in ")
    assert not done.progress_visible and done.apply_text == "Apply" and done.rerun_enabled
    assert done.ranking and done.ranking[0][1] == review.rank_slices(segmentation)[0].index


def test_threshold_follows_the_result_under_review(harness, make_panel, stub):
    """Picking another result sets the *parameter* to its threshold; an echo of it re-thresholds nothing
    (defect 1: the slider was set behind the parameter node's back)."""
    panel = make_panel()
    panel.apply_clicked()
    run_to_end(panel)
    first = panel.params.outputSegmentation
    panel.params.threshold = 0.3
    panel.threshold_settled()
    assert review.threshold_of(first) == pytest.approx(0.3)
    second, _ = stub.logic().run(stub.request(members=6, seed=9, new_outputs=True))
    mask_before = segment_mask(harness, second)
    panel.params.outputSegmentation = second  # the user picks it in the Results selector
    assert panel.params.threshold == pytest.approx(0.5)
    panel.threshold_settled()  # the binding writes 0.5 back to the slider, which reports it
    assert second.GetAttribute(review.THRESHOLD_ATTRIBUTE) in (None, "0.5")
    assert np.array_equal(segment_mask(harness, second), mask_before)
    assert review.threshold_of(first) == pytest.approx(0.3)
    panel.params.outputSegmentation = first
    assert panel.params.threshold == pytest.approx(0.3)


def segment_mask(harness, segmentation) -> np.ndarray:
    """The "Tumor" segment on its input's grid (KJI)."""
    labelmap = harness.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "export")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation, [regions.TUMOR.segment_id], labelmap, segmentation.GetNodeReference(results.INPUT_REFERENCE))
    mask = np.array(slicer.util.arrayFromVolume(labelmap))
    results.remove_node(harness.scene, labelmap)
    return mask


@pytest.mark.parametrize("failure", ["pip", "torch"])
def test_a_failed_installation_is_shown_not_swallowed(harness, make_panel, monkeypatch, failure):
    """``pip_install`` and ``installTorch`` raise CalledProcessError / ModuleNotFoundError (defect 2)."""
    panel = make_panel()
    before = harness.snapshot()
    if failure == "pip":
        monkeypatch.setitem(dependencies.ENGINE_REQUIREMENTS, "diffseg_absent_package", "diffseg-absent-package>=1")
        monkeypatch.setattr(slicer.util, "pip_install", lambda args: subprocess.run(  # as Slicer's: check=True
            [sys.executable, "-m", "pip", "install", "--no-index", "--quiet", *args], check=True, capture_output=True),
            raising=False)
        expected = "installing the engine's Python packages failed"
    else:
        logic = types.SimpleNamespace(installTorch=lambda **kw: (_ for _ in ()).throw(
            ModuleNotFoundError("No module named 'torch'")))
        monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=lambda: logic))
        monkeypatch.setattr(dependencies, "torch_missing", lambda: True)
        expected = "PyTorch could not be installed or imported (No module named 'torch')"
    panel.apply_clicked()
    assert panel.handle is None and len(panel.dialogs_seen.errors) == 1
    assert panel.dialogs_seen.errors[0].startswith(expected) and panel.dialogs_seen.errors[0].endswith("Apply again.")
    assert panel.views[-1].status.startswith(f"Not started: {expected}") and panel.views[-1].apply_text == "Apply"
    assert harness.snapshot() == before


def test_a_failure_while_storing_the_result_is_shown(make_panel, monkeypatch):
    """``segments.write_label_map`` raises RuntimeError when Slicer refuses the labelmap (defect 2)."""
    panel = make_panel()

    def refuse(segmentation, labels, ijk_to_ras, regions):
        raise RuntimeError(f"Could not write the tumour mask into '{segmentation.GetName()}'.")

    monkeypatch.setattr(segments, "write_label_map", refuse)
    panel.apply_clicked()
    run_to_end(panel)
    assert panel.views[-1].status == panelview.STATUS_FAILED and panel.handle is None
    assert panel.dialogs_seen.errors and panel.dialogs_seen.errors[0].startswith("Could not write the tumour mask")


@pytest.mark.parametrize("loaded, expected", [((), "brats-regions"), (("flair",), "brats-flair"),
                                              (("flair", "t2"), "brats-regions")])
def test_the_panel_starts_on_the_bundled_model_made_for_the_loaded_volumes(harness, case_files, parameter_class,
                                                                          loaded, expected):
    """FLAIR alone: the FLAIR-only model (same whole tumour, faster, docs/results.md §5); more sequences or an
    empty scene (nothing to go by): the region model."""
    for m in loaded:
        harness.load_volume(case_files[m], f"case0_{m}")
    controller = PanelController(DiffSegLogic(scene=harness.scene), parameter_class, Dialogs(), lambda view: None)
    controller.enter()
    assert controller.card().name == expected
    controller.cleanup()


def test_auto_assign_skips_volume_types_the_selectors_hide(harness, stub, parameter_class, volumes):
    """Vector, tensor and DWI volumes subclass the scalar volume but are not listed (defect 8); here they
    come first in the scene, where auto-assign looks first."""
    for node in volumes.values():
        harness.scene.RemoveNode(node)
    hidden = [harness.scene.AddNewNodeByClass(cls, name) for cls, name in (
        ("vtkMRMLVectorVolumeNode", "case9_flair_rgb"), ("vtkMRMLDiffusionTensorVolumeNode", "case9_t1_dti"),
        ("vtkMRMLDiffusionWeightedVolumeNode", "case9_t2_dwi"), ("vtkMRMLLabelMapVolumeNode", "case9_t1ce_label"))]
    for node in volumes.values():
        harness.scene.AddNode(node)
    controller = PanelController(stub.logic(), parameter_class, Dialogs(), lambda view: None)
    controller.enter()
    controller.model_chosen(str(stub.card.path))
    chosen = {m: getattr(controller.params, f"{m}Volume") for m in ("flair", "t1", "t1ce", "t2")}
    assert {m: n.GetName() for m, n in chosen.items()} == {m: f"case0_{m}" for m in chosen}
    assert not any(n.GetID() == h.GetID() for n in chosen.values() for h in hidden)
    controller.cleanup()


def test_rerun_here_reports_its_own_time(make_panel):
    """The status after a re-run gives the re-run's time, not the first run's (defect 9)."""
    panel = make_panel()
    panel.apply_clicked()
    run_to_end(panel)
    segmentation = panel.params.outputSegmentation
    first = segmentation.GetAttribute("DiffSeg.Seconds")
    panel.params.steps = 60  # the stub sleeps 10 ms per step
    panel.params.restrictSlices, panel.params.sliceStart, panel.params.sliceStop = True, 2, 5
    panel.rerun_clicked()
    handle = panel.handle
    assert handle is not None and handle.request.merge_into is segmentation and handle.request.members == 10
    run_to_end(panel)
    reported = handle.runner.result().seconds
    assert segmentation.GetAttribute("DiffSeg.Seconds") == f"{reported:.1f}" != first
    assert panel.views[-1].status == panelview.done_status(f"{reported:.1f}")
    assert panel.params.outputSegmentation is not None and panel.views[-1].ranking


def test_suspicious_inputs_are_confirmed_before_the_run(harness, make_panel, volumes):
    panel = make_panel()
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shifted = np.eye(4)
    shifted[1, 3] = 12.0
    transform.SetMatrixTransformToParent(vtk_matrix(shifted))
    volumes["t1"].SetAndObserveTransformNodeID(transform.GetID())
    before = harness.snapshot()
    panel.dialogs_seen.answers = [False]
    panel.apply_clicked()
    question = panel.dialogs_seen.questions[-1]
    assert question.startswith("DiffSeg can run, but the inputs look unusual:") and question.endswith("Run anyway?")
    assert "'case0_t1' (T1) covers only" in question
    assert panel.handle is None and panel.views[-1].status == panelview.STATUS_DECLINED
    assert harness.snapshot() == before
    panel.apply_clicked()  # answered OK this time
    assert panel.handle is not None
    run_to_end(panel)
    assert panel.params.outputSegmentation is not None


def test_cancel_and_scene_close_leave_the_scene_as_it_was(harness, make_panel, stub):
    panel = make_panel("hang")
    before = harness.snapshot()
    panel.apply_clicked()
    deadline = time.monotonic() + 60
    while panel.handle.progress is None and time.monotonic() < deadline:
        panel.poll()
        time.sleep(0.02)
    panel.apply_clicked()  # Cancel
    assert panel.handle is None and panel.views[-1].status == panelview.STATUS_CANCELLED
    assert harness.snapshot() == before and list(stub.temp_root.iterdir()) == []
    panel.apply_clicked()
    assert panel.handle is not None
    harness.scene.InvokeEvent(harness.scene.StartCloseEvent)  # what the widget forwards
    panel.scene_start_close()
    assert panel.handle is None and panel.params is None and panel.status == panelview.STATUS_CLOSED
    assert list(stub.temp_root.iterdir()) == []
    panel.scene_end_close(visible=False)
    assert panel.params is None  # a hidden module gets its parameter node when it is entered
    panel.scene_end_close(visible=True)
    assert panel.params is not None


def test_too_old_python_disables_apply(make_panel, monkeypatch):
    assert dependencies.python_problem((3, 12, 10)) is None
    message = dependencies.python_problem((3, 9, 10))
    assert message == ("DiffSeg needs Slicer 5.10 or later: its engine needs Python 3.10 or later, and this Slicer "
                       "has Python 3.9.10.")
    panel = make_panel()
    monkeypatch.setattr(dependencies, "python_problem", lambda: message)
    panel.inputs_modified()
    assert not panel.views[-1].apply_enabled and panel.views[-1].apply_tooltip == message


def test_review_and_start_edge_cases(harness, make_panel, monkeypatch):
    """No result selected; a re-run around the red view; a declined installation; Apply with a problem."""
    panel = make_panel()
    panel.apply_clicked()
    run_to_end(panel)
    segmentation = panel.params.outputSegmentation
    assert panel.views[-1].ranking
    panel.params.outputSegmentation = None
    assert panel.views[-1].ranking == () and not panel.views[-1].rerun_enabled
    panel.params.outputSegmentation = segmentation
    ranked = review.rank_slices(segmentation)[0].index
    review.jump_to_slice(segmentation, ranked)  # the red view shows the most uncertain slice
    panel.rerun_clicked()  # no ROI, no slice range: the slices around the red view
    assert panel.handle.slices == review.slices_around(segmentation, review.red_view_center(harness.scene))
    assert panel.handle.slices[0] <= ranked < panel.handle.slices[1]
    run_to_end(panel)
    monkeypatch.setitem(dependencies.ENGINE_REQUIREMENTS, "diffseg_absent_package", "diffseg-absent-package>=1")
    panel.dialogs_seen.answers = [False]  # "Download and install them now?" - Cancel
    panel.apply_clicked()
    assert "diffseg-absent-package" in panel.dialogs_seen.questions[-1] and panel.handle is None
    assert panel.views[-1].status == panelview.STATUS_NOT_INSTALLED
    panel.params.t2Volume = None
    panel.apply_clicked()
    assert panel.dialogs_seen.errors[-1].startswith("Select a volume for T2") and panel.handle is None


def test_the_model_first_shown_is_a_real_mri_region_model(harness, parameter_class, tmp_path, monkeypatch):
    """As the console's automatic choice: not the phantom demo model, and a region model before a whole-tumour one."""
    import json

    from DiffSegLib import panel as panel_module
    from DiffSegLib.logic import DiffSegLogic
    from DiffSegLib.models import read_model_card

    cards = []
    for name, fields in (("brats-flair", {}), ("brats-regions", {"regions": ["wt", "tc", "et"]}),
                         ("phantom", {"regions": ["wt", "tc", "et"]})):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.json").write_text(json.dumps({"name": name, "modalities": ["flair"], **fields}))
        cards.append(read_model_card(folder))
    monkeypatch.setattr(panel_module, "list_bundled_models", lambda: cards)
    controller = PanelController(DiffSegLogic(scene=harness.scene), parameter_class, Dialogs(), lambda view: None)
    controller.enter()
    assert controller.card().name == "brats-regions"
    controller.cleanup()


def _engine_ensemble(controller) -> str:
    """The ``--ensemble`` of the engine process the controller's run started."""
    args = list(controller.handle.runner.args)
    return args[args.index("--ensemble") + 1]


def test_the_cards_ensemble_reaches_apply_and_rerun_here_samples_every_member(harness, stub, parameter_class,
                                                                             adaptive_phantom, monkeypatch):
    """A card whose default ensemble is adaptive: the panel starts on it, Apply passes it to the engine and the result
    records it; Re-run here passes ``--ensemble full``; choosing a model in the combo takes its card's default."""
    from DiffSegLib import panel as panel_module
    from DiffSegLib.models import read_model_card

    monkeypatch.setattr(panel_module, "list_bundled_models", lambda: [read_model_card(adaptive_phantom)])
    views = []
    controller = PanelController(stub.logic(), parameter_class, Dialogs(), views.append)
    controller.enter()
    params = controller.params
    assert controller.card().path == adaptive_phantom and params.ensemble == "adaptive"
    params.members, params.steps = 4, 3
    assert views[-1].quality_hint.endswith("4 members x 3 steps = 12 network passes per slice near the tumour; "
                                           "adaptive ensemble: fewer away from it, where only a first screening "
                                           "sample runs.")
    controller.apply_clicked()
    assert _engine_ensemble(controller) == "adaptive"
    run_to_end(controller)
    segmentation = params.outputSegmentation
    assert segmentation.GetAttribute("DiffSeg.Ensemble") == "adaptive"

    params.restrictSlices, params.sliceStart, params.sliceStop = True, 2, 5
    controller.rerun_clicked()
    assert _engine_ensemble(controller) == "full" and controller.handle.request.members == params.rerunMembers
    run_to_end(controller)
    assert segmentation.GetAttribute("DiffSeg.LastRefinement").startswith(f"slices 2:5 with {params.rerunMembers} "
                                                                          "members (full)")
    assert segmentation.GetAttribute("DiffSeg.Ensemble") == "adaptive"  # the run's own setting is kept

    controller.model_chosen(str(stub.card.path))  # a card without the key: the engine's default
    assert params.ensemble == "full" and views[-1].quality_hint.endswith("50 network passes per slice.")
    controller.model_chosen(str(adaptive_phantom))
    assert params.ensemble == "adaptive"
    controller.cleanup()
