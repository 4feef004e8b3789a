"""The training loop: hybrid loss on random (slice, timestep) pairs, AdamW, EMA, validation, checkpoints.

Reproducibility: everything random in iteration i (batch choice, crops, augmentation, timesteps,
noise) comes from a generator seeded by (seed, i, rank), so a run resumed from the checkpoint of
iteration i continues bit for bit as if it had never stopped.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from DiffSegExtension import __version__
from DiffSegExtension.config import ModelConfig
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.training_data import SliceDataset
from DiffSegExtension.diffusion.losses import hybrid_loss
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.model_card import CARD_FILE, CARD_FORMAT
from DiffSegExtension.regions import output_labels
from DiffSegExtension.network import DenoisingUNet, condition_input, count_parameters
from DiffSegExtension.training.checkpoint import load_checkpoint, save_checkpoint
from DiffSegExtension.training.distributed import init_distributed
from DiffSegExtension.training.ema import ema_with_warmup
from DiffSegExtension.training.validation import select_validation_slices, validation_dice

LOG_FILE = "train_log.csv"
LOG_FIELDS = ["iteration", "loss", "mse", "vb", "lr", "seconds", "val_dice", "val_dice_tc", "val_dice_et"]


@dataclass
class TrainOptions:
    iterations: int = 2000
    batch_size: int = 8           # global batch (split across torchrun processes)
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int = 100             # linear learning-rate warm-up, iterations
    grad_clip: float = 1.0
    ema_decay: float = 0.999      # reached after a warm-up (training/ema.py)
    crop: int | None = None       # training crop (pixels); default: the config's train_crop
    tumour_fraction: float = 0.5  # share of each batch drawn from slices with tumour
    modality_dropout: float = 0.5  # share of items that drop a random subset of their optional modalities
    hint_rate: float = 0.5        # guided networks only: share of items given simulated clicks
    val_every: int = 500
    val_sampler: str = "ddim"
    val_steps: int = 10
    val_members: int = 3
    val_max_slices: int = 16
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"


def iteration_generator(seed: int, iteration: int, rank: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, iteration, rank]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _read_log(path: Path, upto: int) -> list[dict[str, str]]:
    """Rows of an existing log up to iteration ``upto`` (later rows belong to work lost in a crash)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["iteration"]) <= upto]


