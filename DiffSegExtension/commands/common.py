"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from DiffSegExtension.config import KNOWN_MODALITIES
from DiffSegExtension.diffusion.samplers import SAMPLERS
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.segment import ENSEMBLES, SegmentOptions
from DiffSegExtension.model_card import LoadedModel


def add_sampling_arguments(parser: argparse.ArgumentParser, ensemble: bool = True) -> None:
    """--members/--sampler/--steps/--ensemble (defaults from the model card), --eta, --seed, --device, --batch-size."""
    group = parser.add_argument_group("sampling (defaults come from the model card)")
    group.add_argument("--members", type=int, help="ensemble members per slice")
    group.add_argument("--sampler", choices=sorted(SAMPLERS), help="reverse-diffusion sampler")
    group.add_argument("--steps", type=int, help="sampler steps (network passes per member)")
    if ensemble:
        group.add_argument("--ensemble", choices=ENSEMBLES,
                           help="adaptive: every member only near the tumour member 0 finds (faster); full: everywhere")
        group.add_argument("--screen-steps", type=int,
                           help="adaptive: steps of a separate, cheaper screen that finds the tumour "
                                "(default: member 0 screens)")
    group.add_argument("--min-component-probability", type=float, metavar="P",
                       help="remove whole-tumour mask components whose mean probability is below P from the masks "
                            "(the maps keep them; 0 keeps every component)")
    group.add_argument("--eta", type=float, default=None, help="DDIM noise level η (0 = deterministic)")
    group.add_argument("--seed", type=int, default=0, help="seed: the same seed gives the same result")
    group.add_argument("--device", default="auto", help="auto, cpu or cuda")
    group.add_argument("--batch-size", type=int, default=None, help="(slice, member) items per network pass")
    add_threads_argument(parser)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """--progress, --overwrite, --no-overview, --crop-outputs, --qubrats (``segment`` and ``refine``)."""
    parser.add_argument("--progress", choices=("tqdm", "json", "none"), default="tqdm",
                        help="json: one machine-readable line per sampler step on stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-overview", dest="overview", action="store_false",
                        help="skip overview.png (about a second; Slicer shows the maps itself)")
    parser.add_argument("--crop-outputs", action="store_true",
                        help="write each volume only over the box holding every non-zero voxel (zero outside it), on "
                             "that box of the input's grid (its affine places it): several times smaller and faster to "
                             "write and read, for readers that place images by their affine (the Slicer module; "
                             "refine --previous)")
    parser.add_argument("--qubrats", action="store_true",
                        help="also write QU-BraTS uncertainty maps (<case>_unc_whole/core/enhance.nii.gz, 0 certain … 100)")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: all cores; use 1 per process when jobs share a machine)")


def apply_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def sampling_options(args: argparse.Namespace, model: LoadedModel, slice_range=None) -> SegmentOptions:
    defaults = model.inference_defaults
    sampler = args.sampler or defaults["sampler"]
    extra = {}
    if args.eta is not None:
        if sampler != "ddim":
            raise DiffSegInputError("--eta applies to --sampler ddim only: drop it or use ddim")
        extra["eta"] = args.eta
    return SegmentOptions(members=args.members or defaults["members"], sampler=sampler,
                          steps=args.steps or defaults["steps"], seed=args.seed, device=args.device,
                          slice_range=slice_range, batch_size=args.batch_size, sampler_options=extra,
                          ensemble=getattr(args, "ensemble", None) or defaults["ensemble"],
                          screen_steps=(args.screen_steps if getattr(args, "screen_steps", None) is not None
                                        else defaults.get("screen_steps")),
                          min_component_probability=float(args.min_component_probability
                                                          if args.min_component_probability is not None
                                                          else defaults["min_component_probability"]))


def add_modality_arguments(parser: argparse.ArgumentParser) -> None:
    for name in KNOWN_MODALITIES:
        parser.add_argument(f"--{name}", type=Path, metavar="NIFTI", help=f"{name.upper()} volume (.nii/.nii.gz)")


def modality_files_given(args: argparse.Namespace) -> bool:
    """True when the case comes as --flair ... files, False when as --input; both or neither is refused."""
    explicit = any(getattr(args, m) is not None for m in KNOWN_MODALITIES)
    if explicit == (args.input is not None):
        raise DiffSegInputError("give either the modality files (--flair ...) or --input, not both and not neither")
    return explicit


def explicit_modality_files(args: argparse.Namespace, modalities, optional=()) -> dict[str, Path]:
    """Modality → file from --flair ... ; refuses a modality the model does not use and a missing required one."""
    given = {m: getattr(args, m) for m in KNOWN_MODALITIES if getattr(args, m) is not None}
    unknown = sorted(set(given) - set(modalities))
    if unknown:
        raise DiffSegInputError(f"the model uses {', '.join(modalities)}; --{' --'.join(unknown)} is not one of its inputs: "
                                "drop it or choose a model that uses it (`diffseg models`)")
    missing = [m for m in modalities if m not in given and m not in optional]
    if missing:
        required = [m for m in modalities if m not in optional]
        extra = f" (optional: {', '.join(optional)})" if optional else ""
        raise DiffSegInputError(f"the model needs {', '.join(required)}{extra}: add --{' --'.join(missing)} <file>")
    return {m: given[m] for m in modalities if m in given}


def parse_slice_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise DiffSegInputError(f"--slices '{text}' is not a range: give start:stop, e.g. 40:90") from None
    if start < 0 or stop <= start:
        raise DiffSegInputError(f"--slices {text} is empty or negative: give start:stop with 0 <= start < stop")
    return start, stop


def distributed_share(items: list) -> list:
    """This process's share of ``items`` when started by torchrun (round robin by rank)."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    return items[rank::world]
