"""The deterministic region baseline at inference: MONAI UNet + MC dropout → a DiffSeg :class:`Segmentation`.

Per slice, P stochastic passes (dropout kept on, everything else in eval mode) give per-region sigmoid
probabilities, nested per pass (WT ≥ TC ≥ ET, the soft form of :func:`regions.nest`). Their mean is the
probability, mask = mean ≥ 0.5 (nested, since every pass is), uncertainty = the variance of the passes,
entropy = the binary entropy of the mean (bits); the QU-BraTS map is then 100 × entropy as for the
diffusion model. So ``DiffSegExtension.evaluation.evaluate.case_metrics`` scores both the same way.

P is chosen so the baseline spends the diffusion ensemble's compute: see :func:`matched_passes`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from DiffSegExtension.config import ModelConfig
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import PreparedVolume, prepare_volume
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.segment import Segmentation, SegmentOptions, default_batch_size, resolve_device
from DiffSegExtension.model_card import check_not_pickle, sha256_of
from DiffSegExtension.network import condition_input, count_flops
from DiffSegExtension.regions import label_map_from_regions

CARD_FILE = "baseline.json"
WEIGHTS_FILE = "weights.safetensors"
CHANNELS = (16, 32, 64, 128, 256)
DROPOUT = 0.1
#: Image sides must be multiples of this (four stride-2 levels).
SIZE_MULTIPLE = 2 ** (len(CHANNELS) - 1)
#: Slice size at which the FLOPs of both networks are compared (both are convolutional: cost ∝ pixels).
FLOP_SIZE = (128, 128)


def make_network(in_channels: int, out_channels: int, channels: tuple[int, ...] = CHANNELS,
                 dropout: float = DROPOUT) -> torch.nn.Module:
    """MONAI ``UNet``, 2D, residual units (2 per level), dropout after every convolution.

    x (B, in_channels, H, W) condition channels → (B, out_channels, H, W) logits, one per region.
    """
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, channels=tuple(channels),
                strides=(2,) * (len(channels) - 1), num_res_units=2, dropout=dropout)


@dataclass
class Baseline:
    """A trained baseline: its card, the network (eval mode, dropout on) and the diffusion config it copies."""

    folder: Path
    card: dict
    network: torch.nn.Module
    config: ModelConfig

    @property
    def regions(self) -> tuple[str, ...]:
        return self.config.network.regions

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.config.modalities

    @property
    def optional_modalities(self) -> tuple[str, ...]:
        return self.config.network.optional_modalities

    def prepare(self, case: Case) -> PreparedVolume:
        """``case``'s brain slices for this network (the copied preprocessing, sides multiples of 16)."""
        return prepare_volume(case, self.modalities, self.config.preprocess, SIZE_MULTIPLE, regions=self.regions,
                              optional=self.optional_modalities)


def enable_mc_dropout(network: torch.nn.Module) -> torch.nn.Module:
    """Eval mode everywhere except the dropout layers (MC dropout)."""
    network.eval()
    for module in network.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.train()
    return network


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
    config = ModelConfig.from_dict(card["config"])
    net = card["network"]
    network = make_network(net["in_channels"], net["out_channels"], tuple(net["channels"]), net["dropout"])
    network.load_state_dict({k[6:]: v.float() for k, v in load_file(str(weights)).items() if k.startswith("model.")})
    return Baseline(folder, card, enable_mc_dropout(network).to(device), config)


def baseline_flops(baseline: Baseline, height: int = FLOP_SIZE[0], width: int = FLOP_SIZE[1]) -> float:
    """FLOPs of one baseline pass on one (H, W) slice (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, baseline.config.network.condition_channels, height, width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        baseline.network.to("cpu")(x)
    return float(counter.get_total_flops())


def matched_passes(diffusion_network: torch.nn.Module, baseline: Baseline, diffusion_passes: int) -> dict:
    """MC-dropout passes per slice that cost the FLOPs of ``diffusion_passes`` (members × steps) diffusion passes.

    Returns ``passes`` (≥ 1) and the FLOPs per pass of both networks at :data:`FLOP_SIZE`.
    """
    diffusion, base = count_flops(diffusion_network.to("cpu"), *FLOP_SIZE), baseline_flops(baseline)
    return {"passes": max(1, round(diffusion_passes * diffusion / base)), "diffusion_gflop_per_pass": diffusion / 1e9,
            "baseline_gflop_per_pass": base / 1e9, "diffusion_passes_per_slice": diffusion_passes,
            "flop_size": list(FLOP_SIZE)}


@torch.inference_mode()
def segment_prepared(baseline: Baseline, prepared: PreparedVolume, passes: int, seed: int = 0,
                     batch_size: int | None = None, device: str = "auto") -> Segmentation:
    """MC-dropout segmentation of prepared slices (see the module docstring); ``seconds`` left 0.

    Only the modalities ``prepared.present`` marks as given reach the network (absent ones are zeroed
    and their presence plane is 0, as for the diffusion model). The passes themselves are not kept:
    ``members`` is empty (N = 0); ``options.members`` = P passes, ``options.steps`` = 1.
    """
    dev = resolve_device(device)
    network = enable_mc_dropout(baseline.network.to(dev))
    count, _, height, width = prepared.images.shape
    batch = batch_size or default_batch_size(dev, height, width)
    present = torch.tensor(prepared.present).expand(count, -1)
    condition = condition_input(baseline.config.network, prepared.images, present)
    regions = len(baseline.regions)
    total = torch.zeros(count, regions, height, width, dtype=torch.float64)
    squares = torch.zeros_like(total)
    torch.manual_seed(seed)
    for start in range(0, count, batch):
        x = condition[start:start + batch].to(dev)
        for _ in range(passes):
            p = torch.sigmoid(network(x)).flip(1).cummax(dim=1).values.flip(1).double().cpu()  # nested: WT ≥ TC ≥ ET
            total[start:start + batch] += p
            squares[start:start + batch] += p * p
    brain = prepared.brain[:, None]
    probability = (total / passes * brain).float()
    variance = ((squares / passes - (total / passes) ** 2).clamp_(min=0.0) * brain).float()
    entropy = -(torch.xlogy(probability, probability) + torch.xlogy(1 - probability, 1 - probability)) / math.log(2.0)

    def restore(maps: torch.Tensor) -> np.ndarray:  # (S, R, H, W) → (R, *input shape)
        return np.stack([prepared.restore(maps[:, r]) for r in range(regions)]).astype(np.float32)

    probability_volume = restore(probability)
    mask = (probability_volume >= 0.5).astype(np.uint8)
    options = SegmentOptions(members=passes, sampler="mc-dropout", steps=1, seed=seed, device=device, batch_size=batch)
    return Segmentation(regions=baseline.regions, probability=probability_volume, mask=mask,
                        uncertainty=restore(variance), entropy=restore(entropy),
                        label_map=label_map_from_regions(mask, baseline.regions),
                        members=torch.empty((0, count, regions, height, width), dtype=torch.uint8),
                        prepared=prepared, seconds=0.0, passes=math.ceil(count / batch) * passes, options=options,
                        passes_per_slice=float(passes))


def segment_baseline(baseline: Baseline, case: Case, passes: int, seed: int = 0, device: str = "auto") -> Segmentation:
    """Full volume: prepare ``case``, MC-dropout segmentation; ``seconds`` = preparation + passes + restoring."""
    started = time.perf_counter()
    seg = segment_prepared(baseline, baseline.prepare(case), passes, seed=seed, device=device)
    seg.seconds = time.perf_counter() - started
    return seg
