"""The panel (``PanelController``, no Qt) with a region model and the real engine in a child process:
optional sequence selectors, the region selector, the threshold and ranking per region."""

from __future__ import annotations

import time
import types

import pytest
from conftest import write_case
from test_module_old_scenes import build_old_result

from DiffSegLib import panelview, results, review
from DiffSegLib.logic import DiffSegLogic
from DiffSegLib.panel import PanelController

pytestmark = pytest.mark.slow


def test_panel_with_a_region_model(harness, tiny_region_run, parameter_class, tmp_path):
    files = write_case(tmp_path / "data", seed=6)
    volumes = {m: harness.load_volume(files[m], f"case6_{m}") for m in ("flair", "t1ce", "t2")}
    views, errors = [], []
    dialogs = types.SimpleNamespace(confirm=lambda text: True, error=errors.append,
                                    choose_folder=lambda: str(tiny_region_run))
    temp_root = tmp_path / "temp"
    temp_root.mkdir()
    controller = PanelController(DiffSegLogic(scene=harness.scene, temp_root=temp_root), parameter_class, dialogs,
                                 views.append)
    controller.enter()
    controller.model_chosen("")  # Load from folder...
    params = controller.params
    assert controller.card().regions == ("wt", "tc", "et")

    # Selectors: the model's sequences, the optional ones marked so; Apply follows the required one only.
    rows = {row.modality: row for row in views[-1].rows}
    assert (rows["flair"].label, rows["t1ce"].label, rows["t2"].label) == \
        ("FLAIR (reference):", "T1ce (contrast) (optional):", "T2 (optional):")
    assert [rows[m].shown for m in ("flair", "t1", "t1ce", "t2")] == [True, False, True, True]
    assert params.t1ceVolume.GetID() == volumes["t1ce"].GetID()  # optional ones are auto-assigned too
    params.t1ceVolume = None
    params.t2Volume = None
    assert views[-1].apply_enabled and views[-1].apply_tooltip == (
        f"Segment the tumour with '{controller.card().title}' (without T1ce (contrast), T2: optional) and compute "
        "its uncertainty.")
    params.flairVolume = None
    assert not views[-1].apply_enabled and views[-1].apply_tooltip.startswith("Select a volume for FLAIR")
    params.flairVolume, params.t2Volume = volumes["flair"], volumes["t2"]
    assert views[-1].apply_enabled and not views[-1].region_visible

    # A run: the region selector lists the result's regions; the whole tumour is under review first.
    params.members, params.steps, params.device = 3, 2, "cpu"
    controller.apply_clicked()
    command = controller.handle.runner.args
    assert "--t2" in command and "--t1ce" not in command
    deadline = time.monotonic() + 300
    while controller.poll():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not errors, errors
    seg = params.outputSegmentation
    view = views[-1]
    assert view.region_visible and view.region_index == 0
    assert view.regions == (("Whole tumor", "wt"), ("Tumor core", "tc"), ("Enhancing tumor", "et"))

    # Pick the enhancing tumour: its threshold, its ranking, its uncertainty over the image.
    controller.region_chosen("et")
    view = views[-1]
    assert params.region == "et" and view.region_index == 2
    assert view.ranking == panelview.ranking_rows(review.rank_slices(seg, limit=panelview.RANKED_SLICES_SHOWN,
                                                                     region="et"))
    assert harness.composite.GetForegroundVolumeID() == results.output_volumes(seg, "et")[1].GetID()
    params.threshold = 0.3
    controller.threshold_settled()
    assert review.thresholds_of(seg) == {"wt": 0.5, "tc": 0.5, "et": 0.3}
    controller.region_chosen("tc")
    assert params.threshold == 0.5
    controller.threshold_settled()  # the echo of the parameter: nothing changes
    assert review.thresholds_of(seg) == {"wt": 0.5, "tc": 0.5, "et": 0.3}
    controller.region_chosen("et")
    assert params.threshold == pytest.approx(0.3)
    # Re-run here: merged into every region; the enhancing tumour stays under review and over the image.
    params.restrictSlices, params.sliceStart, params.sliceStop, params.rerunMembers = True, 6, 9, 3
    controller.rerun_clicked()
    while controller.poll():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not errors, errors
    assert seg.GetAttribute("DiffSeg.LastRefinement").startswith("slices 6:9 with 3 members")
    assert params.region == "et" and params.threshold == pytest.approx(0.3)
    assert harness.composite.GetForegroundVolumeID() == results.output_volumes(seg, "et")[1].GetID()

    # No result under review: no selector; the same result again: its region kept.
    params.outputSegmentation = None
    assert not views[-1].region_visible and views[-1].ranking == ()
    params.outputSegmentation = seg
    assert params.region == "et" and views[-1].region_index == 2
    # A whole-tumour result (as saved before regions) lacks the region: back to the whole tumour, no selector.
    old, _ = build_old_result(harness.scene, volumes["flair"])
    old.SetAttribute("DiffSeg.Threshold", "0.4")
    params.outputSegmentation = old
    assert params.region == "wt" and params.threshold == pytest.approx(0.4)
    assert not views[-1].region_visible and views[-1].regions == (("Whole tumor", "wt"),)
    controller.cleanup()
