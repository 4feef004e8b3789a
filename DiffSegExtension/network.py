"""The denoising network: MONAI's ``DiffusionModelUNet`` (2D), optionally behind a space-to-depth stem."""

from __future__ import annotations

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn
from torch.nn import functional as F

from DiffSegExtension.config import NetworkConfig


class DenoisingUNet(nn.Module):
    """ε (and learned-variance) prediction for the noisy mask, conditioned on the MRI.

    forward(x, t): ``x`` (B, C + R, H, W) float32 = the condition (:func:`condition_input`: C channels)
    then the R noisy region masks; ``t`` (B,) int64 training timesteps in [0, T). Returns (B, 2R, H, W)
    = R targets (ε or v) then R variance interpolations with ``learn_sigma`` (mapped to [-1, 1] by the
    diffusion code), or (B, R, H, W) targets only.
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


def condition_input(config: NetworkConfig, images: torch.Tensor, present: torch.Tensor | None = None,
                    known: torch.Tensor | None = None) -> torch.Tensor:
    """The network's condition channels: modalities (absent ones zeroed), presence planes, hint planes.

    images (B, M, H, W) float32 normalised modalities in ``config.modalities`` order; present (B, M)
    bool (``None`` = all given); known (B, R, H, W) the clinician's guidance per region (+1 inside,
    −1 not inside, 0 open; ``None`` = no guidance), only for a model with ``config.guidance``.
    Returns (B, M + P + G, H, W): P = len(config.optional_modalities) constant planes, 1.0 where that
    optional modality is given; G = ``config.hint_channels`` planes (known > 0 per region, then known < 0).
    A required modality must be present.
    """
    batch = images.shape[0]
    if present is None:
        present = torch.ones(batch, len(config.modalities), dtype=torch.bool)
    present = present.to(images.device)
    required = [i for i, m in enumerate(config.modalities) if m not in config.optional_modalities]
    if not bool(present[:, required].all()):
        raise ValueError("a required modality is marked absent")
    if known is not None and not config.guidance:
        raise ValueError("this network has no hint planes (trained without guidance): pass known=None")
    images = images * present[:, :, None, None].to(images.dtype)
    optional = [config.modalities.index(m) for m in config.optional_modalities]
    planes = [images, present[:, optional, None, None].to(images.dtype).expand(-1, -1, *images.shape[2:])]
    if config.guidance:
        if known is None:
            planes.append(images.new_zeros(batch, config.hint_channels, *images.shape[2:]))
        else:
            known = known.to(images.device)
            planes += [(known > 0).to(images.dtype), (known < 0).to(images.dtype)]
    return torch.cat(planes, dim=1)


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
