"""``diffseg distil``: a few-step student of a trained model (see ``training/distillation.py``)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from DiffSegExtension.commands.common import add_threads_argument
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.modalities import find_case_files, list_cases
from DiffSegExtension.data.training_data import SliceDataset
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.model_card import CARD_FILE, load_model
from DiffSegExtension.training.distillation import DistilOptions, distil, load_or_build_pool


def add_parser(sub) -> None:
    p = sub.add_parser("distil", help="distil a model's sampler into a few-step student",
                       description="Train a student that reproduces, in --student-steps network passes, each ensemble "
                                   "member the teacher's own recipe (its card's sampler and steps) makes from the same "
                                   "noise. Only the teacher's training cases (its card's data.train) are used.")
    p.add_argument("--teacher", required=True, help="model folder or bundled name")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="case folders or folders of cases (the teacher's "
                                                                         "training cases are picked from them)")
    p.add_argument("--out", type=Path, required=True, help="run folder (is also a usable model folder)")
    p.add_argument("--name", help="student name for its card (default: the run folder's name)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    add_threads_argument(p)
    for f in fields(DistilOptions):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=f"(default {f.default})")
    p.set_defaults(handler=run)


def teacher_training_cases(teacher, roots: list[Path]) -> list[Path]:
    """The case folders under ``roots`` that the teacher's card lists as its training cases."""
    wanted = set(teacher.card.get("data", {}).get("train", []))
    if not wanted:
        raise DiffSegInputError(f"model {teacher.name} has no data.train list in its card: distil only a model trained "
                                "with `diffseg train`")
    found = {c.name: c for root in roots for c in list_cases(root) if c.name in wanted and "seg" in find_case_files(c)}
    if not found:
        raise DiffSegInputError(f"none of {teacher.name}'s training cases is under {', '.join(map(str, roots))}: "
                                "give the folders it was trained on")
    return [found[name] for name in sorted(found)]


def run(args: argparse.Namespace) -> int:
    teacher = load_model(args.teacher)
    options = DistilOptions(**{f.name: getattr(args, f.name) for f in fields(DistilOptions)})
    if not args.resume and (args.out / CARD_FILE).exists():
        raise DiffSegInputError(f"{args.out} already holds a model: add --resume to continue it or choose another --out")
    if options.student_steps < 1 or options.pool < options.batch_size:
        raise DiffSegInputError("--student-steps must be >= 1 and --pool at least --batch-size")
    cases = teacher_training_cases(teacher, args.data)
    net = teacher.config.network

    def dataset() -> SliceDataset:
        loaded = [load_case(p, [m for m in teacher.modalities if m in find_case_files(p)], with_label=True)
                  for p in cases]
        return SliceDataset(loaded, teacher.modalities, teacher.config.preprocess, net.size_multiple,
                            regions=net.regions, optional=net.optional_modalities)

    args.out.mkdir(parents=True, exist_ok=True)
    pool = load_or_build_pool(args.out, teacher, dataset, options)
    card = distil(teacher, pool, args.out, options, {"name": args.name or args.out.name}, resume=args.resume)
    print(json.dumps({"model": str(args.out), "iteration": card["training"]["iteration"],
                      "loss": card["training"].get("last_loss")}))
    return 0
