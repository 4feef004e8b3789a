"""`diffseg refine` on phantoms: guidance honoured in 3D, untouched slices bit for bit, seeded, accumulating."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from DiffSegExtension.cli import main
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.geometry import CanonicalFrame
from DiffSegExtension.data.phantom import Phantom, make_phantom, write_phantom_case
from DiffSegExtension.data.resample import sub_grid_box
from DiffSegExtension.inference.segment import SegmentOptions
from DiffSegExtension.model_card import load_model
from DiffSegExtension.refinement.guidance import Guidance, Point, point_ball
from DiffSegExtension.refinement.previous import load_previous
from DiffSegExtension.refinement.refine import _touched, known_slices, refine_case

SAMPLING = ["--members", "3", "--steps", "2", "--progress", "none"]
MAPS = ("segmentation", "probability", "uncertainty", "entropy")


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    """An oblique phantom with 2 mm slices, stored with the superior–inferior voxel axis first (i)."""
    phantom = make_phantom(12, shape=(48, 44, 18), spacing=(1.0, 1.1, 2.0), oblique=True)
    order = (2, 0, 1)
    affine = phantom.affine.copy()
    affine[:3, :3] = phantom.affine[:3, list(order)]
    moved = Phantom({m: v.transpose(order).copy() for m, v in phantom.images.items()},
                    phantom.label.transpose(order).copy(), affine, phantom.tissue.transpose(order).copy())
    folder = write_phantom_case(tmp_path_factory.mktemp("refine"), "obl", moved)
    assert CanonicalFrame(affine, moved.shape).slice_axis == 0
    return folder


def inputs(case_dir):
    return ["--flair", str(case_dir / "obl_flair.nii.gz"), "--t1ce", str(case_dir / "obl_t1ce.nii.gz")]


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_run, case_dir):
    out = tmp_path_factory.mktemp("first") / "seg"
    assert main(["segment", "--model", str(tiny_run), *inputs(case_dir), "--out", str(out), *SAMPLING]) == 0
    return out


def load(folder, name):
    return np.asanyarray(nib.load(folder / f"{name}.nii.gz").dataobj)


def ras_of(case_dir, voxel):
    affine = nib.load(case_dir / "obl_flair.nii.gz").affine
    return (affine @ np.append(np.asarray(voxel, float), 1.0))[:3]


def point_arg(kind, ras):
    return f"--{kind}={','.join(f'{v:.4f}' for v in ras)}"


def slices_along(mask, axis):
    return set(np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis))).tolist())


def refine(tiny_run, case_dir, previous, out, *guidance, extra=()):
    return main(["refine", "--model", str(tiny_run), *inputs(case_dir), "--previous", str(previous), "--out", str(out),
                 *guidance, *SAMPLING, *extra])


@pytest.fixture(scope="module")
def included(tmp_path_factory, tiny_run, case_dir, first):
    """One include point where the first result found no tumour."""
    open_brain = np.argwhere((load(first, "probability") < 0.5) & (load(case_dir, "obl_flair") > 0))
    voxel = tuple(open_brain[np.argmin(np.abs(open_brain - np.array([9, 24, 22])).sum(axis=1))])
    out = tmp_path_factory.mktemp("inc") / "ref"
    assert refine(tiny_run, case_dir, first, out, point_arg("include", ras_of(case_dir, voxel))) == 0
    return out, voxel


def test_an_include_point_makes_its_3d_ball_tumour(included, first, case_dir):
    out, voxel = included
    reference = nib.load(case_dir / "obl_flair.nii.gz")
    ball = point_ball(Point("include", tuple(ras_of(case_dir, voxel))), reference.affine, reference.shape)
    summary = json.loads((out / "summary.json").read_text())
    axis = summary["slice_axis"]
    assert len(slices_along(ball, axis)) >= 3, "the ball reaches the neighbouring slices"
    assert np.all(load(out, "segmentation")[ball] == 1) and np.all(load(out, "probability")[ball] == 1.0)
    assert np.all(load(out, "uncertainty")[ball] == 0.0)
    touched = slices_along(ball, axis)
    assert set(summary["refine"]["resampled_slices"]) == touched, "no margin by default"
    assert summary["refine"]["guidance"]["points"][0]["kind"] == "include" and summary["refine"]["seconds"] > 0
    assert summary["slices_sampled"] == len(summary["refine"]["resampled_slices"])


def test_the_component_rule_keeps_the_component_of_an_include_point(tmp_path, included, tiny_run, case_dir, first):
    _, voxel = included
    out = tmp_path / "strict"
    assert refine(tiny_run, case_dir, first, out, point_arg("include", ras_of(case_dir, voxel)),
                  extra=("--min-component-probability", "1")) == 0
    mask, probability = load(out, "segmentation") > 0, load(out, "probability")
    components, _ = ndimage.label(probability >= 0.5)
    own = components == components[voxel]
    assert probability[own].mean() < 1, "the rule alone would remove the point's component"
    assert mask[own].all() and not (mask & ~own).any(), "it stays; every other component (mean < 1 here) goes"
    assert json.loads((out / "summary.json").read_text())["options"]["min_component_probability"] == 1


def test_without_reach_untouched_slices_keep_the_previous_maps_bit_for_bit(tmp_path, included, tiny_run, case_dir,
                                                                           first):
    _, voxel = included
    out = tmp_path / "ball_only"
    assert refine(tiny_run, case_dir, first, out, point_arg("include", ras_of(case_dir, voxel)), extra=["--reach", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    index = [slice(None)] * 3
    index[summary["slice_axis"]] = sorted(set(range(load(out, "probability").shape[summary["slice_axis"]]))
                                          - set(summary["refine"]["resampled_slices"]))
    for name in MAPS:
        before, after = load(first, name), load(out, name)
        assert before.dtype == after.dtype and np.array_equal(before[tuple(index)], after[tuple(index)]), name
    assert not np.array_equal(load(first, "probability"), load(out, "probability"))
    image = nib.load(out / "probability.nii.gz")
    assert np.allclose(image.affine, nib.load(first / "probability.nii.gz").affine)


def test_beyond_its_slices_a_point_reweights_only_the_voxels_members_disagree_on(included, first):
    out, _ = included
    summary = json.loads((out / "summary.json").read_text())
    assert summary["refine"]["guidance"]["points"][0]["reach_mm"] == 40.0, "the default reach is recorded"
    axis = summary["slice_axis"]
    off = np.ones(load(out, "probability").shape, bool)
    np.moveaxis(off, axis, 0)[summary["refine"]["resampled_slices"]] = False
    before, after = load(first, "probability")[off], load(out, "probability")[off]
    agreed = (before == 0) | (before == 1)
    assert np.array_equal(before[agreed], after[agreed]), "voxels every member agrees on stay"
    raised = after[~agreed] > before[~agreed]
    assert np.all(after[~agreed] >= before[~agreed]) and raised.sum() > 10, \
        "an include point raises the rest where its tissue is (elsewhere its weight is ~0)"
    moved = after != before
    assert np.allclose(load(out, "uncertainty")[off][moved], after[moved] * (1 - after[moved]), atol=1e-6)


def test_same_seed_same_result(tmp_path, included, tiny_run, case_dir, first):
    out, voxel = included
    assert refine(tiny_run, case_dir, first, tmp_path / "again", point_arg("include", ras_of(case_dir, voxel))) == 0
    for name in MAPS:
        assert np.array_equal(load(out, name), load(tmp_path / "again", name)), name


def test_painted_voxels_are_exact_in_every_member_and_in_the_written_mask(tmp_path, tiny_run, case_dir, first):
    reference = nib.load(case_dir / "obl_flair.nii.gz")
    paint = np.zeros(reference.shape, np.uint8)
    paint[8, 20:26, 18:24] = 1
    paint[8:10, 30:34, 10:14] = 2
    nib.save(nib.Nifti1Image(paint, reference.affine), tmp_path / "strokes.nii.gz")
    assert refine(tiny_run, case_dir, first, tmp_path / "out", "--strokes", str(tmp_path / "strokes.nii.gz")) == 0
    mask = load(tmp_path / "out", "segmentation")
    assert np.all(mask[paint == 1] == 1) and np.all(mask[paint == 2] == 0)
    assert np.array_equal(load(tmp_path / "out", "strokes_wt"), paint), "the stroke volume is recorded"

    model = load_model(tiny_run)
    case = load_case({"flair": case_dir / "obl_flair.nii.gz", "t1ce": case_dir / "obl_t1ce.nii.gz"}, model.modalities)
    previous = load_previous(first, case, model.regions)
    result = refine_case(model, case, previous, Guidance(strokes={"wt": paint}),
                         SegmentOptions(members=3, steps=2, seed=0))
    values, known = known_slices(result.seg.prepared, Guidance(strokes={"wt": paint}).known(
        case.affine, case.shape, model.regions))
    known &= result.seg.prepared.brain[:, None]
    assert known.sum() > 20
    members = result.seg.members  # (N, S, R, H, W)
    assert np.array_equal(members[:, known].numpy(), np.broadcast_to((values[known] > 0).numpy(), members[:, known].shape))


def test_refining_again_accumulates_the_guidance(tmp_path, included, tiny_run, case_dir):
    out, voxel = included
    reference = nib.load(case_dir / "obl_flair.nii.gz")
    far = (voxel[0], voxel[1] - 8, voxel[2] + 6)
    assert refine(tiny_run, case_dir, out, tmp_path / "second", point_arg("exclude", ras_of(case_dir, far))) == 0
    record = json.loads((tmp_path / "second" / "guidance.json").read_text())
    assert [p["kind"] for p in record["points"]] == ["include", "exclude"]
    mask = load(tmp_path / "second", "segmentation")
    include = point_ball(Point("include", tuple(ras_of(case_dir, voxel))), reference.affine, reference.shape)
    exclude = point_ball(Point("exclude", tuple(ras_of(case_dir, far))), reference.affine, reference.shape)
    assert np.all(mask[include] == 1) and np.all(mask[exclude] == 0), "old and new guidance both hold"
    summary = json.loads((tmp_path / "second" / "summary.json").read_text())
    assert len(summary["refine"]["new_guidance"]["points"]) == 1 and len(summary["refine"]["guidance"]["points"]) == 2


def test_a_region_model_with_a_subset_of_sequences(tmp_path, tiny_region_run, case_dir):
    flair = ["--flair", str(case_dir / "obl_flair.nii.gz")]
    sampling = ["--members", "2", "--steps", "2", "--progress", "json"]
    assert main(["segment", "--model", str(tiny_region_run), *flair, "--out", str(tmp_path / "seg"), *sampling]) == 0
    voxel, other = (9, 24, 22), (9, 14, 30)
    code = main(["refine", "--model", str(tiny_region_run), *flair, "--previous", str(tmp_path / "seg"),
                 "--out", str(tmp_path / "ref"), point_arg("include", ras_of(case_dir, voxel)),
                 point_arg("exclude", ras_of(case_dir, other)), "--region", "tc", *sampling])
    assert code == 0
    labels = load(tmp_path / "ref", "segmentation")
    assert labels[voxel] in (1, 4), "inside TC (and so inside WT)"
    assert labels[other] == 0
    assert load(tmp_path / "ref", "probability_tc")[voxel] == 1.0 and load(tmp_path / "ref", "probability")[voxel] == 1.0
    assert load(tmp_path / "ref", "probability_et")[other] == 0.0


def test_progress_json_reports_each_step_and_the_outputs(tmp_path, tiny_run, case_dir, first, capsys):
    capsys.readouterr()
    code = main(["refine", "--model", str(tiny_run), *inputs(case_dir), "--previous", str(first), "--out",
                 str(tmp_path / "r"), point_arg("exclude", ras_of(case_dir, (9, 24, 22))), "--members", "2",
                 "--steps", "2", "--progress", "json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] > 0
    assert events[-1]["event"] == "done" and set(events[-1]["outputs"]) >= {"segmentation", "guidance", "summary"}


def _bad_inputs(tmp_path, case_dir, first):
    """name → (extra arguments, expected message part); builds the bad files it needs."""
    reference = nib.load(case_dir / "obl_flair.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), reference.affine), tmp_path / "small.nii.gz")
    nib.save(nib.Nifti1Image(np.full(reference.shape, 3, np.uint8), reference.affine), tmp_path / "three.nii.gz")
    other_case = tmp_path / "other_case"
    other_case.mkdir()
    for item in first.iterdir():
        (other_case / item.name).write_bytes(item.read_bytes())
    summary = json.loads((first / "summary.json").read_text())
    (other_case / "summary.json").write_text(json.dumps({**summary, "case": "someone_else"}))
    other_grid = tmp_path / "other_grid"
    other_grid.mkdir()
    for item in first.iterdir():
        (other_grid / item.name).write_bytes(item.read_bytes())
    finer = reference.affine.copy()
    finer[:3, :3] /= 2  # not a box of the input's grid (a cropped map, --crop-outputs, would be)
    nib.save(nib.Nifti1Image(np.zeros(reference.shape, np.float32), finer), other_grid / "probability.nii.gz")
    inside = point_arg("include", ras_of(case_dir, (9, 24, 22)))
    return {
        "no guidance": ([], "refine needs guidance"),
        "malformed point": (["--include=1,2"], "is not a point: give X,Y,Z"),
        "point outside": ([point_arg("exclude", ras_of(case_dir, (-20, 5, 5)))], "lies outside the input volume"),
        "strokes on another grid": (["--strokes", str(tmp_path / "small.nii.gz")], "is not on the input's grid"),
        "strokes with label 3": (["--strokes", str(tmp_path / "three.nii.gz")], "has labels [3]"),
        "previous of another case": ([inside, "--previous", str(other_case)], "holds case 'someone_else'"),
        "previous on another grid": ([inside, "--previous", str(other_grid)], "is on another grid"),
        "previous missing": ([inside, "--previous", str(tmp_path / "nowhere")], "is not a DiffSeg output folder"),
        "region of another model": ([inside, "--region", "tc"], "--region tc: the model"),
    }


def test_each_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, tiny_run, case_dir, first, capsys):
    for name, (extra, message) in _bad_inputs(tmp_path, case_dir, first).items():
        previous = [] if "--previous" in extra else ["--previous", str(first)]
        out = tmp_path / "out"
        capsys.readouterr()
        code = main(["refine", "--model", str(tiny_run), *inputs(case_dir), *previous, "--out", str(out), *extra,
                     *SAMPLING])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, (name, err)
        assert not out.exists(), name
    out = tmp_path / "exists"
    out.mkdir()
    assert main(["refine", "--model", str(tiny_run), *inputs(case_dir), "--previous", str(first), "--out", str(out),
                 point_arg("include", ras_of(case_dir, (9, 24, 22))), *SAMPLING]) == 2
    assert "already exists" in capsys.readouterr().err and not any(out.iterdir())


def test_refining_in_place_replaces_the_folder_with_overwrite(tmp_path, included, tiny_run, case_dir):
    out, voxel = included
    folder = tmp_path / "live"
    folder.mkdir()
    for item in out.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    far = point_arg("exclude", ras_of(case_dir, (voxel[0], voxel[1] + 7, voxel[2] - 5)))
    assert refine(tiny_run, case_dir, folder, folder, far) == 2, "not without --overwrite"
    assert refine(tiny_run, case_dir, folder, folder, far, extra=["--overwrite"]) == 0
    assert len(json.loads((folder / "guidance.json").read_text())["points"]) == 2


def test_a_margin_slice_without_guidance_comes_out_as_before(tmp_path, included, tiny_run, case_dir, first):
    _, voxel = included
    assert refine(tiny_run, case_dir, first, tmp_path / "m", point_arg("include", ras_of(case_dir, voxel)),
                  extra=["--margin", "2", "--reach", "0"]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    reference = nib.load(case_dir / "obl_flair.nii.gz")
    ball = point_ball(Point("include", tuple(ras_of(case_dir, voxel))), reference.affine, reference.shape)
    axis = summary["slice_axis"]
    extra = sorted(set(summary["refine"]["resampled_slices"]) - slices_along(ball, axis))
    assert len(extra) >= 2
    index = [slice(None)] * 3
    index[axis] = extra
    for name in MAPS:
        assert np.array_equal(load(first, name)[tuple(index)], load(tmp_path / "m", name)[tuple(index)]), name


def test_sampling_settings_not_given_come_from_the_previous_run(tmp_path, included, tiny_run, case_dir, first):
    _, voxel = included
    code = main(["refine", "--model", str(tiny_run), *inputs(case_dir), "--previous", str(first), "--out",
                 str(tmp_path / "r"), point_arg("include", ras_of(case_dir, voxel)), "--progress", "none"])
    assert code == 0
    options = json.loads((tmp_path / "r" / "summary.json").read_text())["options"]
    assert (options["members"], options["steps"]) == (3, 2), "as the previous run, not the card's defaults"


def test_a_wide_slice_is_resampled_only_in_a_window_around_the_tumour_and_the_guidance(tmp_path, tiny_run):
    phantom = make_phantom(5, shape=(96, 100, 10), spacing=(1.0, 1.0, 2.0), oblique=True)
    folder = write_phantom_case(tmp_path, "wide", phantom)
    args = ["--model", str(tiny_run), "--flair", str(folder / "wide_flair.nii.gz"),
            "--t1ce", str(folder / "wide_t1ce.nii.gz"), *SAMPLING]
    assert main(["segment", *args, "--out", str(tmp_path / "first")]) == 0
    # a previous result that found the phantom's tumour (this tiny model's own finds noise everywhere)
    for name, volume in (("probability", phantom.label > 0), ("uncertainty", 0), ("entropy", 0)):
        image = nib.load(tmp_path / "first" / f"{name}.nii.gz")
        data = np.zeros(image.shape, np.float32) + volume
        nib.save(nib.Nifti1Image(data, image.affine, image.header), tmp_path / "first" / f"{name}.nii.gz")
    reference = nib.load(folder / "wide_flair.nii.gz")
    tumour = np.argwhere(phantom.label > 0)
    point = Point("include", tuple(nib.affines.apply_affine(reference.affine, tumour[len(tumour) // 2])))
    click = point_arg("include", point.ras)
    assert main(["refine", *args, "--previous", str(tmp_path / "first"), click, "--out", str(tmp_path / "ref")]) == 0
    summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert 0 < summary["refine"]["window_fraction"] < 0.8, "a window, not the whole slice"
    ball = point_ball(point, reference.affine, reference.shape)
    assert np.all(load(tmp_path / "ref", "probability")[ball] == 1.0)

    # the window holds the previous tumour and the guidance with the 16-pixel margin, at least the crop (32)
    model = load_model(str(tiny_run))
    case = load_case(folder, model.modalities)
    previous = load_previous(tmp_path / "first", case, ("wt",))
    guidance = Guidance(points=[point])
    previous_tumour = previous.maps["probability"][0] > 0  # before refine_case updates the maps in place
    refined = refine_case(model, case, previous, guidance, SegmentOptions(members=3, steps=2))
    assert refined.seg.probability is previous.maps["probability"]
    prepared = refined.seg.prepared
    before = prepared.to_slices(previous_tumour) > 0
    _, known = known_slices(prepared, guidance.known(case.affine, case.shape, ("wt",)))
    rows, cols = np.nonzero((before | known[:, 0]).any(dim=0).numpy())
    inside = refined.seg.members.any(dim=(0, 1, 2)).numpy()
    height, width = inside.shape
    window_rows, window_cols = np.nonzero(inside)
    assert window_rows.min() <= max(0, rows.min() - 16) and window_rows.max() >= min(height - 1, rows.max() + 16)
    assert window_cols.min() <= max(0, cols.min() - 16) and window_cols.max() >= min(width - 1, cols.max() + 16)
    assert refined.window_fraction == pytest.approx(summary["refine"]["window_fraction"], abs=1e-3)


#: The hint planes' unfolded input channels of a guided FLAIR + T1ce `tiny` network (space-to-depth 2: 4 per
#: input): after the two modalities (no optional one, so no presence plane), before the noisy mask.
HINTS = slice(2 * 4, 4 * 4)


@pytest.fixture(scope="module")
def guided_run(tmp_path_factory, tiny_run, phantom_cases):
    """``tiny_run`` warm-started into a guided network (hint planes) and trained 3 iterations with simulated clicks."""
    out = tmp_path_factory.mktemp("guided") / "run"
    assert main(["train", "--data", str(phantom_cases), "--modalities", "flair", "t1ce", "--preset", "tiny", "--guidance",
                 "--init-from", str(tiny_run), "--out", str(out), "--iterations", "3", "--batch-size", "4", "--crop", "32",
                 "--hint-rate", "1.0", "--val-fraction", "0", "--warmup", "1", "--progress", "none"]) == 0
    return out


def test_a_guided_run_learns_hint_planes_that_start_neutral(guided_run, tiny_run):
    card = json.loads((guided_run / "model.json").read_text())
    assert card["config"]["network"]["guidance"] is True
    assert card["training"]["initialised_from"]["new"] == ["include:wt", "exclude:wt"]
    weight = load_model(guided_run).network.unet.conv_in.conv.weight  # (C, in·f², k, k), f² = 4 per input
    hints = weight[:, HINTS]
    assert float(hints.detach().abs().sum()) > 0  # they started at 0 and moved: the clicks reached the loss
    assert load_model(tiny_run).config.network.guidance is False  # older cards load as unguided


def test_a_guided_model_reads_the_clicks_as_a_condition_of_every_step(guided_run, case_dir, first):
    """Same refine, once with the hint planes' weights zeroed and once as trained: the re-sampled members differ
    beyond the pinned ball, so the hints reach the network (inpainting alone would give the zeroed result)."""
    case = load_case(case_dir, ["flair", "t1ce"])
    previous = load_previous(first, case, ("wt",))
    point = Guidance([Point("include", tuple(ras_of(case_dir, (9, 24, 22))), radius_mm=4.0)])
    options = SegmentOptions(members=3, steps=2, seed=0)
    model = load_model(guided_run)
    trained = refine_case(model, case, previous, point, options).seg.members
    conv = model.network.unet.conv_in.conv.weight
    with torch.no_grad():
        conv[:, HINTS] = 0.0
    zeroed = refine_case(model, case, previous, point, options).seg.members
    assert trained.shape == zeroed.shape and not torch.equal(trained, zeroed)


def test_without_model_refine_uses_the_model_that_wrote_the_previous_result(tmp_path, included, tiny_run, case_dir,
                                                                           first, capsys):
    folder, voxel = included
    out = tmp_path / "implicit"
    assert main(["refine", *inputs(case_dir), "--previous", str(first), "--out", str(out),
                 point_arg("include", ras_of(case_dir, voxel)), *SAMPLING]) == 0
    assert json.loads((out / "summary.json").read_text())["model"]["name"] == "tiny"
    for name in MAPS:
        assert np.array_equal(load(out, name), load(folder, name)), name
    moved = shutil.copytree(first, tmp_path / "moved")
    summary = json.loads((moved / "summary.json").read_text())
    summary["model"]["folder"] = str(tmp_path / "gone")
    (moved / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    assert main(["refine", *inputs(case_dir), "--previous", str(moved), "--out", str(tmp_path / "never"),
                 point_arg("include", ras_of(case_dir, voxel)), *SAMPLING]) == 2
    assert "written by model 'tiny', which is not found here: give it with --model" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def _on_full_grid(folder, name, shape, affine):
    """A (possibly cropped) output on the input's whole grid, zero outside its box."""
    image = nib.load(folder / f"{name}.nii.gz")
    box = sub_grid_box(image.shape, image.affine, shape, affine)
    assert box is not None, f"{name} lies on a box of the input's grid"
    full = np.zeros(shape, dtype=image.get_data_dtype())
    full[box] = np.asanyarray(image.dataobj)
    return full, box


