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
from DiffSegExtension.network import condition_input


@dataclass
class ValidationSlices:
    """A fixed subset of one case's prepared slices: condition (S, C, H, W), label (S, R, H, W), brain
    (S, H, W), and the regions its label annotates."""

    name: str
    condition: torch.Tensor
    label: torch.Tensor
    brain: torch.Tensor
    slice_ids: list[int]
    annotated: tuple[str, ...]


def select_validation_slices(cases: list[Case], config, max_slices: int) -> list[ValidationSlices]:
    """Up to ``max_slices`` evenly spaced brain slices per case (tumour and tumour-free alike), all modalities the
    case has."""
    selected = []
    net = config.network
    for case in cases:
        prepared = prepare_volume(case, config.modalities, config.preprocess, net.size_multiple, regions=net.regions,
                                  optional=net.optional_modalities)
        count = len(prepared.source_slices)
        keep = np.unique(np.linspace(0, count - 1, min(max_slices, count)).round().astype(int)).tolist()
        present = torch.tensor(prepared.present).expand(len(keep), -1)
        selected.append(ValidationSlices(case.name, condition_input(net, prepared.images[keep], present),
                                         prepared.region_label[keep], prepared.brain[keep],
                                         [prepared.source_slices[i] for i in keep], prepared.annotated))
    return selected


@torch.no_grad()
def validation_dice(network: torch.nn.Module, schedule: NoiseSchedule, slices: list[ValidationSlices], *,
                    sampler: str, steps: int, members: int, device: torch.device,
                    batch_size: int = 32) -> dict[str, dict[str, float]]:
    """Per case, per annotated region: Dice of the ensemble mask on the selected slices; plus ``mean`` per region."""
    was_training = network.training
    network.eval()
    regions = network.config.regions
    scores: dict[str, dict[str, float]] = {}
    for item in slices:
        member_masks = sample_ensemble(network, schedule, item.condition, item.slice_ids, members=members,
                                       sampler=sampler, steps=steps, seed=0, batch_size=batch_size, device=device,
                                       regions=len(regions))
        member_masks &= item.brain[:, None].to(torch.uint8)
        mask = aggregate(member_masks).mask.numpy()
        scores[item.name] = {r: dice(mask[:, i], item.label[:, i].numpy())
                             for i, r in enumerate(regions) if r in item.annotated}
    network.train(was_training)
    scores["mean"] = {r: float(np.mean([s[r] for s in scores.values() if r in s])) for r in regions
                      if any(r in s for s in scores.values())}
    return scores
