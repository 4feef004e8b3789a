"""Build the bundled demo model ``Resources/Models/phantom`` from generated phantoms only.

    python scripts/build_phantom_model.py [--iterations 4000] [--work runs/phantom]

Generates training/validation phantoms (4 modalities, half of them oblique, 10 % tumour-free, grid
size and spacing varied so brain sizes vary: see ``write_phantom_dataset``), trains the ``tiny``
preset (v-prediction), exports the EMA weights as float16, evaluates on the held-out phantoms and
writes the card. Takes ~30 min on one CPU core. The demo's own phantom (seed 2026) is not used.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from DiffSegExtension.cli import main as diffseg
from DiffSegExtension.data.phantom import write_phantom_dataset
from model_build import export_and_validate

REPO = Path(__file__).resolve().parent.parent
MODALITIES = ["t1", "t1ce", "t2", "flair"]
TRAIN_SEEDS = range(1000, 1040)
VAL_SEEDS = range(3000, 3006)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "phantom")
    parser.add_argument("--out", type=Path, default=REPO / "Resources" / "Models" / "phantom")
    args = parser.parse_args()
    data, run = args.work / "data", args.work / "run"
    write_phantom_dataset(data, [*TRAIN_SEEDS, *VAL_SEEDS])
    val_names = [f"phantom{s}" for s in VAL_SEEDS]
    train_args = ["train", "--data", str(data), "--modalities", *MODALITIES, "--preset", "tiny", "--prediction", "v", "--out", str(run),
                  "--iterations", str(args.iterations), "--batch-size", "16", "--crop", "80", "--lr", "5e-4",
                  "--val-cases", *val_names, "--val-every", "1000", "--checkpoint-every", "500", "--name", "phantom"]
    if (run / "model.json").exists():
        train_args.append("--resume")
    assert diffseg(train_args) == 0
    card = {"name": "phantom", "title": "Demo model for synthetic phantoms (T1, T1ce, T2, FLAIR; tiny preset)",
            "intended_use": "Demonstration and software tests on DiffSeg's procedural phantoms only. It has never seen "
                            "real MRI: do not use it on patient data.",
            "inference_defaults": {"sampler": "dpmpp", "steps": 10, "members": 5}}
    if args.out.exists():  # a bundled model folder holds exactly what this build exports
        shutil.rmtree(args.out)
    export_and_validate(run, args.out, card, [data], val_names, args.work)


if __name__ == "__main__":
    main()
