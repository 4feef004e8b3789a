"""Markdown sections of ``docs/results.md``: tables from the measured results, nothing typed in by hand."""

from __future__ import annotations

import math

import numpy as np


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


def per_case_table(rows: list[dict]) -> str:
    """Full-volume results of one ensemble size: one row per case and the mean."""
    keys = ["dice", "hd95_mm", "auroc_uncertainty_error", "ueo", "ece", "truth_ml", "predicted_ml", "slices",
            "passes_per_slice", "seconds"]
    header = ["case", "Dice", "HD95 (mm)", "AUROC unc./error", "UEO", "ECE", "truth (ml)", "predicted (ml)",
              "slices", "passes / slice", "s / volume"]
    body = [[r["case"], *(r[k] for k in keys)] for r in rows]
    body.append(["**mean**", *(mean(r[k] for r in rows) for k in keys)])
    return table(header, body)


def ensemble_size_table(size_rows: dict[int, list[dict]]) -> str:
    cases = [r["case"] for r in size_rows[min(size_rows)]]
    header = ["members", "passes / slice", "mean Dice", "mean HD95 (mm)", "mean AUROC", "mean UEO", "mean ECE",
              "mean s / volume", *[f"Dice {c}" for c in cases]]
    body = []
    for k in sorted(size_rows):
        rows = size_rows[k]
        body.append([k, rows[0]["passes_per_slice"], *(mean(r[key] for r in rows) for key in
                     ("dice", "hd95_mm", "auroc_uncertainty_error", "ueo", "ece", "seconds")), *(r["dice"] for r in rows)])
    return table(header, body)


def grid_table(grid: list[dict], slices_per_volume: float) -> str:
    """``slices_per_volume``: mean brain slices of the cases; s / volume = measured s / slice × that."""
    cases = list(grid[0]["dice_per_case"]) if grid else []
    header = ["sampler", "steps", "members", "passes / slice", "mean Dice", *[f"Dice {c}" for c in cases], "s / slice",
              f"s / volume (× {slices_per_volume:.0f} slices)"]
    body = [[r["sampler"], r["steps"], r["members"], r["passes_per_slice"], r["dice"],
             *(r["dice_per_case"][c] for c in cases), r["seconds_per_slice"], r["seconds_per_slice"] * slices_per_volume]
            for r in grid]
    return table(header, body)


def reference_table(reference: list[dict], ref_label: str, default_label: str) -> str:
    header = ["case", "source slices", f"Dice {ref_label}", f"Dice {default_label}", "difference",
              "agreement Dice (ref. vs default)", f"s / slice {ref_label}", f"s / slice {default_label}"]
    body = [[r["case"], ", ".join(map(str, sorted(r["slices"]))), r["reference_dice"], r["default_dice"],
             r["default_dice"] - r["reference_dice"], r["agreement_dice"], r["reference_seconds_per_slice"],
             r["default_seconds_per_slice"]] for r in reference]
    body.append(["**mean**", "", mean(r["reference_dice"] for r in reference), mean(r["default_dice"] for r in reference),
                 mean(r["default_dice"] - r["reference_dice"] for r in reference),
                 mean(r["agreement_dice"] for r in reference), mean(r["reference_seconds_per_slice"] for r in reference),
                 mean(r["default_seconds_per_slice"] for r in reference)])
    return table(header, body)


def reliability_table(pooled: dict) -> str:
    edges = np.linspace(0, 1, len(pooled["count"]) + 1)
    body = [[f"[{lo:.1f}, {hi:.1f}{']' if i == len(pooled['count']) - 1 else ')'}", int(n), c, f_]
            for i, (lo, hi, n, c, f_) in enumerate(zip(edges[:-1], edges[1:], pooled["count"], pooled["confidence"],
                                                       pooled["frequency"]))]
    return table(["predicted probability", "voxels", "mean predicted", "observed tumour fraction"], body)


def comparison_table(diffusion: list[dict], baseline: list[dict] | None, diffusion_label: str) -> str:
    """Diffusion (default ensemble) and baseline side by side, per case and mean."""
    header = ["case", f"Dice {diffusion_label}", "Dice baseline", f"HD95 {diffusion_label} (mm)", "HD95 baseline (mm)",
              f"ECE {diffusion_label}", "ECE baseline", f"s / volume {diffusion_label}", "s / volume baseline"]
    by_case = {r["case"]: r for r in baseline or []}
    body = []
    for d in diffusion:
        b = by_case.get(d["case"], {})
        body.append([d["case"], d["dice"], b.get("dice"), d["hd95_mm"], b.get("hd95_mm"), d["ece"], b.get("ece"),
                     d["seconds"], b.get("seconds")])
    body.append(["**mean**", *(mean(row[i] for row in body if row[i] is not None) for i in range(1, len(header)))])
    return table(header, body)


def target_rows(targets: list[dict]) -> str:
    return table(["target (issue 4)", "measured", "status", "where"],
                 [[t["target"], t["measured"], "**met**" if t["met"] else ("**not met**" if t["met"] is False else "not measured"),
                   t["where"]] for t in targets])