def train(config: ModelConfig, train_cases: list[Case], val_cases: list[Case], out_dir: Path, options: TrainOptions,
          card_info: dict[str, Any], resume: bool = False, progress: str = "tqdm",
          init_from: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume) a model into ``out_dir``; returns the final model card.

    ``init_from``: a model folder or bundled name of the same preset to start from (warm start,
    :mod:`~DiffSegExtension.training.warm_start`); ignored when resuming (the checkpoint has it).
    """
    from DiffSegExtension.inference.segment import resolve_device

    out_dir = Path(out_dir)
    ctx = init_distributed(resolve_device(options.device))
    try:
        if options.batch_size % ctx.world_size:
            raise DiffSegInputError(f"--batch-size {options.batch_size} must be divisible by the {ctx.world_size} processes")
        if not resume and (out_dir / CARD_FILE).exists():
            raise DiffSegInputError(f"{out_dir} already holds a model: add --resume to continue it or choose another --out")
        torch.manual_seed(options.seed)  # identical initial weights on every rank
        network = DenoisingUNet(config.network)
        initialised = None
        if init_from is not None and not resume:
            from DiffSegExtension.model_card import load_model
            from DiffSegExtension.training.warm_start import warm_start

            source = load_model(init_from)
            initialised = {"model": source.name, "weights_sha256": source.card.get("weights_sha256"),
                           **warm_start(network, source.network)}
        network = network.to(ctx.device)
        ema = AveragedModel(network, multi_avg_fn=ema_with_warmup(options.ema_decay), use_buffers=True)
        optimizer = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        start, elapsed = 0, 0.0
        card: dict[str, Any] = {
            "format": CARD_FORMAT, **card_info, "modalities": list(config.modalities),
            "required_modalities": list(config.network.required_modalities),
            "optional_modalities": list(config.network.optional_modalities),
            "regions": list(config.network.regions),
            "output_labels": {str(k): v for k, v in output_labels(config.network.regions).items()},
            "config": config.to_dict(),
            "parameters": count_parameters(network), "diffseg_version": __version__,
            "training": {"options": asdict(options), "iteration": 0, "seconds": 0.0, "processes": ctx.world_size,
                         **({"initialised_from": initialised} if initialised else {})},
        }
        if resume:
            previous = load_checkpoint(out_dir, network, ema, optimizer)
            if ModelConfig.from_dict(previous["config"]) != config:
                raise DiffSegInputError(f"--resume: {out_dir} was trained with another model config; use the same options")
            start, elapsed = previous["training"]["iteration"], previous["training"]["seconds"]
            card = {**previous, "training": {**previous["training"], "options": asdict(options)}}
        schedule = NoiseSchedule.from_config(config.diffusion)
        net_config = config.network
        dataset = SliceDataset(train_cases, config.modalities, config.preprocess, net_config.size_multiple,
                               regions=net_config.regions, optional=net_config.optional_modalities)
        val_slices = select_validation_slices(val_cases, config, options.val_max_slices) if ctx.is_main and val_cases else []
        model = DistributedDataParallel(network) if ctx.enabled else network
        local_batch = options.batch_size // ctx.world_size
        log_rows = _read_log(out_dir / LOG_FILE, start) if ctx.is_main else []
        bar = None
        if ctx.is_main and progress == "tqdm":
            from tqdm import tqdm

            bar = tqdm(total=options.iterations, initial=start, desc="train", unit="it", dynamic_ncols=True)
        network.train()
        tic = time.perf_counter()
        for iteration in range(start, options.iterations):
            g = iteration_generator(options.seed, iteration, ctx.rank)
            batch = dataset.sample_batch(g, local_batch, options.crop, augment=True,
                                         tumour_fraction=options.tumour_fraction,
                                         modality_dropout=options.modality_dropout,
                                         hint_rate=options.hint_rate if net_config.guidance else None)
            t = torch.randint(0, schedule.num_timesteps, (local_batch,), generator=g)
            noise = torch.randn(batch.masks.shape, generator=g)
            condition = condition_input(net_config, batch.images, batch.present, batch.known)
            condition, masks, t, noise = (x.to(ctx.device) for x in (condition, batch.masks, t, noise))
            x_t = schedule.q_sample(masks, t, noise)
            losses = hybrid_loss(schedule, model(torch.cat([condition, x_t], dim=1), t), masks, x_t, t, noise,
                                 weights=batch.weights)
            loss = losses["loss"].mean()
            lr = options.lr * min(1.0, (iteration + 1) / max(1, options.warmup))
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), options.grad_clip)
            optimizer.step()
            ema.update_parameters(network)
            done = iteration + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if not ctx.is_main:
                continue
            row = None
            if done % options.log_every == 0 or done == options.iterations:
                row = {"iteration": done, "loss": f"{loss.item():.6f}", "mse": f"{losses['mse'].mean().item():.6f}",
                       "vb": f"{losses['vb'].mean().item():.6f}", "lr": f"{lr:.3g}",
                       "seconds": f"{elapsed + time.perf_counter() - tic:.1f}", "val_dice": ""}
            if val_slices and (done % options.val_every == 0 or done == options.iterations):
                scores = validation_dice(ema.module, schedule, val_slices, sampler=options.val_sampler,
                                         steps=options.val_steps, members=options.val_members, device=ctx.device)
                row = row or {"iteration": done, "seconds": f"{elapsed + time.perf_counter() - tic:.1f}"}
                means = scores["mean"]
                for region, value in means.items():
                    row["val_dice" if region == "wt" else f"val_dice_{region}"] = f"{value:.4f}"
                card["training"]["validation_dice"] = {case: {r: round(v, 4) for r, v in per.items()}
                                                       for case, per in scores.items()}
                if bar is not None:
                    bar.write(f"iteration {done}: validation Dice " +
                              ", ".join(f"{r.upper()} {v:.4f}" for r, v in means.items()))
            if row is not None:
                log_rows.append(row)
            if done % options.checkpoint_every == 0 or done == options.iterations:
                card["training"].update(iteration=done, seconds=round(elapsed + time.perf_counter() - tic, 1))
                save_checkpoint(out_dir, network, ema, optimizer, card)
                _write_log(out_dir / LOG_FILE, log_rows)
        if bar is not None:
            bar.close()
        if ctx.enabled:
            _check_replicas_agree(network)
            # Every rank is done before any tears the group down: on an oversubscribed CPU one rank's
            # destroy_process_group while its peer still finished gloo work once aborted that rank.
            ctx.barrier()
        return card
    finally:
        ctx.close()


def _check_replicas_agree(network: torch.nn.Module) -> None:
    """DDP invariant: every process ends with the same weights (else gradients were not synchronised)."""
    import torch.distributed as dist

    checksum = torch.stack([p.detach().double().sum() for p in network.parameters()]).cpu()
    gathered = [torch.empty_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
        raise RuntimeError("DDP replicas diverged: their weights differ after training")


def _write_log(path: Path, rows: list[dict[str, str]]) -> None:
    from DiffSegExtension.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
