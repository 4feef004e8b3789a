"""Distil the bundled region model's DPM-Solver++ 10-step sampler into a 1-pass student and bundle it.

    python scripts/build_brats_regions_student.py [--iterations 1500] [--work runs/brats-regions-student]

The teacher is ``Resources/Models/brats-regions`` (its weights stay as they are). The student is the same
network warm-started from them, trained by ``diffseg distil`` on the teacher's own training cases (its card's
``data.train``; the validation subjects are never seen) to reproduce, in 1 network pass, each member the
teacher's 10 steps make from the same noise (``DiffSegExtension/training/distillation.py``). It is added to the
model folder as ``student.safetensors`` (float16) with its calibrated thresholds, and the card's default becomes
the adaptive ensemble of 8 one-pass student members (measured no worse than the teacher's full 10 × 5, and than the
2-pass student's 6 members it replaces, on the validation subjects: README, "Speed and memory"); then the validation
subjects are segmented with the new default and the report stored in the card (``student.validation``).
If the build is interrupted, run it again: distillation resumes bit for bit (the teacher's pool is cached).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from build_brats_regions_model import FOUR, REPO, VALIDATION, training_inputs

from DiffSegExtension.cli import main as diffseg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "brats-regions-student")
    parser.add_argument("--model", type=Path, default=REPO / "Resources" / "Models" / "brats-regions")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    run = args.work / "run"
    started = time.perf_counter()
    distil_args = ["distil", "--teacher", str(args.model), "--data", *map(str, training_inputs()), "--out", str(run),
                   "--name", "brats-regions-student", "--student-steps", "1", "--pool", "4096", "--iterations",
                   str(args.iterations), "--lr", "1e-4", "--checkpoint-every", "100", "--log-every", "25"]
    distil_args += ["--threads", str(args.threads)] if args.threads else []
    if (run / "model.json").exists():
        distil_args.append("--resume")
    assert diffseg(distil_args) == 0
    assert diffseg(["export", "--run", str(run), "--out", str(args.model), "--student", "--half", "--make-default"]) == 0
    card = json.loads((args.model / "model.json").read_text())
    # The component rule was chosen on the training subjects (benchmarks/component_rule.py; card "component_rule").
    card["inference_defaults"].update(members=8, ensemble="adaptive", min_component_probability=0.75)
    (args.model / "model.json").write_text(json.dumps(card, indent=2))
    report = args.work / "validation"
    assert diffseg(["evaluate", "--model", str(args.model), "--data", str(FOUR), "--cases", *VALIDATION,
                    "--out", str(report), "--progress", "none"]) == 0
    card = json.loads((args.model / "model.json").read_text())
    card["student"]["validation"] = {"cases": VALIDATION, "report": (report / "results.md").read_text()}
    (args.model / "model.json").write_text(json.dumps(card, indent=2))
    print(f"done in {(time.perf_counter() - started) / 3600:.2f} h")


if __name__ == "__main__":
    main()
