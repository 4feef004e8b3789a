"""``diffseg export``: a slim inference model (EMA weights only) from a training run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from DiffSegExtension.training.checkpoint import attach_student, export_model


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a training run as a slim model folder (EMA weights only)")
    p.add_argument("--run", type=Path, required=True, help="training run folder")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size; loaded as float32)")
    p.add_argument("--card", type=Path, help="JSON file with card fields to add or replace (name, title, validation, ...)")
    p.add_argument("--student", action="store_true",
                   help="--run is a `diffseg distil` run: add it to its teacher's model folder --out (the `student` sampler)")
    p.add_argument("--make-default", action="store_true", help="with --student: make the student the model's default")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.student:
        print(attach_student(args.run, args.out, half=args.half, make_default=args.make_default))
        return 0
    updates = json.loads(args.card.read_text()) if args.card else {}
    print(export_model(args.run, args.out, half=args.half, card_updates=updates))
    return 0
