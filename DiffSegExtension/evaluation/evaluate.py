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
from DiffSegExtension.evaluation.qubrats import qubrats_scores
from DiffSegExtension.model_card import LoadedModel
from DiffSegExtension.regions import REGION_TITLES, annotated_regions, region_masks

COLUMNS = ["case", "region", "dice", "hd95_mm", "auroc_uncertainty_error", "qu_dice_auc", "qu_ftp_auc", "qu_ftn_auc",
           "qu_score", "ueo", "ueo_max", "ece", "truth_ml", "predicted_ml", "slices", "passes_per_slice", "seconds"]


def case_metrics(seg: Segmentation, case: Case) -> list[dict]:
    """Metrics of one segmentation against the case's label, one row per region its label annotates.

    Voxel-level uncertainty (AUROC of the member variance for voxel error, UEO), calibration and the
    QU-BraTS filtered ratios are computed inside the brain of the sampled slices; the QU-BraTS map is
    the one ``diffseg segment --qubrats`` writes (100 × entropy).
    """
    from DiffSegExtension.inference.outputs import qubrats_uncertainty

    truths = dict(zip(seg.regions, region_masks(case.label_map, seg.regions).astype(bool)))
    annotated = annotated_regions(case.label_map)
    brain = seg.prepared.restore(seg.prepared.brain.float()) > 0.5
    voxel_ml = abs(np.linalg.det(case.affine[:3, :3])) / 1000.0
    qu_maps = qubrats_uncertainty(seg)
    rows = []
    for r, region in enumerate(seg.regions):
        if region not in annotated:
            continue
        truth, mask, uncertainty = truths[region], seg.mask[r].astype(bool), seg.uncertainty[r]
        error = mask != truth
        rows.append({
            "case": case.name,
            "region": region,
            "dice": dice(mask, truth),
            "hd95_mm": hd95(mask, truth, spacing_from_affine(case.affine)),
            "auroc_uncertainty_error": auroc(uncertainty[brain], error[brain]),
            **qubrats_scores(truth, mask, qu_maps[r], brain),
            **uncertainty_error_overlap(uncertainty[brain], error[brain]),
            "ece": reliability(seg.probability[r][brain], truth[brain])["ece"],
            "truth_ml": float(truth.sum() * voxel_ml),
            "predicted_ml": float(mask.sum() * voxel_ml),
            "slices": len(seg.prepared.source_slices),
            "passes_per_slice": seg.passes_per_slice,
            "seconds": seg.seconds,
        })
    return rows


def evaluate_cases(model: LoadedModel, cases: list[Case], options: SegmentOptions, progress: Progress | None = None,
                   keep: bool = False) -> tuple[list[dict], list[Segmentation]]:
    """Segment and score each case; with ``keep`` also return the segmentations (for figures)."""
    rows, kept = [], []
    for case in cases:
        seg = segment_case(model, case, options, progress)
        rows.extend(case_metrics(seg, case))
        if keep:
            kept.append(seg)
    return rows, kept


def summarise(rows: list[dict]) -> dict[str, float]:
    """Mean of each numeric column over rows (NaN-aware: a row with an undefined value is skipped)."""
    out = {}
    for column in COLUMNS[2:]:
        values = [r[column] for r in rows if isinstance(r[column], (int, float)) and not math.isnan(r[column])]
        out[column] = float(np.mean(values)) if values else float("nan")
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    """One table per region (in the rows' order), each with a mean row."""
    tables = []
    for region in dict.fromkeys(r["region"] for r in rows):
        part = [r for r in rows if r["region"] == region]
        lines = [f"**{region.upper()}** ({REGION_TITLES[region]})", "",
                 "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in part]
        mean = {"case": "**mean**", "region": region, **summarise(part)}
        lines.append("| " + " | ".join(_fmt(mean[c]) for c in columns) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


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
