"""Deterministic 2D region baseline: a MONAI UNet trained on exactly a diffusion model's data and budget.

    python benchmarks/baseline_unet.py --split-from runs/brats-regions/run --out runs/baseline-regions --threads 1

Copied from the diffusion model's card: the split (``data.train`` / ``data.validation``) and the data
roots (relative ones resolved as :func:`benchmarks.evaluation.cases.card_roots` does), the network
config's modalities (required and optional), regions and preprocessing, and ``training.options``: the
iterations × batch budget, crop, tumour share of a batch, sequence drop-out, learning rate, warm-up,
weight decay, gradient clipping and seed. The batches come from the engine's ``SliceDataset.sample_batch``
(same crops, augmentation and sequence drop-out; batch i depends only on (seed, i)) and reach the
network through ``condition_input`` (absent sequences zeroed + presence planes), as in diffusion training.
Loss: MONAI ``DiceCELoss`` (sigmoid, batch Dice) per region channel, on the items whose label
annotates that region (``TrainingBatch.weights``: whole-tumour-only labels train WT only), averaged
over regions. Optimiser AdamW. Weights in safetensors (never pickle) + a JSON card (split, options,
time). ``--resume`` continues from the last checkpoint. Inference (MC dropout): ``baseline_model.py``.
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

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.baseline_model import (CARD_FILE, CHANNELS, DROPOUT, SIZE_MULTIPLE, WEIGHTS_FILE,  # noqa: E402
                                       make_network)
from benchmarks.evaluation.cases import card_roots, load_cases  # noqa: E402
from DiffSegExtension.atomic import atomic_path, write_text_atomic  # noqa: E402
from DiffSegExtension.commands.common import add_threads_argument, apply_threads  # noqa: E402
from DiffSegExtension.config import ModelConfig  # noqa: E402
from DiffSegExtension.data.training_data import SliceDataset  # noqa: E402
from DiffSegExtension.errors import DiffSegInputError  # noqa: E402
from DiffSegExtension.inference.segment import resolve_device  # noqa: E402
from DiffSegExtension.model_card import check_not_pickle, read_model_card, resolve_model, sha256_of  # noqa: E402
from DiffSegExtension.network import condition_input  # noqa: E402
from DiffSegExtension.training.checkpoint import load_optimizer_tensors, optimizer_tensors  # noqa: E402
from DiffSegExtension.training.trainer import iteration_generator  # noqa: E402

OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "train_log.csv"


@dataclass
class Split:
    """What the baseline copies from the diffusion model's card."""

    model: str
    train: list[str]
    validation: list[str]
    roots: list[str]  # as the card gives them
    config: dict[str, Any]  # the card's model config (modalities, optional ones, regions, preprocessing)
    options: dict[str, Any]  # the card's training.options
    trained_iterations: int  # iterations the diffusion model had trained when copied

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.config)


def read_split(model_dir: str | Path) -> Split:
    card = read_model_card(resolve_model(model_dir))
    data = card.get("data") or {}
    if not data.get("train"):
        raise DiffSegInputError(f"model card of {model_dir} records no training cases (data.train): cannot copy its split")
    training = card.get("training", {})
    return Split(model=card["name"], train=list(data["train"]), validation=list(data.get("validation", [])),
                 roots=[str(r) for r in data.get("roots", [])], config=card["config"],
                 options=dict(training.get("options", {})), trained_iterations=int(training.get("iteration", 0)))


@dataclass
class BaselineOptions:
    """The training budget and optimiser settings (defaults = the engine's ``TrainOptions``)."""

    iterations: int = 2000
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int = 100
    grad_clip: float = 1.0
    tumour_fraction: float = 0.5
    modality_dropout: float = 0.5
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    device: str = "auto"

    @staticmethod
    def from_split(split: Split, **overrides) -> "BaselineOptions":
        """The diffusion run's ``training.options`` (planned budget included); ``overrides`` (not None) win."""
        names = {f.name for f in fields(BaselineOptions)}
        values = {k: v for k, v in split.options.items() if k in names and v is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("crop") is None:
            values["crop"] = split.model_config.preprocess.train_crop
        return BaselineOptions(**values)


def region_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, loss_fn) -> torch.Tensor:
    """Mean over regions of ``loss_fn`` on that region's channel, using only the items that annotate it.

    logits, target (B, R, c, c) (target in {0, 1}); weights (B, R) {0, 1}. WT is annotated by every label.
    """
    losses = [loss_fn(logits[keep, r:r + 1], target[keep, r:r + 1])
              for r in range(logits.shape[1]) if (keep := weights[:, r] > 0).any()]
    return torch.stack(losses).mean()


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["iteration", "loss", "lr", "seconds"])
        writer.writeheader()
        writer.writerows(rows)


