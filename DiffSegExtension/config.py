"""JSON-serialisable configuration of a DiffSeg model: network, diffusion and preprocessing.

A model card (:mod:`DiffSegExtension.model_card`) stores these three next to the weights, so a
checkpoint always says how it must be rebuilt and how its inputs must be prepared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from DiffSegExtension.errors import DiffSegInputError

#: Modalities the engine knows, in the seed's channel order.
KNOWN_MODALITIES = ("t1", "t1ce", "t2", "flair")


@dataclass(frozen=True)
class NetworkConfig:
    """The denoising UNet (MONAI ``DiffusionModelUNet``, 2D) and its input/output layout.

    Input channels, in order: one per modality (the condition; an absent optional modality is all 0),
    one presence indicator per optional modality (a constant plane, 1 = given, 0 = absent), with
    ``guidance`` two hint planes per region (1 where the clinician said "inside the region", then 1 where
    "not inside"; all 0 without guidance: see ``data/click_simulation.py``), then one noisy-mask channel
    per region (``regions``, nested WT ⊇ TC ⊇ ET; ``("wt",)`` = whole tumour only).
    Output channels: the target (ε or v) per region, then (with ``learn_sigma``) the learned-range
    variance interpolation per region.
    ``space_to_depth`` > 1 folds f×f pixel blocks into channels before the UNet and unfolds the
    output after it (pixel-unshuffle / pixel-shuffle): the UNet then runs at 1/f of the resolution,
    which cuts the cost per pass by ~f² on CPU without lowering the output resolution.
    """

    modalities: tuple[str, ...]
    channels: tuple[int, ...]
    attention_levels: tuple[bool, ...]
    num_res_blocks: int
    num_head_channels: int
    norm_num_groups: int = 32
    space_to_depth: int = 1
    learn_sigma: bool = True
    regions: tuple[str, ...] = ("wt",)
    #: Modalities the model can do without (trained with them dropped); the others are required.
    optional_modalities: tuple[str, ...] = ()
    #: Hint planes for the clinician's corrections (trained with simulated clicks).
    guidance: bool = False

    def __post_init__(self) -> None:
        from DiffSegExtension.regions import check_regions

        check_regions(self.regions)
        if not set(self.optional_modalities) < set(self.modalities) or \
                len(set(self.optional_modalities)) != len(self.optional_modalities):
            raise DiffSegInputError(f"optional modalities {list(self.optional_modalities)} must be distinct model "
                                    f"modalities ({list(self.modalities)}) and leave at least one required")
        unknown = [m for m in self.modalities if m not in KNOWN_MODALITIES]
        if not self.modalities or unknown or len(set(self.modalities)) != len(self.modalities):
            raise DiffSegInputError(
                f"model modalities {list(self.modalities)} are invalid: give distinct names from "
                f"{list(KNOWN_MODALITIES)}"
            )
        if len(self.channels) != len(self.attention_levels):
            raise DiffSegInputError("network config: 'channels' and 'attention_levels' need the same length")
        if any(c % self.norm_num_groups for c in self.channels):
            raise DiffSegInputError("network config: every entry of 'channels' must be a multiple of 'norm_num_groups'")
        if self.space_to_depth < 1:
            raise DiffSegInputError("network config: 'space_to_depth' must be >= 1")

    @property
    def required_modalities(self) -> tuple[str, ...]:
        return tuple(m for m in self.modalities if m not in self.optional_modalities)

    @property
    def hint_channels(self) -> int:
        """Guidance hint planes: include and exclude per region (0 without ``guidance``)."""
        return 2 * len(self.regions) if self.guidance else 0

    @property
    def condition_channels(self) -> int:
        """Modalities + presence indicators + hint planes: the channels that come before the noisy masks."""
        return len(self.modalities) + len(self.optional_modalities) + self.hint_channels

    @property
    def in_channels(self) -> int:
        return self.condition_channels + len(self.regions)

    @property
    def out_channels(self) -> int:
        return len(self.regions) * (2 if self.learn_sigma else 1)

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this (pixels)."""
        return self.space_to_depth * 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class DiffusionConfig:
    """Forward process: linear β from ``beta_start`` to ``beta_end`` over ``timesteps`` steps (seed: 1000).

    ``prediction`` is what the network's first output channel predicts: ``epsilon`` (the seed's ε)
    or ``v`` = √ᾱ ε − √(1 − ᾱ) x_0 (Salimans & Ho 2022). Both are turned into ε for the samplers.
    """

    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        if self.prediction not in ("epsilon", "v"):
            raise DiffSegInputError(f"diffusion config: prediction must be 'epsilon' or 'v', got '{self.prediction}'")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a volume is turned into network input.

    Volumes are reoriented (exact axis permutation/flip, no resampling) to ``orientation``; slices are
    taken along the superior–inferior axis; in-plane pixels are resampled to ``pixel_spacing_mm``;
    each modality is clipped at ``clip_percentiles`` inside its foreground and scaled to [0, 1].
    """

    orientation: str = "LPS"
    pixel_spacing_mm: float = 1.0
    clip_percentiles: tuple[float, float] = (1.0, 99.0)
    #: Training crop (pixels, square) taken around the brain; inference uses the whole brain box.
    train_crop: int = 160


@dataclass(frozen=True)
class ModelConfig:
    network: NetworkConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.network.modalities

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ModelConfig":
        try:
            return ModelConfig(
                network=_build(NetworkConfig, data["network"]),
                diffusion=_build(DiffusionConfig, data.get("diffusion", {})),
                preprocess=_build(PreprocessConfig, data.get("preprocess", {})),
            )
        except (KeyError, TypeError) as err:
            raise DiffSegInputError(f"model config is incomplete or has unknown fields ({err}): "
                                    "re-export the model card with this DiffSeg version") from err


def _build(cls, data: dict[str, Any]):
    """Dataclass from a JSON dict, turning lists back into tuples."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


