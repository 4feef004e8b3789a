"""Implicit-ensemble aggregation (the seed's definitions)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EnsembleResult:
    """All (...) spatial, float32 unless noted.

    probability: fraction of members that call a pixel tumour, in [0, 1].
    mask: uint8 {0, 1}, probability ≥ 0.5 (majority; a tie counts as tumour).
    uncertainty: variance of the binary members = p(1 − p), in [0, 0.25].
    entropy: binary entropy of the probability in bits, in [0, 1].
    """

    probability: torch.Tensor
    mask: torch.Tensor
    uncertainty: torch.Tensor
    entropy: torch.Tensor


def binarise(samples: torch.Tensor) -> torch.Tensor:
    """Sampler output x̂_0 ∈ [−1, 1] → member masks {0, 1}: threshold at 0.5 on the [0, 1] mask scale."""
    return ((samples + 1.0) / 2.0 >= 0.5).float()


def aggregate(members: torch.Tensor) -> EnsembleResult:
    """members (N, ...) in {0, 1} (any dtype): N binary member masks of the same pixels → :class:`EnsembleResult`.

    The variance of binary members is p(1 − p), so only the vote count is summed over members (no float copy
    of all N masks: a whole volume's are hundreds of MB)."""
    if members.ndim < 2 or members.shape[0] < 1:
        raise ValueError("members must be (N, ...) with N >= 1")
    p = members.sum(dim=0, dtype=torch.float32) / members.shape[0]
    return EnsembleResult(probability=p, mask=(p >= 0.5).to(torch.uint8), uncertainty=p * (1 - p),
                          entropy=binary_entropy(p))


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (bits, [0, 1]) of binary members whose mean is ``p`` (any shape; 0 at p = 0 and 1)."""
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)) / torch.log(torch.tensor(2.0, dtype=p.dtype))
