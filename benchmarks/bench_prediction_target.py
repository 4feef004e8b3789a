"""Ablation: the network's target, ε (the seed's) vs v, at a fixed small training budget.

    python benchmarks/bench_prediction_target.py [--iterations 1500] [--work runs/ablation]

Trains the ``tiny`` preset twice on the same phantoms (the demo model's training recipe: 40
training phantoms, seeds 1000–1039, validation on phantoms 3000–3002) with the same seed and
budget, changing only ``--prediction``, and prints the validation Dice (DDIM 10 steps × 3 members)
every 500 iterations. ~10 min per run on one core.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from DiffSegExtension.cli import main as diffseg
from DiffSegExtension.data.phantom import write_phantom_dataset

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "ablation")
    args = parser.parse_args()
    data = args.work / "data"
    write_phantom_dataset(data, [*range(1000, 1040), *range(3000, 3003)])
    curves = {}
    for prediction in ("epsilon", "v"):
        run = args.work / prediction
        if not (run / "model.json").exists():
            assert diffseg(["train", "--data", str(data), "--modalities", "t1", "t1ce", "t2", "flair",
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
