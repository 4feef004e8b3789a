"""``diffseg demo``: make a phantom case, segment it with the bundled phantom model, print Dice.

Needs no user data and no download: the README's first command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from DiffSegExtension.atomic import atomic_directory
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.phantom import make_phantom, write_phantom_case
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.evaluation.metrics import dice, hd95, spacing_from_affine
from DiffSegExtension.inference.outputs import write_outputs
from DiffSegExtension.inference.progress import Progress
from DiffSegExtension.inference.segment import SegmentOptions, segment_case
from DiffSegExtension.model_card import load_model

DEMO_MODEL = "phantom"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="segment a generated phantom with the bundled phantom model (no data needed)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the phantom and the results")
    p.add_argument("--seed", type=int, default=2026, help="phantom and sampling seed")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--sampler", default="dpmpp")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo folder")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite:
        raise DiffSegInputError(f"demo folder {args.out} already exists: add --overwrite or choose another --out")
    started = time.perf_counter()
    model = load_model(DEMO_MODEL)
    phantom = make_phantom(args.seed, oblique=True, modalities=model.modalities)
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        case_dir = write_phantom_case(tmp / "input", "phantom", phantom)
        case = load_case(case_dir, model.modalities, with_label=True)
        options = SegmentOptions(members=args.members, sampler=args.sampler, steps=args.steps, seed=args.seed)
        print(f"Phantom {case.shape} voxels (oblique affine) → model '{model.name}', {args.sampler} {args.steps} steps "
              f"× {args.members} members", flush=True)
        seg = segment_case(model, case, options, Progress("tqdm"))
        outputs = write_outputs(seg, case, tmp / "segmentation", {"name": model.name, "modalities": list(model.modalities)})
    score = dice(seg.mask[0], case.label)
    distance = hd95(seg.mask[0], case.label, spacing_from_affine(case.affine))
    print(f"Dice vs truth {score:.3f}, HD95 {distance:.1f} mm, {seg.seconds:.1f} s segmenting, "
          f"{time.perf_counter() - started:.1f} s in all")
    for name, path in outputs.items():
        print(f"  {name:13s} {args.out / Path(path).relative_to(tmp)}")
    return 0
