"""``diffseg evaluate``: per-case Dice, HD95, uncertainty AUROC, calibration and time → CSV + markdown."""

from __future__ import annotations

import argparse
from pathlib import Path

from DiffSegExtension.commands.common import add_sampling_arguments, sampling_options
from DiffSegExtension.config import KNOWN_MODALITIES
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.modalities import list_cases
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.evaluation.evaluate import evaluate_cases, markdown_table, write_report
from DiffSegExtension.inference.progress import Progress
from DiffSegExtension.model_card import load_model


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on labelled cases")
    p.add_argument("--model", required=True, help="model folder or bundled model name")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="case folders or folders of cases (with seg)")
    p.add_argument("--cases", nargs="*", help="only these case names (default: the model card's validation cases)")
    p.add_argument("--out", type=Path, required=True, help="folder for results.csv and results.md")
    p.add_argument("--modalities", nargs="+", choices=KNOWN_MODALITIES,
                   help="use only these of the model's inputs (a model with optional inputs: score a sequence subset)")
    add_sampling_arguments(p)
    p.add_argument("--progress", choices=("tqdm", "json", "none"), default="tqdm")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    cases = sorted((c for root in args.data for c in list_cases(root)), key=lambda p: p.name)
    wanted = args.cases if args.cases else model.card.get("data", {}).get("validation")
    if wanted:
        cases = [c for c in cases if c.name in wanted]
    if not cases:
        raise DiffSegInputError(f"none of the cases to evaluate ({', '.join(wanted or []) or 'all'}) is under "
                                f"{', '.join(map(str, args.data))}: check --data, or name the cases with --cases")
    seen = sorted(set(c.name for c in cases) & set(model.card.get("data", {}).get("train", [])))
    options = sampling_options(args, model)
    keep = set(args.modalities) if args.modalities else None
    if keep is not None and not set(model.config.network.required_modalities) <= keep:
        raise DiffSegInputError(f"--modalities must include the model's required "
                                f"{', '.join(model.config.network.required_modalities)}")
    loaded = [load_case(c, [m for m in model.modalities if keep is None or m in keep], with_label=True, allow_2d=True,
                        optional=model.optional_modalities) for c in cases]
    rows, _ = evaluate_cases(model, loaded, options, Progress(args.progress))
    used = [m for m in model.modalities if keep is None or m in keep]
    header = (f"Model `{model.name}`, inputs {', '.join(used)}, {options.sampler} {options.steps} steps × "
              f"{options.members} members, seed {options.seed}, {len(loaded)} cases")
    if seen:
        header += f". WARNING: {len(seen)} of these cases were used in training ({', '.join(seen)}): optimistic figures"
    write_report(rows, args.out, header)
    print(header)
    print(markdown_table(rows))
    return 0
