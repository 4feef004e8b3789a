"""The denoising network: MONAI's ``DiffusionModelUNet`` (2D), optionally behind a space-to-depth stem."""

from __future__ import annotations

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn
from torch.nn import functional as F

from DiffSegExtension.config import NetworkConfig


class DenoisingUNet(nn.Module):
    """ε (and learned-variance) prediction for the noisy mask, conditioned on the MRI.

    forward(x, t): ``x`` (B, M+1, H, W) float32 = M normalised modalities in [0, 1] then the noisy
    mask; ``t`` (B,) int64 training timesteps in [0, T). Returns (B, 2, H, W) = (ε, v) with
    ``learn_sigma`` (v ∈ ℝ, mapped to [-1, 1] by the diffusion code) or (B, 1, H, W) = ε.
    H and W must be multiples of ``config.size_multiple``.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        f = config.space_to_depth
        self.unet = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=config.in_channels * f * f,
            out_channels=config.out_channels * f * f,
            channels=config.channels,
            attention_levels=config.attention_levels,
            num_res_blocks=config.num_res_blocks,
            num_head_channels=config.num_head_channels,
            norm_num_groups=config.norm_num_groups,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        f = self.config.space_to_depth
        if f > 1:
            return F.pixel_shuffle(self.unet(F.pixel_unshuffle(x, f), t), f)
        return self.unet(x, t)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, height: int = 224, width: int = 224) -> float:
    """FLOPs (2 × multiply–adds, torch's flop counter) of one forward pass on one (H, W) image."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    x = torch.zeros(1, cfg.in_channels, height, width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(1, dtype=torch.long))
    return float(counter.get_total_flops())
