"""Distil a model's many-step sampler into a few-step student (trajectory distillation).

The teacher's deterministic sampler (``teacher_sampler`` × ``teacher_steps``: DPM-Solver++ 10 steps)
maps start noise x_T and the MRI to one ensemble member x̂_0. The student, the same network warm-started
from the teacher's weights, learns that map for the K passes of the ``student`` sampler
(:class:`~DiffSegExtension.diffusion.samplers.student.StudentSampler`): at every pass its x̂_0 is regressed
onto the teacher's member from the same x_T (Luhman & Luhman 2021, "Knowledge distillation in iterative
generative models"; here with K > 1 passes, each fed the state the student's own previous pass leads to,
exactly as at inference). Because each member still comes
from its own noise, the student keeps an ensemble — its spread is what the uncertainty is made of.

Teacher members are computed once for a pool of training crops (the teacher's own batches: tumour
and random crops, flips, intensity jitter, sequence drop-out) and reused; the pool is cached in the
run folder so that ``--resume`` continues bit for bit without re-running the teacher. After training,
:func:`calibrate` sets per-region thresholds on the student's x̂_0 from the same pool.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel

from DiffSegExtension.atomic import atomic_path, write_text_atomic
from DiffSegExtension.data.training_data import SliceDataset
from DiffSegExtension.diffusion.samplers import make_sampler
from DiffSegExtension.diffusion.samplers.base import per_sample_noise
from DiffSegExtension.diffusion.samplers.student import StudentSampler
from DiffSegExtension.diffusion.sampling import sample_generators, sample_masks
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.model_card import CARD_FILE, LoadedModel, check_not_pickle, read_model_card
from DiffSegExtension.network import DenoisingUNet, condition_input
from DiffSegExtension.training.checkpoint import load_checkpoint, save_checkpoint
from DiffSegExtension.training.ema import ema_with_warmup
from DiffSegExtension.training.trainer import iteration_generator

POOL_FILE = "teacher_pool.safetensors"


@dataclass
class DistilOptions:
    student_steps: int = 2        # K: network passes of the student's sampler
    teacher_sampler: str = "dpmpp"  # the recipe the student imitates
    teacher_steps: int = 10
    iterations: int = 1500
    batch_size: int = 16
    pool: int = 4096              # teacher members computed once (crops × 1 member each)
    crop: int = 128
    lr: float = 1e-4
    warmup: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0


@dataclass
class TeacherPool:
    """condition (P, C, c, c) float16; start (P, R, c, c) float32 noise x_T; member (P, R, c, c) float16
    the teacher's x̂_0 in [−1, 1] from that noise."""

    condition: torch.Tensor
    start: torch.Tensor
    member: torch.Tensor

    def __len__(self) -> int:
        return self.condition.shape[0]


