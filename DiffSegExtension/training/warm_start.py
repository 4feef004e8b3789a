"""Warm start: initialise a network from a trained model of the same preset, channels matched by meaning.

Every tensor whose name and shape agree is copied. The first and last convolutions differ when the
inputs or regions differ; their channels are matched by name: modalities, presence planes
(``present:<m>``), hint planes (``include:<r>``, ``exclude:<r>``) and noisy masks (``mask:<r>``) on the
input side; targets (``target:<r>``) and variances (``var:<r>``) on the output side. An input channel
the source lacks starts at zero (the network initially ignores it, so a model warm-started with new
hint planes gives its source's output while they are empty); an output region the source lacks starts
as a copy of the source's whole tumour (an inner region is a part of it). With space-to-depth f, base
channel c owns the f² unfolded channels [c·f², (c+1)·f²).
"""

from __future__ import annotations

import torch

from DiffSegExtension.config import NetworkConfig
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.network import DenoisingUNet

_CONV_IN = "unet.conv_in.conv.weight"
_CONV_OUT = ("unet.out.2.conv.weight", "unet.out.2.conv.bias")


def input_channel_names(config: NetworkConfig) -> list[str]:
    hints = [f"{kind}:{r}" for kind in ("include", "exclude") for r in config.regions] if config.guidance else []
    return [*config.modalities, *(f"present:{m}" for m in config.optional_modalities), *hints,
            *(f"mask:{r}" for r in config.regions)]


def output_channel_names(config: NetworkConfig) -> list[str]:
    names = [f"target:{r}" for r in config.regions]
    return names + ([f"var:{r}" for r in config.regions] if config.learn_sigma else [])


def _blocks(tensor: torch.Tensor, dim: int, count: int) -> list[torch.Tensor]:
    return list(tensor.chunk(count, dim=dim))


def warm_start(network: DenoisingUNet, source: DenoisingUNet) -> dict[str, list[str]]:
    """Copy ``source``'s weights into ``network`` (in place); returns which channels were matched and which were new."""
    target_cfg, source_cfg = network.config, source.config
    if (target_cfg.channels, target_cfg.attention_levels, target_cfg.num_res_blocks, target_cfg.space_to_depth) != \
            (source_cfg.channels, source_cfg.attention_levels, source_cfg.num_res_blocks, source_cfg.space_to_depth):
        raise DiffSegInputError("--init-from: the model has another network size (preset); warm start needs the same "
                                "channels, attention levels, residual blocks and space-to-depth")
    state, given = network.state_dict(), source.state_dict()
    with torch.no_grad():
        for name, tensor in state.items():
            if name not in (_CONV_IN, *_CONV_OUT) and given[name].shape == tensor.shape:
                tensor.copy_(given[name])
        ins, src_ins = input_channel_names(target_cfg), input_channel_names(source_cfg)
        new_in = _blocks(state[_CONV_IN], 1, len(ins))
        old_in = _blocks(given[_CONV_IN], 1, len(src_ins))
        for block, name in zip(new_in, ins):
            block.copy_(old_in[src_ins.index(name)] if name in src_ins else torch.zeros_like(block))
        outs, src_outs = output_channel_names(target_cfg), output_channel_names(source_cfg)
        for key in _CONV_OUT:
            new_out, old_out = _blocks(state[key], 0, len(outs)), _blocks(given[key], 0, len(src_outs))
            for block, name in zip(new_out, outs):
                fallback = name.split(":")[0] + ":wt"
                match = name if name in src_outs else fallback if fallback in src_outs else None
                if match is not None:
                    block.copy_(old_out[src_outs.index(match)])
    network.load_state_dict(state)
    return {"matched": [n for n in ins + outs if n in src_ins + src_outs],
            "new": [n for n in ins + outs if n not in src_ins + src_outs]}