def test_cropped_outputs_hold_the_same_voxels_and_refine_from_them_as_from_whole_ones(tmp_path, included, tiny_run,
                                                                                     case_dir, first):
    reference = nib.load(case_dir / "obl_flair.nii.gz")
    cropped = tmp_path / "cropped"
    assert main(["segment", "--model", str(tiny_run), *inputs(case_dir), "--out", str(cropped), *SAMPLING,
                 "--crop-outputs"]) == 0
    crop = json.loads((cropped / "summary.json").read_text())["crop"]
    assert np.prod(crop["shape"]) < np.prod(reference.shape) / 2, "the phantom's tumour fills a small box"
    for name in MAPS:
        full, box = _on_full_grid(cropped, name, reference.shape, reference.affine)
        assert [s.start for s in box] == crop["first_voxel"] and [s.stop - s.start for s in box] == crop["shape"]
        assert np.array_equal(full, load(first, name)), name
    out, voxel = included
    again = tmp_path / "refined"
    assert refine(tiny_run, case_dir, cropped, again, point_arg("include", ras_of(case_dir, voxel)),
                  extra=["--crop-outputs"]) == 0
    for name in MAPS:
        assert np.array_equal(_on_full_grid(again, name, reference.shape, reference.affine)[0], load(out, name)), name


