"""Deterministic 2D baseline: a MONAI UNet trained on exactly the diffusion model's split and budget.

    python benchmarks/baseline_unet.py --split-from brats-flair --out runs/baseline [--iterations N]

The split (``data.train`` / ``data.validation``), the data roots, the modalities, the preprocessing,
the crop, the batch size, the tumour share of a batch, the learning rate and warm-up, and the number
of iterations all come from the diffusion model's card (``training.options``), so both models see
the same slices for the same number of batches. Same data pipeline as the engine
(``SliceDataset.sample_batch`` with the same augmentation; ``prepare_volume`` / ``restore`` for full
volumes). Loss: MONAI ``DiceCELoss`` (sigmoid, one logit); optimiser AdamW. Weights are written as
safetensors (never pickle), with a JSON card holding the split, the options and the training time.
``--resume`` continues from the last checkpoint; iteration i's batch depends only on (seed, i).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safetensors.torch import load_file, save_file

from DiffSegExtension.atomic import atomic_path, write_text_atomic
from DiffSegExtension.commands.common import add_threads_argument, apply_threads
from DiffSegExtension.config import ModelConfig, PreprocessConfig
from DiffSegExtension.data.loading import Case, load_case
from DiffSegExtension.data.modalities import list_cases
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.data.training_data import SliceDataset
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.evaluation.metrics import dice, hd95, reliability, spacing_from_affine
from DiffSegExtension.inference.segment import resolve_device
from DiffSegExtension.model_card import check_not_pickle, read_model_card, resolve_model, sha256_of
from DiffSegExtension.training.checkpoint import load_optimizer_tensors, optimizer_tensors
from DiffSegExtension.training.trainer import iteration_generator

REPO = Path(__file__).resolve().parent.parent

CARD_FILE = "baseline.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "train_log.csv"
CHANNELS = (16, 32, 64, 128, 256)
#: Image sides must be multiples of this (four stride-2 levels).
SIZE_MULTIPLE = 2 ** (len(CHANNELS) - 1)


def make_network(in_channels: int, channels: tuple[int, ...] = CHANNELS) -> torch.nn.Module:
    """MONAI ``UNet``, 2D, residual units (2 per level), one output logit. x (B, M, H, W) → (B, 1, H, W)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=1, channels=tuple(channels),
                strides=(2,) * (len(channels) - 1), num_res_units=2)


@dataclass
class Split:
    """The diffusion model's data split and training budget, read from its card."""

    model: str
    train: list[str]
    validation: list[str]
    roots: list[Path]
    modalities: tuple[str, ...]
    preprocess: PreprocessConfig
    options: dict[str, Any]  # the card's training.options (+ "iterations" = iterations actually trained)


def read_split(model_dir: str | Path, roots: list[Path] | None = None) -> Split:
    folder = resolve_model(model_dir)
    card = read_model_card(folder)
    data = card.get("data") or {}
    if not data.get("train"):
        raise DiffSegInputError(f"model card of {folder} records no training cases (data.train): cannot copy its split")
    training = card.get("training", {})
    options = dict(training.get("options", {}))
    options["iterations"] = int(training.get("iteration") or options.get("iterations", 0))
    config = ModelConfig.from_dict(card["config"])
    return Split(model=card["name"], train=list(data["train"]), validation=list(data.get("validation", [])),
                 roots=roots or card_roots(card), modalities=config.modalities, preprocess=config.preprocess,
                 options=options)


def card_roots(card: dict[str, Any]) -> list[Path]:
    """The card's ``data.roots``; relative ones are relative to the repository (or, if found, the working folder)."""
    given = [Path(r) for r in (card.get("data") or {}).get("roots", [])]
    return [r if r.is_absolute() or r.exists() else REPO / r for r in given]


def case_folders(roots: list[Path], names: list[str]) -> list[Path]:
    """The case folders called ``names`` under ``roots`` (every name must be found exactly once)."""
    found: dict[str, list[Path]] = {}
    for root in roots:
        for path in list_cases(root):
            found.setdefault(path.name, []).append(path)
    missing = [n for n in names if n not in found]
    twice = [n for n in names if len(found.get(n, [])) > 1]
    if missing or twice:
        raise DiffSegInputError(f"cases not found ({missing}) or found twice ({twice}) under {[str(r) for r in roots]}")
    return [found[n][0] for n in names]


def load_cases(roots: list[Path], names: list[str], modalities) -> list[Case]:
    return [load_case(p, modalities, with_label=True, allow_2d=True) for p in case_folders(roots, names)]


