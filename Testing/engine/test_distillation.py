"""Distillation: the student sampler's passes, the student learning the teacher's members, resume, attaching."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from DiffSegExtension.cli import main
from DiffSegExtension.config import DiffusionConfig
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.modalities import list_cases
from DiffSegExtension.data.training_data import SliceDataset
from DiffSegExtension.diffusion.samplers import DDIMSampler, StudentSampler, make_sampler
from DiffSegExtension.diffusion.sampling import sample_generators, sample_masks
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.model_card import load_model
from DiffSegExtension.training.distillation import DistilOptions, load_or_build_pool, student_passes

DISTIL_ARGS = ["--pool", "16", "--batch-size", "8", "--crop", "32", "--teacher-steps", "4", "--log-every", "1"]


def test_student_passes_skip_the_pass_at_t0():
    schedule = NoiseSchedule.from_config(DiffusionConfig())
    assert StudentSampler(schedule, 2).timesteps == [500, 999]
    assert StudentSampler(schedule, 1).timesteps == [999]
    assert StudentSampler(schedule, 3).timesteps == [333, 666, 999]
    assert DDIMSampler(schedule, 2).timesteps == [0, 999], "the other samplers end at t = 0"


class _Oracle(torch.nn.Module):
    """A v-prediction network that knows x_0: at training timestep t it outputs the v of ``x0`` given x_t."""

    def __init__(self, x0: torch.Tensor, schedule: NoiseSchedule):
        super().__init__()
        self.x0, self.schedule, self.seen = x0, schedule, []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.seen.append(int(t[0]))
        x_t = x[:, -self.x0.shape[1]:]
        eps = self.schedule.predict_eps(x_t, t, self.x0)
        return self.schedule.training_target(self.x0, eps, t)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_student_sampler_lands_on_the_x0_its_network_predicts(steps):
    """With a network that predicts x_0 exactly, every pass is told its own training timestep and the output is x_0."""
    schedule = NoiseSchedule.from_config(DiffusionConfig(prediction="v"))
    x0 = torch.where(torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5, 1.0, -1.0)
    oracle = _Oracle(x0, schedule)
    sampler = StudentSampler(schedule, steps)
    out = sample_masks(oracle, torch.zeros(3, 1, 8, 8), sampler, sample_generators(0, [(i, 0) for i in range(3)]),
                       regions=2)
    assert oracle.seen == sampler.timesteps[::-1]
    assert torch.allclose(out, x0, atol=1e-4)


def test_student_thresholds_shift_only_the_output():
    """Calibrated thresholds τ_r: a member marks region r where the last x̂_0 ≥ τ_r; the passes before are unchanged."""
    schedule = NoiseSchedule.from_config(DiffusionConfig(prediction="v"))
    x0 = torch.full((1, 2, 4, 4), 0.3)
    plain = sample_masks(_Oracle(x0, schedule), torch.zeros(1, 1, 4, 4), StudentSampler(schedule, 2),
                         sample_generators(0, [(0, 0)]), regions=2)
    shifted = sample_masks(_Oracle(x0, schedule), torch.zeros(1, 1, 4, 4), StudentSampler(schedule, 2, [0.5, -0.5]),
                           sample_generators(0, [(0, 0)]), regions=2)
    assert torch.allclose(plain, x0, atol=1e-4)
    assert torch.allclose(shifted[:, 0], torch.full((1, 4, 4), -0.2), atol=1e-4)
    assert torch.allclose(shifted[:, 1], torch.full((1, 4, 4), 0.8), atol=1e-4)
    with pytest.raises(ValueError, match="thresholds"):
        sample_masks(_Oracle(x0, schedule), torch.zeros(1, 1, 4, 4), StudentSampler(schedule, 2, [0.1]),
                     sample_generators(0, [(0, 0)]), regions=2)


def _dataset_factory(teacher, phantom_cases):
    net = teacher.config.network

    def dataset():
        cases = [load_case(c, teacher.modalities, with_label=True) for c in list_cases(phantom_cases)
                 if c.name in teacher.card["data"]["train"]]
        return SliceDataset(cases, teacher.modalities, teacher.config.preprocess, net.size_multiple, regions=net.regions)
    return dataset


def test_the_student_learns_the_teachers_members(tmp_path, tiny_run, phantom_cases):
    """The pool holds the teacher's members from the pool's own start noise; distilling lowers the student's
    distance to them, and the run is a model folder that runs only with the student sampler."""
    teacher = load_model(tiny_run)
    out = tmp_path / "student"
    assert main(["distil", "--teacher", str(tiny_run), "--data", str(phantom_cases), "--out", str(out),
                 "--iterations", "40", "--lr", "3e-3", "--warmup", "1", "--checkpoint-every", "40", *DISTIL_ARGS]) == 0
    options = DistilOptions(pool=16, batch_size=8, crop=32, teacher_steps=4)
    pool = load_or_build_pool(out, teacher, _dataset_factory(teacher, phantom_cases), options,
                              log=lambda _: pytest.fail("the cached pool is reused"))
    assert len(pool) == 16 and pool.member.abs().max() <= 1.0
    schedule = NoiseSchedule.from_config(teacher.config.diffusion)
    first = slice(0, 8)
    members = sample_masks(teacher.network, pool.condition[first].float(), make_sampler("dpmpp", schedule, 4),
                           sample_generators(0, [(i, 0) for i in range(8)]), regions=1)
    assert torch.allclose(members, pool.member[first].float(), atol=2e-3), "pool members = teacher from the pool's noise"

    student = load_model(out)
    sampler = StudentSampler(schedule, 2)

    def distance(network):
        with torch.no_grad():
            return float(torch.mean((student_passes(network, sampler, pool.condition.float(), pool.start)[-1]
                                     - pool.member.float()) ** 2))
    assert distance(student.network_for("student")) < 0.5 * distance(teacher.network)
    card = student.card
    assert card["inference_defaults"]["sampler"] == "student" and card["inference_defaults"]["steps"] == 2
    assert card["distilled_from"]["weights_sha256"] == teacher.card["weights_sha256"]
    with pytest.raises(DiffSegInputError, match="runs only with --sampler student"):
        student.network_for("dpmpp")
    with pytest.raises(DiffSegInputError, match="no distilled student"):
        teacher.network_for("student")

    # Calibration: with its thresholds the student's members mark as much of the pool as the teacher's did.
    calibration = card["calibration"]
    assert calibration["iteration"] == 40
    assert calibration["teacher_fraction"] == [pytest.approx(float((pool.member > 0).float().mean()), abs=1e-6)]
    with torch.no_grad():
        marked = float((student_passes(student.network, sampler, pool.condition.float(), pool.start)[-1]
                        >= calibration["thresholds"][0]).float().mean())
    assert marked == pytest.approx(calibration["teacher_fraction"][0], abs=2e-3)
    assert student.sampler_options("student") == {"thresholds": calibration["thresholds"]}
    assert student.sampler_options("dpmpp") == {} and teacher.sampler_options("student") == {}


def test_distillation_resumes_bit_for_bit(tmp_path, tiny_run, phantom_cases):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["distil", "--teacher", str(tiny_run), "--data", str(phantom_cases), *DISTIL_ARGS]
    assert main([*common, "--out", str(straight), "--iterations", "4", "--checkpoint-every", "4"]) == 0
    assert main([*common, "--out", str(resumed), "--iterations", "2", "--checkpoint-every", "2"]) == 0
    pool_written = (resumed / "teacher_pool.safetensors").stat().st_mtime_ns
    assert main([*common, "--out", str(resumed), "--iterations", "4", "--checkpoint-every", "4", "--resume"]) == 0
    assert (resumed / "teacher_pool.safetensors").stat().st_mtime_ns == pool_written, "the pool is not rebuilt"
    for name in ("weights.safetensors", "optimizer.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert main([*common, "--out", str(resumed), "--iterations", "4"]) == 2, "an existing run needs --resume"


def test_an_attached_student_segments_as_its_run_does_and_is_the_default_only_when_asked(tmp_path, tiny_run, phantom_cases,
                                                                                          capsys, monkeypatch):
    run = tmp_path / "student"
    assert main(["distil", "--teacher", str(tiny_run), "--data", str(phantom_cases), "--out", str(run),
                 "--iterations", "3", *DISTIL_ARGS]) == 0
    model = tmp_path / "bundle" / "model"
    shutil.copytree(tiny_run, model)
    assert main(["export", "--run", str(run), "--out", str(model), "--student"]) == 0
    assert load_model(model).inference_defaults["sampler"] == "dpmpp", "attached, not the default unless asked"
    assert main(["export", "--run", str(run), "--out", str(model), "--student", "--make-default"]) == 0
    loaded = load_model(model)
    assert loaded.inference_defaults["sampler"] == "student" and loaded.card["student"]["steps"] == 2
    assert loaded.card["student"]["distilled_from"] == {"sampler": "dpmpp", "steps": 4}
    ema = load_file(str(run / "weights.safetensors"))
    assert all(torch.equal(v, ema[f"ema.{k}"]) for k, v in loaded.network_for("student").state_dict().items())
    assert loaded.network_for("dpmpp") is loaded.network, "the teacher's own recipes keep the teacher"
    run_card = json.loads((run / "model.json").read_text())
    assert loaded.sampler_options("student") == {"thresholds": run_card["calibration"]["thresholds"]}
    monkeypatch.setenv("DIFFSEG_MODELS_DIR", str(model.parent))
    capsys.readouterr()
    assert main(["models"]) == 0
    assert "distilled student: 2 passes" in capsys.readouterr().out

    case = list_cases(phantom_cases)[3]
    inputs = ["--flair", str(case / f"{case.name}_flair.nii.gz"), "--t1ce", str(case / f"{case.name}_t1ce.nii.gz"),
              "--progress", "none", "--no-overview"]
    assert main(["segment", "--model", str(model), *inputs, "--out", str(tmp_path / "default")]) == 0
    assert main(["segment", "--model", str(run), *inputs, "--out", str(tmp_path / "run"),
                 "--sampler", "student", "--steps", "2"]) == 0
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["options"]["sampler"] == "student" and summary["options"]["steps"] == 2
    a, b = (nib.load(str(tmp_path / d / "probability.nii.gz")).get_fdata() for d in ("default", "run"))
    np.testing.assert_array_equal(a, b)

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    (other / "model.json").write_text(json.dumps({**json.loads((other / "model.json").read_text()),
                                                  "weights_sha256": "0" * 64}))
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--out", str(other), "--student"]) == 2
    assert "distilled from other weights" in capsys.readouterr().err
    assert not (other / "student.safetensors").exists()


def test_the_bundled_student_reproduces_its_teacher_on_real_mri(shared_data):
    """brats-regions' student (at its card's passes: one) against its teacher (DPM-Solver++ 10 steps), same members
    and noise, on the 6 most tumorous slices of a validation subject: their ensembles agree, and the calibration
    matters for the enhancing tumour (without it the student marks less of it)."""
    from DiffSegExtension.inference.segment import SegmentOptions, segment_case
    from DiffSegExtension.evaluation.metrics import dice

    model = load_model("brats-regions")
    assert model.student is not None and model.inference_defaults["sampler"] == "student"
    case_dir = shared_data / "brats2018_4mod" / "Brats18_CBICA_AQP_1"
    assert case_dir.name in model.card["data"]["validation"]
    case = load_case(case_dir, model.modalities, with_label=True, optional=model.optional_modalities)
    axis = 2  # BraTS volumes are axial along voxel axis 2
    tumour_per_slice = (case.label_map > 0).sum(axis=(0, 1))
    first = int(np.argmax(np.convolve(tumour_per_slice, np.ones(6), mode="valid")))
    common = dict(members=6, slice_range=(first, first + 6), device="cpu")
    passes = model.card["student"]["steps"]
    teacher = segment_case(model, case, SegmentOptions(sampler="dpmpp", steps=10, **common))
    student = segment_case(model, case, SegmentOptions(sampler="student", steps=passes, **common))
    uncalibrated = segment_case(model, case, SegmentOptions(sampler="student", steps=passes,
                                                            sampler_options={"thresholds": [0.0, 0.0, 0.0]}, **common))
    assert axis == student.prepared.frame.slice_axis
    agreement = {r: dice(student.mask[i].astype(bool), teacher.mask[i].astype(bool)) for i, r in enumerate(model.regions)}
    assert agreement["wt"] > 0.9 and agreement["tc"] > 0.8 and agreement["et"] > 0.6, agreement
    et = model.regions.index("et")
    assert student.probability[et].sum() > uncalibrated.probability[et].sum()
