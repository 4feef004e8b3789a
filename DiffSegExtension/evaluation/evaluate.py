"""Per-case evaluation of a model: Dice, HD95, uncertainty quality, calibration and time."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from DiffSegExtension.atomic import atomic_path, write_text_atomic
from DiffSegExtension.data.loading import Case
from DiffSegExtension.evaluation.metrics import (auroc, dice, hd95, reliability, spacing_from_affine,
                                                 uncertainty_error_overlap)
from DiffSegExtension.inference.progress import Progress
from DiffSegExtension.inference.segment import Segmentation, SegmentOptions, segment_case
from DiffSegExtension.model_card import LoadedModel

COLUMNS = ["case", "dice", "hd95_mm", "auroc_uncertainty_error", "ueo", "ueo_max", "ece", "truth_ml", "predicted_ml",
           "slices", "passes_per_slice", "seconds"]


def case_metrics(seg: Segmentation, case: Case) -> dict[str, float]:
    """Metrics of one segmentation against ``case.label`` on the whole volume.

    Uncertainty and calibration metrics are computed inside the brain of the sampled slices.
    """
    truth = case.label.astype(bool)
    mask = seg.mask.astype(bool)
    brain = seg.prepared.restore(seg.prepared.brain.float()) > 0.5
    error = mask != truth
    voxel_ml = abs(np.linalg.det(case.affine[:3, :3])) / 1000.0
    return {
        "case": case.name,
        "dice": dice(mask, truth),
        "hd95_mm": hd95(mask, truth, spacing_from_affine(case.affine)),
        "auroc_uncertainty_error": auroc(seg.uncertainty[brain], error[brain]),
        **uncertainty_error_overlap(seg.uncertainty[brain], error[brain]),
        "ece": reliability(seg.probability[brain], truth[brain])["ece"],
        "truth_ml": float(truth.sum() * voxel_ml),
        "predicted_ml": float(mask.sum() * voxel_ml),
        "slices": len(seg.prepared.source_slices),
        "passes_per_slice": seg.options.members * seg.options.steps,
        "seconds": seg.seconds,
    }


def evaluate_cases(model: LoadedModel, cases: list[Case], options: SegmentOptions, progress: Progress | None = None,
                   keep: bool = False) -> tuple[list[dict], list[Segmentation]]:
    """Segment and score each case; with ``keep`` also return the segmentations (for figures)."""
    rows, kept = [], []
    for case in cases:
        seg = segment_case(model, case, options, progress)
        rows.append(case_metrics(seg, case))
        if keep:
            kept.append(seg)
    return rows, kept


def summarise(rows: list[dict]) -> dict[str, float]:
    """Mean of each numeric column over cases (NaN-aware: a case with an undefined value is skipped)."""
    out = {}
    for column in COLUMNS[1:]:
        values = [r[column] for r in rows if isinstance(r[column], (int, float)) and not math.isnan(r[column])]
        out[column] = float(np.mean(values)) if values else float("nan")
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    mean = {"case": "**mean**", **summarise(rows)}
    lines.append("| " + " | ".join(_fmt(mean[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], out_dir: Path, header: str = "") -> tuple[Path, Path]:
    """``results.csv`` (one row per case) and ``results.md`` (the table with a mean row)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "results.csv", out_dir / "results.md"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in COLUMNS} for r in rows)
    write_text_atomic(md_path, (header + "\n\n" if header else "") + markdown_table(rows))
    return csv_path, md_path
