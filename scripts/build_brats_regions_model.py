"""Build the bundled four-sequence region model ``Resources/Models/brats-regions`` from ../shared/data.

    python scripts/build_brats_regions_model.py [--iterations 6000] [--work runs/brats-regions]
    python scripts/build_brats_regions_model.py --guided [--iterations 3000]   # click-guided variant (issue 10)

Input: FLAIR (required) + T1, T1ce, T2 (optional: sequence drop-out with presence indicators).
Output: the nested BraTS regions whole tumour, tumour core, enhancing tumour.

Split by SUBJECT, fixed before training: 5 validation subjects drawn with
``numpy.random.default_rng(2026).choice(eligible, 5)`` from the 17 ``brats2018_4mod`` subjects that the
FLAIR-only model ``brats-flair`` never saw in training (so both can be compared on the same unseen
subjects). Training: the other 14 ``brats2018_4mod`` volumes (four sequences, BraTS labels), the 6
``brats2018_flair_t1`` volumes that are not copies of a 4-sequence subject (FLAIR + T1, whole-tumour
labels: they train the WT channel only, and the missing-sequence path), and the 2 ``brats2015_flair_t1ce``
volumes that are not copies (FLAIR + T1ce, BraTS 2013 labels: all three regions). The MSD patches are
not used: they are 16-slice crops of one subject, normalised over a partial field of view.
Warm start from the bundled ``brats-flair`` model (same ``small`` preset; its FLAIR and whole-tumour
channels carry over, the other sequences and the inner regions start neutral): a cold start reached only
validation Dice WT 0.22 / TC 0.13 / ET 0.08 after 1000 iterations (0.6 h on this CPU). brats-flair
was trained on 8 of these training subjects and none of the validation subjects.
If the build is interrupted, run it again: training resumes bit for bit from the last checkpoint.

``--guided`` builds ``brats-regions-guided`` into ``runs/brats-regions-guided`` (not bundled until the robot
user shows it helps): the same data, split and options, warm-started from ``brats-regions`` with hint planes
for the clinician's clicks (``diffseg train --guidance``), half of the items given simulated clicks
(``DiffSegExtension/data/click_simulation.py``), so the one model serves unguided and guided runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from DiffSegExtension.cli import main as diffseg
from model_build import export_and_validate

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
FOUR = DATA / "brats2018_4mod"
VALIDATION = ["Brats18_2013_11_1", "Brats18_2013_23_1", "Brats18_CBICA_AQP_1", "Brats18_TCIA01_201_1",
              "Brats18_TCIA01_425_1"]
# Copies of 4-sequence subjects in other folders (../shared/data/README.md): left out, the 4-sequence copy is used.
DUPLICATES = {"brats2018_flair_t1": ["Brats18_CBICA_ARW_1"],
              "brats2015_flair_t1ce": ["brats_2013_pat0004_1", "brats_2013_pat0006_1"]}


def training_inputs() -> list[Path]:
    """The folders given to ``diffseg train --data``: the 4-sequence root, then single extra case folders."""
    extra = [case for folder, skip in DUPLICATES.items() for case in sorted((DATA / folder).iterdir())
             if case.is_dir() and case.name not in skip]
    return [FOUR, *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guided", action="store_true", help="the click-guided variant (see the module docstring)")
    parser.add_argument("--iterations", type=int, help="default 6000 (3000 with --guided)")
    parser.add_argument("--work", type=Path, help="default runs/brats-regions[-guided]")
    parser.add_argument("--out", type=Path, help="default Resources/Models/brats-regions (runs/brats-regions-guided/model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-only", action="store_true", help="stop after training (export later)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 leaves a core free)")
    args = parser.parse_args()
    name = "brats-regions-guided" if args.guided else "brats-regions"
    args.iterations = args.iterations or (3000 if args.guided else 6000)
    args.work = args.work or REPO / "runs" / name
    args.out = args.out or (args.work / "model" if args.guided else REPO / "Resources" / "Models" / name)
    source = "brats-regions" if args.guided else "brats-flair"
    run = args.work / "run"
    train_args = ["train", "--data", *map(str, training_inputs()), "--modalities", "flair", "t1", "t1ce", "t2",
                  "--optional-modalities", "t1", "t1ce", "t2", "--regions", "wt", "tc", "et", "--preset", "small",
                  "--prediction", "v", "--out", str(run), "--iterations", str(args.iterations), "--batch-size", "16",
                  "--crop", "128", "--lr", "3e-4", "--warmup", "200", "--val-cases", *VALIDATION,
                  "--val-every", "1000", "--checkpoint-every", "250", "--device", args.device, "--name", name,
                  "--progress", "none", "--init-from", source] + (["--threads", str(args.threads)] if args.threads else [])
    if args.guided:
        train_args += ["--guidance", "--hint-rate", "0.5"]
    if (run / "model.json").exists():
        train_args.append("--resume")
    started = time.perf_counter()
    assert diffseg(train_args) == 0
    if args.train_only:
        return
    trained = json.loads((run / "model.json").read_text())
    card = {
        "name": name,
        "title": "Tumour regions (whole tumour, core, enhancing) from FLAIR + optional T1/T1ce/T2 (small preset)"
                 + (", reads the clinician's clicks" if args.guided else ""),
        "intended_use": "Research use only, not for clinical decisions. Input: skull-stripped, co-registered MRI of an "
                        "adult brain with a glioma (BraTS-like preprocessing): FLAIR required, T1, T1ce and T2 optional. "
                        "Output: BraTS regions and labels (2 edema, 1 necrotic / non-enhancing core, 4 enhancing). "
                        "Trained on 22 subjects only: expect failures on other scanners, protocols and pathologies.",
        "inference_defaults": {"sampler": "dpmpp", "steps": 10, "members": 5},
        "data_sources": {
            "brats2018_4mod": "BraTS 2018 training cases (Menze 2015; Bakas 2017, 2018), research use",
            "brats2018_flair_t1": "BraTS 2018 training cases (whole-tumour labels), research use",
            "brats2015_flair_t1ce": "BraTS 2015 / 2013 HGG cases via the DeepMedic examples, CC BY-NC-SA 3.0",
        },
        "training_hardware": f"CPU (2 cores, shared), {trained['training']['seconds'] / 3600:.2f} h for "
                             f"{trained['training']['iteration']} iterations × batch 16, warm-started from {source} "
                             + ("(6000 iterations × batch 16 on the same CPU, itself warm-started from brats-flair)"
                                if args.guided else "(8000 iterations × batch 16, 1.63 h on the same CPU)"),
    }
    if args.out.exists():  # a bundled model folder holds exactly what this build exports
        shutil.rmtree(args.out)
    export_and_validate(run, args.out, card, [FOUR], VALIDATION, args.work, args.device)
    print(f"done in {(time.perf_counter() - started) / 3600:.2f} h")


if __name__ == "__main__":
    main()
