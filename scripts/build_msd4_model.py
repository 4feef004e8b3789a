"""Build the 4-modality model ``runs/msd4`` (the paper's input configuration: T1, T1ce, T2, FLAIR).

    python scripts/build_msd4_model.py [--iterations 4000] [--preset small] [--out runs/msd4]

THIN DATA. The only 4-modality material here is (a) 20 overlapping 160×160×16 patches of ONE subject
(MSD Task01 BRATS_009, raw MSD intensities, LPS) — all of it used for training — and (b) 6 labelled
2D axial slices (080–085, min–max scaled to [0, 1], identity/RAS affine) of ANOTHER subject
(BraTS20 training subject 001) in the reference implementation's layout — used only for validation.
So this model shows that the 4-channel path works end to end on real MRI across sources,
orientations and intensity conventions; its Dice says little about 4-modality quality in general.

Writes the training run to ``<out>/run`` (resumable), the exported EMA weights + card to ``<out>``
(a model folder, not bundled), and the validation report to ``<out>/validation``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from DiffSegExtension.cli import main as diffseg
from DiffSegExtension.data.modalities import list_cases
from model_build import export_and_validate

REPO = Path(__file__).resolve().parent.parent

DATA = REPO.parent / "shared" / "data"
MSD = DATA / "msd_patches_4mod"
SEED_SLICES = DATA / "brats2020_slices_seed_layout" / "training"
MODALITIES = ["t1", "t1ce", "t2", "flair"]
THIN_DATA = ("THIN DATA: trained on 20 overlapping patches of ONE subject (MSD BRATS_009); validated on 6 axial "
             "slices of ONE other subject (BraTS20 training 001). An end-to-end check of the 4-modality input "
             "configuration, not a quality estimate.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--preset", default="small", choices=["tiny", "small"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128, help="training crop (a multiple of 32)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--train-data", type=Path, default=MSD, help="training cases (default: the MSD patches)")
    parser.add_argument("--val-data", type=Path, default=SEED_SLICES, help="validation cases (default: the seed slices)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "msd4")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--progress", choices=("tqdm", "none"), default="tqdm")
    args = parser.parse_args(argv)
    validation = [p.name for p in list_cases(args.val_data)]
    training = [p.name for p in list_cases(args.train_data)]
    if set(validation) & set(training):
        raise SystemExit(f"case names shared by training and validation data: {sorted(set(validation) & set(training))}")
    run = args.out / "run"
    train_args = ["train", "--data", str(args.train_data), str(args.val_data), "--modalities", *MODALITIES,
                  "--preset", args.preset, "--out", str(run), "--iterations", str(args.iterations),
                  "--batch-size", str(args.batch_size), "--crop", str(args.crop), "--lr", str(args.lr),
                  "--warmup", str(args.warmup), "--val-cases", *validation, "--val-every", str(args.val_every),
                  "--checkpoint-every", str(args.checkpoint_every), "--device", args.device, "--name", "msd4",
                  "--progress", args.progress, "--title", "4-modality whole-tumour model on thin data (MSD patches)"]
    if (run / "model.json").exists():
        train_args.append("--resume")
    started = time.perf_counter()
    print(f"msd4: {len(training)} training cases from {args.train_data}, validation {validation} from {args.val_data}",
          flush=True)
    assert diffseg(train_args) == 0
    trained = json.loads((run / "model.json").read_text())
    card = {
        "name": "msd4",
        "title": "4-modality (T1, T1ce, T2, FLAIR) whole-tumour model — thin data, not bundled",
        "intended_use": "Research and software checks only, not for clinical decisions. " + THIN_DATA,
        "thin_data": THIN_DATA,
        "inference_defaults": {"sampler": "dpmpp", "steps": 10, "members": 5},
        "data_sources": {
            "msd_patches_4mod": "Medical Segmentation Decathlon Task01 BRATS_009, 20 overlapping patches (CC BY-SA 4.0)",
            "brats2020_slices_seed_layout": "BraTS 2020 training subject 001, slices 080-085, from the reference "
                                            "implementation's example (BraTS 2020 terms)",
        },
        "training_hardware": f"{trained['training']['seconds'] / 3600:.2f} h for {trained['training']['iteration']} "
                             f"iterations (device {args.device})",
    }
    export_and_validate(run, args.out, card, [args.val_data], validation, args.out, args.device)
    print(f"msd4 done in {(time.perf_counter() - started) / 3600:.2f} h → {args.out}\n{THIN_DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