def test_a_point_resamples_the_slices_its_ball_really_crosses_and_every_painted_slice():
    """On 1 mm slices a 3 mm ball holds one voxel on each of its outermost slices: pinned, not re-sampled (the
    5 slices with a disc of at least half its radius are); on 2 mm slices all 3 slices it touches are."""
    fine = SimpleNamespace(affine=np.diag([1.0, 1.0, 1.0, 1.0]), shape=(40, 40, 40))
    coarse = SimpleNamespace(affine=np.diag([1.0, 1.0, 2.0, 1.0]), shape=(40, 40, 40))
    point = Point("include", (20.0, 20.0, 20.0))
    ball = point_ball(point, fine.affine, fine.shape)
    assert slices_along(ball, 2) == set(range(17, 24)) and ball[:, :, 17].sum() == 1
    assert _touched(Guidance([point]), fine, 2, 0) == [18, 19, 20, 21, 22]
    assert _touched(Guidance([point]), fine, 2, 1) == list(range(17, 24))
    assert _touched(Guidance([Point("include", (20.0, 20.0, 20.0))]), coarse, 2, 0) == [9, 10, 11]
    paint = np.zeros(fine.shape, np.uint8)
    paint[5, 5, [3, 30]] = 2  # a single voxel is a painted slice too
    assert _touched(Guidance([point], {"wt": paint}), fine, 2, 0) == [3, 18, 19, 20, 21, 22, 30]
