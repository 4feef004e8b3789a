"""``diffseg train``: train a model on case folders with a case-level train/validation split."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from DiffSegExtension.commands.common import add_threads_argument
from DiffSegExtension.config import KNOWN_MODALITIES, PRESETS, preset
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.modalities import find_case_files, list_cases
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.regions import REGIONS
from DiffSegExtension.training.trainer import TrainOptions, train


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (single process, or multi-process under torchrun)",
                       description="Train a diffusion segmentation model. Cases are split into training and validation "
                                   "by case (never by slice). Start with torchrun --nproc_per_node N for DDP.")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="case folders or folders of cases")
    p.add_argument("--modalities", nargs="+", default=["flair"], choices=KNOWN_MODALITIES, help="input channels, in order")
    p.add_argument("--optional-modalities", nargs="*", default=[], choices=KNOWN_MODALITIES,
                   help="modalities the model may do without: trained with sequence drop-out and a presence "
                        "indicator; cases lacking them still train the model")
    p.add_argument("--regions", nargs="+", default=["wt"], choices=REGIONS,
                   help="diffused mask channels: wt (whole tumour) [tc (tumour core) [et (enhancing)]]; cases whose "
                        "label is whole-tumour only train the wt channel")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="network size")
    p.add_argument("--prediction", default="v", choices=("epsilon", "v"),
                   help="network target: v (default; well conditioned at high noise) or epsilon (the seed's)")
    p.add_argument("--guidance", action="store_true",
                   help="hint planes for the clinician's clicks (include / exclude per region), trained with simulated "
                        "clicks on --hint-rate of the items: the model then serves unguided and guided (refine) runs")
    p.add_argument("--out", type=Path, required=True, help="run folder (is also a usable model folder)")
    p.add_argument("--val-cases", nargs="*", default=None, help="case names held out for validation")
    p.add_argument("--val-fraction", type=float, default=0.2, help="else: this fraction of cases, chosen by --seed")
    p.add_argument("--exclude-cases", nargs="*", default=[], help="case names not to use at all (kept for testing)")
    p.add_argument("--name", help="model name for the card (default: the run folder's name)")
    p.add_argument("--title", default="", help="one-line description for the card")
    p.add_argument("--intended-use", default="Research use only; not for clinical decisions.")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--init-from", help="start from this model's weights (folder or bundled name, same preset); channels "
                                       "are matched by meaning, new ones start neutral (see training/warm_start.py)")
    p.add_argument("--progress", choices=("tqdm", "none"), default="tqdm")
    add_threads_argument(p)
    for f in fields(TrainOptions):
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default) if f.default is not None else int
        p.add_argument(flag, type=kind, default=f.default, help=f"(default {f.default})")
    p.set_defaults(handler=run)


def split_cases(cases: list[Path], val_names: list[str] | None, fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Case-level split: named validation cases, else a seeded random fraction (at least one if ≥ 2 cases)."""
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise DiffSegInputError("two case folders have the same name: case names must be unique across --data")
    if val_names is not None:
        unknown = sorted(set(val_names) - set(names))
        if unknown:
            raise DiffSegInputError(f"--val-cases {', '.join(unknown)} not found among the cases: check the names")
        val = [c for c in cases if c.name in val_names]
    else:
        count = int(round(fraction * len(cases))) if len(cases) > 1 else 0
        count = max(count, 1) if fraction > 0 and len(cases) > 1 else count
        order = np.random.default_rng(seed).permutation(len(cases))
        val = [cases[i] for i in sorted(order[:count])]
    train_cases = [c for c in cases if c not in val]
    if not train_cases:
        raise DiffSegInputError("no training cases left after the validation split: add data or lower --val-fraction")
    return train_cases, val


def run(args: argparse.Namespace) -> int:
    cases = sorted((c for root in args.data for c in list_cases(root)), key=lambda p: p.name)
    cases = [c for c in cases if c.name not in set(args.exclude_cases)]
    config = preset(args.preset, args.modalities, prediction=args.prediction, regions=tuple(args.regions),
                    optional_modalities=tuple(args.optional_modalities), guidance=args.guidance)
    needed = set(config.network.required_modalities) | {"seg"}
    usable = [c for c in cases if needed <= set(find_case_files(c))]
    if not usable:
        raise DiffSegInputError(f"no case under {', '.join(map(str, args.data))} has all of {sorted(needed)}: check --modalities")
    train_paths, val_paths = split_cases(usable, args.val_cases, args.val_fraction, args.seed)

    def load(paths):
        # Each case with the model's modalities it has (the required ones are there).
        return [load_case(p, [m for m in args.modalities if m in find_case_files(p)], with_label=True, allow_2d=True)
                for p in paths]

    options = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions)})
    card_info = {
        "name": args.name or args.out.name, "title": args.title, "intended_use": args.intended_use, "preset": args.preset,
        "data": {"train": [p.name for p in train_paths], "validation": [p.name for p in val_paths],
                 "roots": [str(r) for r in args.data], "excluded": list(args.exclude_cases)},
    }
    card = train(config, load(train_paths), load(val_paths), args.out, options, card_info, resume=args.resume,
                 progress=args.progress, init_from=args.init_from)
    print(json.dumps({"model": str(args.out), "iteration": card["training"]["iteration"],
                      "validation_dice": card["training"].get("validation_dice")}))
    return 0