@dataclass
class BaselineOptions:
    iterations: int = 2000
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int = 100
    grad_clip: float = 1.0
    tumour_fraction: float = 0.5
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    device: str = "auto"

    @staticmethod
    def from_split(split: Split, **overrides) -> "BaselineOptions":
        """The diffusion run's budget and optimiser settings; ``overrides`` (not None) win."""
        names = {f.name for f in fields(BaselineOptions)}
        values = {k: v for k, v in split.options.items() if k in names and v is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("crop") is None:
            values["crop"] = split.preprocess.train_crop
        return BaselineOptions(**values)


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["iteration", "loss", "lr", "seconds"])
        writer.writeheader()
        writer.writerows(rows)


def train_baseline(split: Split, out: Path, options: BaselineOptions, resume: bool = False, log=print) -> dict:
    """Train into ``out`` (card, weights, optimiser state, loss log); returns the card."""
    from monai.losses import DiceCELoss

    out = Path(out)
    if (out / CARD_FILE).exists() and not resume:
        raise DiffSegInputError(f"{out} already holds a baseline: add --resume or choose another --out")
    if options.crop % SIZE_MULTIPLE:
        raise DiffSegInputError(f"crop {options.crop} must be a multiple of {SIZE_MULTIPLE}")
    device = resolve_device(options.device)
    torch.manual_seed(options.seed)
    network = make_network(len(split.modalities)).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    start, elapsed, rows = 0, 0.0, []
    if resume and (out / CARD_FILE).exists():
        previous = json.loads((out / CARD_FILE).read_text())
        for name, key in ((WEIGHTS_FILE, "weights_sha256"), (OPTIMIZER_FILE, "optimizer_sha256")):
            if sha256_of(out / name) != previous[key]:
                raise DiffSegInputError(f"{out / name} does not match {CARD_FILE}: cannot resume from this folder")
        check_not_pickle(out / WEIGHTS_FILE)
        network.load_state_dict({k[6:]: v for k, v in load_file(str(out / WEIGHTS_FILE)).items()})
        load_optimizer_tensors(optimizer, out / OPTIMIZER_FILE)
        start, elapsed = previous["training"]["iteration"], previous["training"]["seconds"]
        if (out / LOG_FILE).is_file():
            with open(out / LOG_FILE, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]
    out.mkdir(parents=True, exist_ok=True)
    cases = load_cases(split.roots, split.train, split.modalities)
    dataset = SliceDataset(cases, split.modalities, split.preprocess, SIZE_MULTIPLE)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    card = {"kind": "deterministic 2D baseline (MONAI UNet, DiceCE)", "split_from": split.model,
            "modalities": list(split.modalities), "network": {"class": "monai.networks.nets.UNet", "channels": list(CHANNELS),
                                                              "num_res_units": 2, "out_channels": 1},
            "parameters": sum(p.numel() for p in network.parameters()), "size_multiple": SIZE_MULTIPLE,
            "preprocess": asdict(split.preprocess),
            "data": {"train": split.train, "validation": split.validation, "roots": [str(r) for r in split.roots],
                     "training_slices": len(dataset)},
            "training": {"options": asdict(options), "iteration": start, "seconds": elapsed, "device": str(device)}}
    network.train()
    tic = time.perf_counter()
    for iteration in range(start, options.iterations):
        g = iteration_generator(options.seed, iteration, 0)
        batch = dataset.sample_batch(g, options.batch_size, options.crop, augment=True,
                                     tumour_fraction=options.tumour_fraction)
        target = (batch.masks > 0).float()  # the engine's masks are ±1
        loss = loss_fn(network(batch.images.to(device)), target.to(device))
        lr = options.lr * min(1.0, (iteration + 1) / max(1, options.warmup))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), options.grad_clip)
        optimizer.step()
        done = iteration + 1
        seconds = elapsed + time.perf_counter() - tic
        if done % options.log_every == 0 or done == options.iterations:
            rows.append({"iteration": done, "loss": f"{loss.item():.6f}", "lr": f"{lr:.3g}", "seconds": f"{seconds:.1f}"})
            log(f"baseline iteration {done}/{options.iterations}: loss {loss.item():.4f} ({seconds:.0f} s)")
        if done % options.checkpoint_every == 0 or done == options.iterations:
            card["training"].update(iteration=done, seconds=round(seconds, 1),
                                    seconds_per_iteration=round((seconds - elapsed) / (done - start), 4))
            _save(out, network, optimizer, card)
            _write_log(out / LOG_FILE, rows)
    return card


