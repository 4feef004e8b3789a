"""Markdown tables of ``docs/results.md``, built from the measured region rows (nothing typed in by hand).

A region row is one ``case_metrics`` row: ``case``, ``region``, ``dice``, ``hd95_mm``,
``auroc_uncertainty_error``, the QU-BraTS columns ``qu_*``, ``ece``, volumes in ml, ``seconds``, …
"""

from __future__ import annotations

import math

import numpy as np

from DiffSegExtension.regions import REGION_TITLES

QU_KEYS = ("qu_dice_auc", "qu_ftp_auc", "qu_ftn_auc", "qu_score")


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def mean(values) -> float:
    values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def region_mean(rows: list[dict], region: str, key: str) -> float:
    """Mean of ``key`` over the rows of ``region`` (NaN-aware; NaN when no row has it)."""
    return mean(r[key] for r in rows if r["region"] == region)


def regions_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["region"] for r in rows))


def region_heading(region: str) -> str:
    return f"{region.upper()} ({REGION_TITLES[region]})"


def per_case_tables(rows: list[dict]) -> str:
    """One table per region: one row per case and the mean (full-volume figures)."""
    keys = ["dice", "hd95_mm", "auroc_uncertainty_error", *QU_KEYS, "ece", "truth_ml", "predicted_ml", "seconds"]
    header = ["case", "Dice", "HD95 (mm)", "AUROC unc./error", "QU Dice AUC", "QU FTP AUC", "QU FTN AUC",
              "QU score", "ECE", "truth (ml)", "predicted (ml)", "s / volume"]
    parts = []
    for region in regions_of(rows):
        part = [r for r in rows if r["region"] == region]
        body = [[r["case"], *(r[k] for k in keys)] for r in part]
        body.append(["**mean**", *(mean(r[k] for r in part) for k in keys)])
        parts.append(f"**{region_heading(region)}**\n\n" + table(header, body))
    return "\n".join(parts)


def ensemble_size_table(size_rows: dict[int, list[dict]]) -> str:
    """members × region: means over cases."""
    keys = ["dice", "hd95_mm", "auroc_uncertainty_error", "qu_score", "ece"]
    header = ["members", "passes / slice", "region", "mean Dice", "mean HD95 (mm)", "mean AUROC", "mean QU score",
              "mean ECE", "mean s / volume"]
    body = []
    for k in sorted(size_rows):
        rows = size_rows[k]
        for region in regions_of(rows):
            body.append([k, f"{rows[0]['passes_per_slice']:g}", region.upper(), *(region_mean(rows, region, key) for key in keys),
                         mean(r["seconds"] for r in rows if r["region"] == region)])
    return table(header, body)


def subset_table(results: list[dict], regions: list[str]) -> str:
    """One row per (sequence subset, method): per region mean Dice, AUROC and QU score over cases.

    ``results``: dicts with ``subset`` (name), ``method`` and ``rows`` (region rows of every case).
    """
    header = ["sequences", "method", "slices"]
    for key, label in (("dice", "Dice"), ("auroc_uncertainty_error", "AUROC"), ("qu_score", "QU score")):
        header += [f"{label} {r.upper()}" for r in regions]
    header.append("s / case")
    body = []
    for res in results:
        rows = res["rows"]
        cases = list(dict.fromkeys(r["case"] for r in rows))
        slices = sum(next(r["slices"] for r in rows if r["case"] == c) for c in cases)
        line = [res["subset"], res["method"], slices]
        for key in ("dice", "auroc_uncertainty_error", "qu_score"):
            line += [region_mean(rows, r, key) for r in regions]
        line.append(mean(next(r["seconds"] for r in rows if r["case"] == c) for c in cases))
        body.append(line)
    return table(header, body)


def flair_table(reference_rows: list[dict], region_rows: list[dict], reference_name: str) -> str:
    """WT Dice per case: the FLAIR-only model vs the region model given FLAIR alone (same slices)."""
    ours = {r["case"]: r["dice"] for r in region_rows if r["region"] == "wt"}
    body = [[r["case"], r["dice"], ours.get(r["case"]), ours.get(r["case"], math.nan) - r["dice"]]
            for r in reference_rows if r["region"] == "wt"]
    body.append(["**mean**", *(mean(row[i] for row in body) for i in (1, 2, 3))])
    return table(["case", f"WT Dice `{reference_name}`", "WT Dice region model, FLAIR alone", "difference"], body)


def comparison_table(diffusion: list[dict], baseline: list[dict]) -> str:
    """Per region: means of the diffusion ensemble and of the baseline side by side."""
    keys = [("dice", "Dice"), ("hd95_mm", "HD95 (mm)"), ("auroc_uncertainty_error", "AUROC"), ("qu_dice_auc", "QU Dice AUC"),
            ("qu_ftp_auc", "QU FTP AUC"), ("qu_ftn_auc", "QU FTN AUC"), ("qu_score", "QU score"), ("ece", "ECE"),
            ("seconds", "s / volume")]
    header = ["region"] + [f"{label} {who}" for _, label in keys for who in ("diffusion", "baseline")]
    body = [[region.upper()] + [region_mean(rows, region, key) for key, _ in keys for rows in (diffusion, baseline)]
            for region in regions_of(diffusion)]
    return table(header, body)


def target_rows(targets: list[dict]) -> str:
    return table(["target (issue 8)", "measured", "status", "where"],
                 [[t["target"], t["measured"], "**met**" if t["met"] else ("**not met**" if t["met"] is False
                                                                           else "not measured"), t["where"]]
                  for t in targets])
