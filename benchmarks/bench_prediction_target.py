"""Ablation: the network's target, ε (the seed's) vs v, at a fixed small training budget.

    python benchmarks/bench_prediction_target.py [--iterations 1500] [--work runs/ablation]

Trains the ``tiny`` preset twice on the same phantoms with the same seed and budget, changing only
``--prediction``, and prints the validation Dice (DDIM 10 steps × 3 members) every 500 iterations.
Needs the phantom data made by scripts/build_phantom_model.py (runs/phantom/data). ~8 min per run
on one core.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from DiffSegExtension.cli import main as diffseg

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--data", type=Path, default=REPO / "runs" / "phantom" / "data")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "ablation")
    args = parser.parse_args()
    curves = {}
    for prediction in ("epsilon", "v"):
        run = args.work / prediction
        if not (run / "model.json").exists():
            assert diffseg(["train", "--data", str(args.data), "--modalities", "t1", "t1ce", "t2", "flair",
                            "--preset", "tiny", "--prediction", prediction, "--out", str(run),
                            "--iterations", str(args.iterations), "--batch-size", "16", "--crop", "80", "--lr", "5e-4",
                            "--val-cases", "phantom3000", "phantom3001", "phantom3002", "--val-every", "500",
                            "--checkpoint-every", "500", "--progress", "none"]) == 0
        with open(run / "train_log.csv", newline="") as f:
            curves[prediction] = {int(r["iteration"]): float(r["val_dice"]) for r in csv.DictReader(f) if r["val_dice"]}
    iterations = sorted(curves["v"])
    print("| target | " + " | ".join(f"Dice @ {i}" for i in iterations) + " |")
    print("|---|" + "---|" * len(iterations))
    for prediction, curve in curves.items():
        print(f"| {prediction} | " + " | ".join(f"{curve[i]:.3f}" for i in iterations) + " |")


if __name__ == "__main__":
    main()
