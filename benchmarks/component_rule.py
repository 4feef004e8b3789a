"""Choose the component rule: whole-tumour Dice / HD95 with mask components below a mean probability removed.

    python benchmarks/component_rule.py [--data ../shared/data/brats2018_4mod] [--work runs/component_rule]
        [--thresholds 0.6 0.7 0.75 0.8]

Segments every case of ``--data`` once with the model card's default recipe and no rule
(``--min-component-probability 0``; kept in ``--work``, reused when there), then scores each threshold on the
same maps: Dice per region, whole-tumour HD95, separately for the card's training and validation subjects (the
rule is chosen on the training subjects). Also prints each case's largest components (voxels, mean and maximum
probability). The bundled ``brats-regions`` card's ``component_rule`` records the run that chose 0.75.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from DiffSegExtension.data.modalities import find_case_files
from DiffSegExtension.evaluation.metrics import dice, hd95, spacing_from_affine
from DiffSegExtension.model_card import load_model
from DiffSegExtension.regions import region_masks

REPO = Path(__file__).resolve().parent.parent


def scores(probability: np.ndarray, truth: np.ndarray, spacing, drop: np.ndarray, components: np.ndarray) -> list[float]:
    """[Dice per region..., WT HD95] of the masks p ≥ 0.5 without the components flagged in ``drop``."""
    masks = probability >= 0.5
    masks[:, drop[components]] = False
    return [dice(m, t) for m, t in zip(masks, truth)] + [hd95(masks[0], truth[0], spacing)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="brats-regions")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "brats2018_4mod")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "component_rule")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.7, 0.75, 0.8])
    args = parser.parse_args()
    model = load_model(args.model)
    regions = tuple(model.regions)
    if not args.work.exists():
        subprocess.run([sys.executable, "-m", "DiffSegExtension", "segment", "--model", args.model, "--input",
                        str(args.data), "--out", str(args.work), "--min-component-probability", "0", "--progress",
                        "none", "--no-overview"], check=True)
    validation = set(model.card["data"]["validation"])
    rows = {}
    for out in sorted(p for p in args.work.iterdir() if (p / "summary.json").is_file()):
        label = nib.load(str(find_case_files(args.data / out.name)["seg"]))
        truth = region_masks(np.asarray(label.dataobj).astype(np.uint8), regions)
        probability = np.stack([np.asarray(nib.load(str(out / f"probability{'' if r == 'wt' else '_' + r}.nii.gz")).dataobj,
                                           dtype=np.float32) for r in regions])
        components, count = ndimage.label(probability[0] >= 0.5)
        flat = components.ravel()
        sizes = np.bincount(flat, minlength=count + 1)
        means = np.bincount(flat, weights=probability[0].ravel(), minlength=count + 1) / np.maximum(sizes, 1)
        spacing = spacing_from_affine(label.affine)
        rows[out.name] = {"none": scores(probability, truth, spacing, np.zeros(count + 1, bool), components)}
        for t in args.thresholds:
            drop = means < t
            drop[0] = False
            rows[out.name][f"< {t:g}"] = scores(probability, truth, spacing, drop, components)
        largest = np.argsort(sizes[1:])[::-1][:5] + 1
        print(f"{out.name} ({'validation' if out.name in validation else 'training'}): largest components "
              + ", ".join(f"{sizes[i]} vox mean {means[i]:.2f}" for i in largest), flush=True)
    for subset in ("training", "validation"):
        names = [n for n in rows if (n in validation) == (subset == "validation")]
        if not names:
            continue
        print(f"\n| {subset} subjects ({len(names)}): components removed | "
              + " | ".join(f"Dice {r.upper()}" for r in regions) + " | HD95 WT mean (median) |")
        print("|---|" + "---|" * (len(regions) + 1))
        for rule in rows[names[0]]:
            a = np.array([rows[n][rule] for n in names], dtype=float)
            print(f"| mean probability {rule} | " + " | ".join(f"{v:.3f}" for v in a[:, :-1].mean(axis=0))
                  + f" | {np.nanmean(a[:, -1]):.2f} mm ({np.nanmedian(a[:, -1]):.2f}) |")
    (args.work / "component_rule.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