def _save(out: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer, card: dict) -> None:
    for name, tensors, meta in ((WEIGHTS_FILE, {f"model.{k}": v for k, v in network.state_dict().items()}, None),
                                (OPTIMIZER_FILE, *optimizer_tensors(optimizer))):
        with atomic_path(out / name) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
    card["weights_sha256"] = sha256_of(out / WEIGHTS_FILE)
    card["optimizer_sha256"] = sha256_of(out / OPTIMIZER_FILE)
    write_text_atomic(out / CARD_FILE, json.dumps(card, indent=2))


@dataclass
class Baseline:
    folder: Path
    card: dict
    network: torch.nn.Module
    modalities: tuple[str, ...]
    preprocess: PreprocessConfig


def load_baseline(folder: str | Path, device: str = "cpu") -> Baseline:
    folder = Path(folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise DiffSegInputError(f"no baseline in {folder} ({CARD_FILE} missing): train one with benchmarks/baseline_unet.py")
    card = json.loads(card_path.read_text())
    weights = folder / WEIGHTS_FILE
    check_not_pickle(weights)
    if sha256_of(weights) != card.get("weights_sha256"):
        raise DiffSegInputError(f"{weights} does not match the SHA-256 in {card_path}")
    network = make_network(len(card["modalities"]), tuple(card["network"]["channels"]))
    network.load_state_dict({k[6:]: v.float() for k, v in load_file(str(weights)).items() if k.startswith("model.")})
    return Baseline(folder, card, network.eval().to(device), tuple(card["modalities"]),
                    PreprocessConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["preprocess"].items()}))


@torch.inference_mode()
def segment_baseline(model: Baseline, case: Case, batch_size: int = 16, device: str = "auto") -> dict:
    """Full volume: probability (sigmoid, 0 outside the brain) and mask (≥ 0.5) on the case's grid, seconds."""
    started = time.perf_counter()
    dev = resolve_device(device)
    network = model.network.to(dev)
    prepared = prepare_volume(case, model.modalities, model.preprocess, SIZE_MULTIPLE)
    maps = [torch.sigmoid(network(prepared.images[i:i + batch_size].to(dev))[:, 0]).cpu()
            for i in range(0, len(prepared), batch_size)]
    probability = prepared.restore(torch.cat(maps) * prepared.brain)
    brain = prepared.restore(prepared.brain.float()) > 0.5
    return {"probability": probability, "mask": (probability >= 0.5).astype(np.uint8), "brain": brain,
            "seconds": time.perf_counter() - started}


def evaluate_baseline(model: Baseline, cases: list[Case], device: str = "auto") -> list[dict]:
    """Per case: Dice, HD95 (mm), ECE of the sigmoid inside the brain, seconds per volume."""
    rows = []
    for case in cases:
        out = segment_baseline(model, case, device=device)
        truth = case.label.astype(bool)
        rows.append({"case": case.name, "dice": dice(out["mask"], truth),
                     "hd95_mm": hd95(out["mask"], truth, spacing_from_affine(case.affine)),
                     "ece": reliability(out["probability"][out["brain"]], truth[out["brain"]])["ece"],
                     "seconds": out["seconds"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-from", required=True, help="the diffusion model (folder or bundled name) whose split to copy")
    parser.add_argument("--out", type=Path, required=True, help="baseline folder (card, weights, log)")
    parser.add_argument("--data", type=Path, nargs="*", help="data roots (default: the model card's data.roots)")
    parser.add_argument("--iterations", type=int, help="default: the diffusion model's trained iterations")
    parser.add_argument("--batch-size", type=int, help="default: the diffusion model's")
    parser.add_argument("--crop", type=int, help="default: the diffusion model's")
    parser.add_argument("--lr", type=float, help="default: the diffusion model's")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--device", default="auto")
    add_threads_argument(parser)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-evaluate", action="store_true", help="skip scoring the validation cases after training")
    args = parser.parse_args(argv)
    apply_threads(args)
    split = read_split(args.split_from, args.data or None)
    options = BaselineOptions.from_split(split, iterations=args.iterations, batch_size=args.batch_size, crop=args.crop,
                                         lr=args.lr, checkpoint_every=args.checkpoint_every, device=args.device)
    print(f"baseline on the split of '{split.model}': train {split.train}, validation {split.validation}; "
          f"{options.iterations} iterations × batch {options.batch_size}, crop {options.crop}", flush=True)
    card = train_baseline(split, args.out, options, resume=args.resume)
    print(f"trained {card['training']['iteration']} iterations in {card['training']['seconds']:.0f} s")
    if split.validation and not args.no_evaluate:
        rows = evaluate_baseline(load_baseline(args.out), load_cases(split.roots, split.validation, split.modalities),
                                 device=args.device)
        for r in rows:
            print(f"  {r['case']}: Dice {r['dice']:.3f}, HD95 {r['hd95_mm']:.1f} mm, {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