_F, _T = False, True
PRESETS: dict[str, dict[str, Any]] = {
    # The seed's flags: 128 channels, mult 1,1,2,2,4,4, 2 res blocks, attention at 1/16 (14 px at 224²),
    # one head of 512 channels. 113.67 M parameters, 380.5 GFLOP per 224² pass.
    "paper": dict(channels=(128, 128, 256, 256, 512, 512), attention_levels=(_F, _F, _F, _F, _T, _F),
                  num_res_blocks=2, num_head_channels=512, norm_num_groups=32, space_to_depth=1),
    # Ours for CPU: space-to-depth 2 then a 5-level UNet at half resolution, attention at 1/32.
    # ~4.3 M parameters, ~3.1 GFLOP per 224² pass (~1.9 on a typical 160×192 brain crop).
    "small": dict(channels=(16, 32, 64, 128, 128), attention_levels=(_F, _F, _F, _F, _T),
                  num_res_blocks=1, num_head_channels=32, norm_num_groups=8, space_to_depth=2),
    # For tests and the phantom demo model: trains in minutes on 2 cores.
    "tiny": dict(channels=(16, 32, 32, 64), attention_levels=(_F, _F, _F, _T),
                 num_res_blocks=1, num_head_channels=32, norm_num_groups=8, space_to_depth=2),
}


def preset(name: str, modalities: tuple[str, ...] | list[str], prediction: str = "epsilon",
           regions: tuple[str, ...] = ("wt",), optional_modalities: tuple[str, ...] = (), guidance: bool = False,
           **preprocess: Any) -> ModelConfig:
    """A :class:`ModelConfig` from a named preset (``paper``, ``small``, ``tiny``)."""
    if name not in PRESETS:
        raise DiffSegInputError(f"unknown preset '{name}': choose one of {sorted(PRESETS)}")
    network = NetworkConfig(modalities=tuple(modalities), regions=tuple(regions),
                            optional_modalities=tuple(optional_modalities), guidance=guidance, **PRESETS[name])
    return ModelConfig(network=network, diffusion=DiffusionConfig(prediction=prediction),
                       preprocess=PreprocessConfig(**preprocess))