def _new_card(split: Split, options: BaselineOptions, network: torch.nn.Module, dataset: SliceDataset,
              device: torch.device) -> dict:
    net = split.model_config.network
    return {"kind": "deterministic 2D region baseline (MONAI UNet, DiceCE per region, MC dropout)",
            "split_from": split.model, "config": split.config, "modalities": list(net.modalities),
            "optional_modalities": list(net.optional_modalities), "regions": list(net.regions),
            "network": {"class": "monai.networks.nets.UNet", "channels": list(CHANNELS), "num_res_units": 2,
                        "in_channels": net.condition_channels, "out_channels": len(net.regions), "dropout": DROPOUT},
            "parameters": sum(p.numel() for p in network.parameters()), "size_multiple": SIZE_MULTIPLE,
            "data": {"train": split.train, "validation": split.validation, "roots": split.roots,
                     "training_slices": len(dataset)},
            "training": {"options": asdict(options), "iteration": 0, "seconds": 0.0, "device": str(device),
                         "diffusion_iterations_trained": split.trained_iterations}}


def train_baseline(split: Split, out: Path, options: BaselineOptions, resume: bool = False, log=print) -> dict:
    """Train into ``out`` (card, weights, optimiser state, loss log); returns the card."""
    from monai.losses import DiceCELoss

    out = Path(out)
    if (out / CARD_FILE).exists() and not resume:
        raise DiffSegInputError(f"{out} already holds a baseline: add --resume or choose another --out")
    if options.crop % SIZE_MULTIPLE:
        raise DiffSegInputError(f"crop {options.crop} must be a multiple of {SIZE_MULTIPLE}")
    config = split.model_config
    net = config.network
    device = resolve_device(options.device)
    torch.manual_seed(options.seed)
    network = make_network(net.condition_channels, len(net.regions)).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    cases = load_cases(card_roots({"data": {"roots": split.roots}}), split.train, config.modalities,
                       net.optional_modalities)
    dataset = SliceDataset(cases, config.modalities, config.preprocess, SIZE_MULTIPLE, regions=net.regions,
                           optional=net.optional_modalities)
    card, rows = _new_card(split, options, network, dataset, device), []
    if resume and (out / CARD_FILE).exists():
        previous = json.loads((out / CARD_FILE).read_text())
        for name, key in ((WEIGHTS_FILE, "weights_sha256"), (OPTIMIZER_FILE, "optimizer_sha256")):
            if sha256_of(out / name) != previous[key]:
                raise DiffSegInputError(f"{out / name} does not match {CARD_FILE}: cannot resume from this folder")
        check_not_pickle(out / WEIGHTS_FILE)
        network.load_state_dict({k[6:]: v for k, v in load_file(str(out / WEIGHTS_FILE)).items()})
        load_optimizer_tensors(optimizer, out / OPTIMIZER_FILE)
        card["training"].update(iteration=previous["training"]["iteration"], seconds=previous["training"]["seconds"])
        if (out / LOG_FILE).is_file():
            with open(out / LOG_FILE, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= card["training"]["iteration"]]
    start, elapsed = card["training"]["iteration"], card["training"]["seconds"]
    out.mkdir(parents=True, exist_ok=True)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    network.train()
    tic = time.perf_counter()
    for iteration in range(start, options.iterations):
        g = iteration_generator(options.seed, iteration, 0)
        batch = dataset.sample_batch(g, options.batch_size, options.crop, augment=True,
                                     tumour_fraction=options.tumour_fraction, modality_dropout=options.modality_dropout)
        x = condition_input(net, batch.images, batch.present).to(device)
        target = (batch.masks > 0).float().to(device)  # the engine's masks are ±1
        loss = region_loss(network(x), target, batch.weights.to(device), loss_fn)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-from", required=True, help="the diffusion model (folder or bundled name) to copy")
    parser.add_argument("--out", type=Path, required=True, help="baseline folder (card, weights, log)")
    parser.add_argument("--iterations", type=int, help="default: the diffusion model's planned iterations (smoke runs only)")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--device", default="auto")
    add_threads_argument(parser)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    apply_threads(args)
    split = read_split(args.split_from)
    options = BaselineOptions.from_split(split, iterations=args.iterations, checkpoint_every=args.checkpoint_every,
                                         device=args.device)
    print(f"baseline on the split of '{split.model}': train {split.train}, validation {split.validation}; "
          f"{options.iterations} iterations × batch {options.batch_size}, crop {options.crop}"
          + (f" (the diffusion model has trained {split.trained_iterations} so far)"
             if split.trained_iterations != options.iterations else ""), flush=True)
    card = train_baseline(split, args.out, options, resume=args.resume)
    print(f"trained {card['training']['iteration']} iterations in {card['training']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
