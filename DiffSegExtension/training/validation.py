"""Periodic validation during training: Dice of a fast-sampled ensemble on held-out cases."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import prepare_volume
from DiffSegExtension.diffusion.schedule import NoiseSchedule
from DiffSegExtension.ensemble import aggregate
from DiffSegExtension.evaluation.metrics import dice
from DiffSegExtension.inference.ensemble_sampling import sample_ensemble


@dataclass
class ValidationSlices:
    """A fixed subset of one case's prepared slices: images (S, M, H, W), label (S, H, W), brain."""

    name: str
    images: torch.Tensor
    label: torch.Tensor
    brain: torch.Tensor
    slice_ids: list[int]


def select_validation_slices(cases: list[Case], config, max_slices: int) -> list[ValidationSlices]:
    """Up to ``max_slices`` evenly spaced brain slices per case (tumour and tumour-free alike)."""
    selected = []
    for case in cases:
        prepared = prepare_volume(case, config.modalities, config.preprocess, config.network.size_multiple)
        count = len(prepared.source_slices)
        keep = np.unique(np.linspace(0, count - 1, min(max_slices, count)).round().astype(int)).tolist()
        selected.append(ValidationSlices(case.name, prepared.images[keep], prepared.label[keep], prepared.brain[keep],
                                         [prepared.source_slices[i] for i in keep]))
    return selected


@torch.no_grad()
def validation_dice(network: torch.nn.Module, schedule: NoiseSchedule, slices: list[ValidationSlices], *,
                    sampler: str, steps: int, members: int, device: torch.device, batch_size: int = 32) -> dict[str, float]:
    """Dice of the ensemble mask against the label on each case's selected slices; plus the mean."""
    was_training = network.training
    network.eval()
    scores = {}
    for item in slices:
        member_masks = sample_ensemble(network, schedule, item.images, item.slice_ids, members=members, sampler=sampler,
                                       steps=steps, seed=0, batch_size=batch_size, device=device)
        member_masks &= item.brain.to(torch.uint8)
        scores[item.name] = dice(aggregate(member_masks).mask.numpy(), item.label.numpy())
    network.train(was_training)
    scores["mean"] = float(np.mean(list(scores.values()))) if scores else float("nan")
    return scores