def build_teacher_pool(teacher: LoadedModel, dataset: SliceDataset, options: DistilOptions,
                       on_chunk: Callable[[int, int], None] | None = None) -> TeacherPool:
    """One teacher member for each of ``options.pool`` training crops, in chunks of ``batch_size``.

    Chunk j's crops come from the trainer's batch sampler seeded by (seed, j); item b's start noise
    from the inference generators keyed (seed, j·batch + b) — so the pool is the same on every run.
    """
    config = teacher.config.network
    schedule = NoiseSchedule.from_config(teacher.config.diffusion)
    conditions, starts, members = [], [], []
    chunks = -(-options.pool // options.batch_size)
    for j in range(chunks):
        size = min(options.batch_size, options.pool - j * options.batch_size)
        batch = dataset.sample_batch(iteration_generator(options.seed, j, 0), size, options.crop, augment=True,
                                     tumour_fraction=0.5, modality_dropout=0.5)
        condition = condition_input(config, batch.images, batch.present)
        keys = [(j * options.batch_size + b, 0) for b in range(size)]
        start = per_sample_noise(torch.empty(size, len(config.regions), options.crop, options.crop),
                                 sample_generators(options.seed, keys))  # what sample_masks starts from
        member = sample_masks(teacher.network_for(options.teacher_sampler), condition,
                              make_sampler(options.teacher_sampler, schedule, options.teacher_steps),
                              sample_generators(options.seed, keys), regions=len(config.regions))
        conditions.append(condition.half())
        starts.append(start)
        members.append(member.half())
        if on_chunk is not None:
            on_chunk(j + 1, chunks)
    return TeacherPool(torch.cat(conditions), torch.cat(starts), torch.cat(members))


def load_or_build_pool(folder: Path, teacher: LoadedModel, dataset_factory: Callable[[], SliceDataset],
                       options: DistilOptions, log: Callable[[str], None] = print) -> TeacherPool:
    """The run folder's cached pool if it was made with these options, else a new one (then cached)."""
    path = Path(folder) / POOL_FILE
    fingerprint = ":".join(map(str, (teacher.card.get("weights_sha256"), options.teacher_sampler, options.teacher_steps,
                                     options.pool, options.batch_size, options.crop, options.seed)))
    if path.is_file():
        check_not_pickle(path)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            if f.metadata().get("fingerprint") == fingerprint:
                tensors = load_file(str(path))
                return TeacherPool(tensors["condition"], tensors["start"], tensors["member"])
    tic = time.perf_counter()
    pool = build_teacher_pool(teacher, dataset_factory(), options,
                              on_chunk=lambda done, total: log(f"teacher pool {done}/{total}") if done % 32 == 0 else None)
    log(f"teacher pool: {len(pool)} members in {time.perf_counter() - tic:.0f} s")
    with atomic_path(path) as tmp:
        save_file(asdict(pool), str(tmp), metadata={"fingerprint": fingerprint})
    return pool


def student_passes(network: torch.nn.Module, sampler: StudentSampler, condition: torch.Tensor, start: torch.Tensor
                   ) -> list[torch.Tensor]:
    """The student's K passes from ``start`` (B, R, H, W) as at inference; returns each pass's unclipped x̂_0.

    Gradients flow into each pass's own prediction; the state handed to the next pass is detached
    (the sampler's clipped step, exactly what inference computes).
    """
    regions = start.shape[1]
    x, predictions = start, []
    for k in reversed(range(len(sampler))):
        t = sampler.model_timestep(k, x.shape[0])
        output = network(torch.cat([condition, x], dim=1), t)
        index = torch.full((x.shape[0],), k, dtype=torch.long)
        eps = sampler.schedule.epsilon_from_prediction(output[:, :regions], x, index)
        predictions.append(sampler.schedule.predict_x0(x, index, eps))
        if k > 0:
            with torch.no_grad():
                x = sampler.step(eps.detach(), k, x, [])
    return predictions


def distil(teacher: LoadedModel, pool: TeacherPool, out_dir: Path, options: DistilOptions, card_info: dict[str, Any],
           resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the student into ``out_dir`` (a run folder, also a model folder); returns its card.

    Loss: mean over passes of the MSE between the pass's x̂_0 and the teacher member, per pixel and region.
    """
    out_dir = Path(out_dir)
    network = DenoisingUNet(teacher.config.network)
    network.load_state_dict(teacher.network_for(options.teacher_sampler).state_dict())
    ema = AveragedModel(network, multi_avg_fn=ema_with_warmup(options.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=0.0)
    schedule = NoiseSchedule.from_config(teacher.config.diffusion)
    sampler = StudentSampler(schedule, options.student_steps)
    card = {**teacher.card, **card_info,
            "inference_defaults": {**teacher.card.get("inference_defaults", {}), "sampler": "student",
                                   "steps": options.student_steps},
            "distilled_from": {"model": teacher.name, "weights_sha256": teacher.card.get("weights_sha256"),
                               "sampler": options.teacher_sampler, "steps": options.teacher_steps},
            "training": {"distillation": asdict(options), "iteration": 0, "seconds": 0.0}}
    for key in ("validation", "weights_sha256", "student"):
        card.pop(key, None)
    start, elapsed = 0, 0.0
    if resume and (out_dir / CARD_FILE).is_file():
        previous = load_checkpoint(out_dir, network, ema, optimizer)
        start, elapsed = previous["training"]["iteration"], previous["training"]["seconds"]
        card = {**previous, "training": {**previous["training"], "distillation": asdict(options)}}
    out_dir.mkdir(parents=True, exist_ok=True)
    network.train()
    tic = time.perf_counter()
    for iteration in range(start, options.iterations):
        g = iteration_generator(options.seed + 1, iteration, 0)
        rows = torch.randint(0, len(pool), (options.batch_size,), generator=g)
        condition, x_start, target = pool.condition[rows].float(), pool.start[rows], pool.member[rows].float()
        predictions = student_passes(network, sampler, condition, x_start)
        losses = [torch.mean((p - target) ** 2) for p in predictions]
        loss = torch.stack(losses).mean()
        for group in optimizer.param_groups:
            group["lr"] = options.lr * min(1.0, (iteration + 1) / max(1, options.warmup))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), options.grad_clip)
        optimizer.step()
        ema.update_parameters(network)
        done = iteration + 1
        if done % options.log_every == 0:
            log(f"iteration {done}: loss {loss.item():.5f} per pass " + " ".join(f"{v.item():.5f}" for v in losses)
                + f" ({elapsed + time.perf_counter() - tic:.0f} s)")
        if done % options.checkpoint_every == 0 or done == options.iterations:
            card["training"].update(iteration=done, seconds=round(elapsed + time.perf_counter() - tic, 1),
                                    last_loss=round(float(loss.item()), 6))
            save_checkpoint(out_dir, network, ema, optimizer, card)
    saved = read_model_card(out_dir)
    if saved.get("calibration", {}).get("iteration") != saved["training"]["iteration"]:
        log("calibrating the student's thresholds on the pool")
        saved["calibration"] = {"iteration": saved["training"]["iteration"],
                                **calibrate(ema.module, pool, options.student_steps, schedule)}
        write_text_atomic(out_dir / CARD_FILE, json.dumps(saved, indent=2))
    return saved


def calibrate(network: torch.nn.Module, pool: TeacherPool, steps: int, schedule: NoiseSchedule,
              batch_size: int = 32) -> dict[str, list[float]]:
    """Per-region thresholds τ_r on the student's x̂_0 so that its members mark as many pool pixels of region r as
    the teacher's members do; the student sampler applies them (members mark x̂_0 ≥ τ_r instead of ≥ 0).

    Why: regressed onto members it cannot always tell apart from the noise, the student predicts their mean where
    it is unsure, and a thin, rare region's mean falls below 0: measured on the region model's pool, its 2-pass
    student's members marked 38 % less enhancing tumour than the teacher's. The thresholds come from the training
    crops only. Returns thresholds, and the teacher's and the uncalibrated student's foreground fractions.
    """
    sampler = StudentSampler(schedule, steps)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(pool), batch_size):
            rows = slice(start, start + batch_size)
            outputs.append(student_passes(network, sampler, pool.condition[rows].float(), pool.start[rows])[-1]
                           .clamp(-1.0, 1.0).half())
    x0 = torch.cat(outputs)
    result: dict[str, list[float]] = {"thresholds": [], "teacher_fraction": [], "student_fraction": []}
    for r in range(x0.shape[1]):
        values = x0[:, r].flatten().float()
        positives = int((pool.member[:, r] > 0).sum())
        tau = float(torch.kthvalue(values, values.numel() - positives).values) if 0 < positives < values.numel() else 0.0
        result["thresholds"].append(round(tau, 6))
        result["teacher_fraction"].append(round(positives / values.numel(), 6))
        result["student_fraction"].append(round(float((values >= 0).float().mean()), 6))
    return result

