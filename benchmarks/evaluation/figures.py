"""PNG figures of the evaluation report (matplotlib, Agg backend). Slices are drawn in the canonical
frame in radiological convention (patient left on the image right, anterior at the top)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

REGION_COLOURS = {"wt": "gold", "tc": "red", "et": "cyan"}
#: BraTS label map colours: 0 background, 1 core without enhancing, 2 edema, 4 enhancing.
LABEL_COLOURS = ListedColormap(["black", "red", "gold", "black", "cyan"])


def _show(a) -> np.ndarray:
    return np.asarray(a).T  # canonical (L, P) → rows P (anterior up), columns L


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _mean(values) -> float:
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else float("nan")


def ensemble_size(size_rows: dict[int, list[dict]], regions: tuple[str, ...], path: Path) -> Path:
    """Mean Dice, uncertainty AUROC and QU-BraTS score vs ensemble size, one line per region."""
    sizes = sorted(size_rows)
    keys = (("dice", "Dice"), ("auroc_uncertainty_error", "AUROC unc./error"),
            ("qu_score", "QU-BraTS score"))
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4))
    for ax, (key, label) in zip(axes, keys):
        for region in regions:
            mean = [_mean(r[key] for r in size_rows[k] if r["region"] == region) for k in sizes]
            ax.plot(sizes, mean, "o-", color=REGION_COLOURS[region], label=region.upper())
        ax.set_xticks(sizes)
        ax.set_xlabel("ensemble members")
        ax.set_ylabel(f"{label} (mean over cases)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def subsets(table: dict[str, dict[str, dict[str, float]]], regions: tuple[str, ...], path: Path) -> Path:
    """Mean Dice per available-sequence subset, one bar per region; ``table[subset][method][region]``."""
    names = list(table)
    methods = list(dict.fromkeys(m for per in table.values() for m in per))
    fig, axes = plt.subplots(1, len(methods), figsize=(max(5, 1.1 * len(names)) * len(methods), 3.8), squeeze=False)
    width = 0.8 / len(regions)
    for ax, method in zip(axes[0], methods):
        x = np.arange(len(names))
        for i, region in enumerate(regions):
            ax.bar(x + (i - (len(regions) - 1) / 2) * width,
                   [table[n].get(method, {}).get(region, np.nan) for n in names], width,
                   color=REGION_COLOURS[region], label=region.upper())
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("Dice (mean over cases)")
        ax.set_title(method, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def worst_case(item: dict, path: Path, title: str) -> Path:
    """Inputs with truth (dashed) and predicted (solid) region contours, both label maps, the QU-BraTS
    uncertainty (0–100) per region: one slice of :func:`measure.figure_slice`."""
    regions = item["regions"]
    panels = len(item["modalities"]) + 2 + len(regions)
    fig, axes = plt.subplots(1, panels, figsize=(2.3 * panels, 2.9), squeeze=False)
    axes = list(axes[0])
    for ax, name, image in zip(axes, item["modalities"], item["image"]):
        ax.imshow(_show(image), cmap="gray", vmin=0, vmax=1)
        for r, region in enumerate(regions):
            colour = REGION_COLOURS[region]
            if item["truth"][r].any():
                ax.contour(_show(item["truth"][r]), levels=[0.5], colors=colour, linewidths=0.7, linestyles="dashed")
            if item["mask"][r].any():
                ax.contour(_show(item["mask"][r]), levels=[0.5], colors=colour, linewidths=0.9)
        ax.set_title(name, fontsize=8)
    offset = len(item["modalities"])
    for ax, key, label in ((axes[offset], "truth_labels", "truth labels"), (axes[offset + 1], "labels", "predicted labels")):
        ax.imshow(_show(item[key]), cmap=LABEL_COLOURS, vmin=0, vmax=4, interpolation="nearest")
        ax.set_title(label, fontsize=8)
    for r, region in enumerate(regions):
        ax = axes[offset + 2 + r]
        shown = ax.imshow(_show(item["qubrats"][r]), cmap="inferno", vmin=0, vmax=100, interpolation="nearest")
        ax.set_title(f"uncertainty {region.upper()} (QU-BraTS 0–100)", fontsize=7)
    fig.colorbar(shown, ax=axes[-1], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    legend = ", ".join(f"{r.upper()} {REGION_COLOURS[r]}" for r in regions)
    labels = "1 tumour red" if regions == ("wt",) else "2 edema gold, 1 core red, 4 enhancing cyan"
    fig.suptitle(f"{title} — source slice {item['slice']} ({item['wrong']} wrong region voxels); contours: truth "
                 f"dashed, prediction solid ({legend}); labels: {labels}", fontsize=8)
    return _save(fig, path)

