"""PNG figures of the evaluation report (matplotlib, Agg backend). Slices are drawn in the canonical
frame in radiological convention (patient left on the image right, anterior at the top)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from DiffSegExtension.ensemble import aggregate  # noqa: E402

COLOURS = {"ddpm": "tab:blue", "ddim": "tab:orange", "dpmpp": "tab:green"}
STYLES = {"ddpm": "o-", "ddim": "s--", "dpmpp": "^:"}  # distinct, so overlapping lines stay visible
LABELS = {"ddpm": "DDPM", "ddim": "DDIM (η = 0)", "dpmpp": "DPM-Solver++(2M)"}


def _show(a) -> np.ndarray:
    return np.asarray(a).T  # canonical (L, P) → rows P (anterior up), columns L


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dice_vs_passes(grid: list[dict], reference: list[dict], path: Path) -> Path:
    """Left: Dice on the slice subset vs passes per slice (log x), one line per sampler.
    Right: the seed's recipe vs the default sampler on the slices with most tumour, per case."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    for sampler in dict.fromkeys(r["sampler"] for r in grid):
        rows = sorted((r for r in grid if r["sampler"] == sampler), key=lambda r: r["passes_per_slice"])
        left.plot([r["passes_per_slice"] for r in rows], [r["dice"] for r in rows], STYLES.get(sampler, "o-"),
                  color=COLOURS.get(sampler), label=LABELS.get(sampler, sampler), markerfacecolor="none")
        for r in rows:
            left.annotate(f"{r['steps']}", (r["passes_per_slice"], r["dice"]), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
    left.set_xscale("log")
    passes = sorted({r["passes_per_slice"] for r in grid})
    left.set_xticks(passes, [str(v) for v in passes])
    left.minorticks_off()
    left.set_xlabel(f"network passes per slice (members × steps; labels = steps, {grid[0]['members']} members)")
    left.set_ylabel("Dice on the slice subset (mean over cases)")
    left.set_title("quality vs speed", fontsize=10)
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    if reference:
        x = np.arange(len(reference))
        right.bar(x - 0.2, [r["reference_dice"] for r in reference], 0.4, color="tab:blue",
                  label=f"seed recipe ({reference[0]['reference_passes_per_slice']} passes/slice)")
        right.bar(x + 0.2, [r["default_dice"] for r in reference], 0.4, color="tab:green",
                  label=f"default ({reference[0]['default_passes_per_slice']} passes/slice)")
        right.set_xticks(x, [r["case"] for r in reference], rotation=20, fontsize=7, ha="right")
        right.set_ylim(0, 1)
        right.set_ylabel("Dice on the slices with most tumour")
        right.legend(fontsize=7, loc="lower right")
        right.set_title("seed recipe vs default, same slices", fontsize=10)
    return _save(fig, path)


def ensemble_size(size_rows: dict[int, list[dict]], path: Path) -> Path:
    """Dice and uncertainty AUROC vs ensemble size: one thin line per case, the mean in bold."""
    sizes = sorted(size_rows)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "dice", "Dice (full volume)"), (axes[1], "auroc_uncertainty_error",
                                                                     "AUROC of uncertainty for voxel error")):
        cases = [r["case"] for r in size_rows[sizes[0]]]
        for i, case in enumerate(cases):
            ax.plot(sizes, [size_rows[k][i][key] for k in sizes], "-", alpha=0.4, lw=1, label=case)
        mean = [np.nanmean([r[key] for r in size_rows[k]]) for k in sizes]
        ax.plot(sizes, mean, "ko-", lw=2, label="mean")
        ax.set_xticks(sizes)
        ax.set_xlabel("ensemble members")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].set_title("(1 member: no uncertainty, AUROC = 0.5)", fontsize=8)
    return _save(fig, path)


def reliability_diagram(pooled: dict, path: Path, members: int) -> Path:
    """Observed tumour frequency vs predicted probability (pooled voxels in the brain) + bin counts."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    used = pooled["count"] > 0
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.plot(pooled["confidence"][used], pooled["frequency"][used], "o-", color="tab:red",
             label=f"{members}-member ensemble (ECE {pooled['ece']:.3f})")
    top.set_ylabel("observed tumour fraction")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    edges = np.linspace(0, 1, len(pooled["count"]) + 1)
    bottom.bar(edges[:-1], pooled["count"], width=np.diff(edges), align="edge", color="grey", log=True)
    bottom.set_xlabel("predicted probability (fraction of members)")
    bottom.set_ylabel("voxels")
    return _save(fig, path)


def error_map(mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGB: true positive green, false positive red, false negative blue, rest black."""
    rgb = np.zeros((*mask.shape, 3), dtype=np.float32)
    m, t = mask.astype(bool), truth.astype(bool)
    rgb[m & t] = (0.1, 0.7, 0.1)
    rgb[m & ~t] = (0.95, 0.1, 0.1)
    rgb[~m & t] = (0.2, 0.4, 1.0)
    return rgb


def case_figure(run, members_shown: int, path: Path, title: str, pick: str = "tumour") -> Path:
    """Inputs, members, probability, uncertainty and error map of one slice of a full-volume run.

    ``pick``: ``"tumour"`` = the slice with the largest true tumour area, ``"error"`` = the slice with
    the most wrong voxels (FP + FN) of the ``members_shown``-member ensemble.
    """
    prepared = run.prepared
    members = run.members[:members_shown]
    result = aggregate(members)
    truth = prepared.label
    wrong = (result.mask.bool() != truth.bool()).flatten(1).sum(dim=1)
    score = truth.flatten(1).sum(dim=1) if pick == "tumour" else wrong
    s = int(torch.argmax(score))
    panels = [(name, _show(img), "gray", (0, 1)) for name, img in zip(prepared.modalities, prepared.images[s].numpy())]
    panels += [(f"member {m + 1}", _show(members[m, s]), "gray", (0, 1)) for m in range(members_shown)]
    panels += [("probability", _show(result.probability[s]), "magma", (0, 1)),
               ("uncertainty (variance)", _show(result.uncertainty[s]), "inferno", (0, 0.25))]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.1 * (len(panels) + 1), 2.7), squeeze=False)
    for ax, (label, image, cmap, (lo, hi)) in zip(axes[0], panels):
        ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        if label in prepared.modalities:
            ax.contour(_show(truth[s]), levels=[0.5], colors="cyan", linewidths=0.7)
            ax.contour(_show(result.mask[s]), levels=[0.5], colors="red", linewidths=0.7)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    ax = axes[0][-1]
    ax.imshow(error_map(_show(result.mask[s]), _show(truth[s])), interpolation="nearest")
    ax.set_title(f"TP green, FP red, FN blue ({int(wrong[s])} px wrong)", fontsize=8)
    ax.axis("off")
    fig.suptitle(f"{title} — source slice {prepared.source_slices[s]} (axis {prepared.frame.slice_axis}); "
                 "contours: truth cyan, ensemble red", fontsize=9)
    return _save(fig, path)


def slices_figure(items: list[dict], path: Path, title: str) -> Path:
    """One column per 2D case: first modality + contours, probability, uncertainty, error map.

    items: dicts with ``name``, ``image`` (H, W) in [0, 1], ``truth``, ``mask``, ``probability``, ``uncertainty``.
    """
    fig, axes = plt.subplots(4, len(items), figsize=(2.2 * len(items), 8.6), squeeze=False)
    for j, it in enumerate(items):
        axes[0][j].imshow(_show(it["image"]), cmap="gray", vmin=0, vmax=1)
        axes[0][j].contour(_show(it["truth"]), levels=[0.5], colors="cyan", linewidths=0.7)
        axes[0][j].contour(_show(it["mask"]), levels=[0.5], colors="red", linewidths=0.7)
        axes[1][j].imshow(_show(it["probability"]), cmap="magma", vmin=0, vmax=1)
        axes[2][j].imshow(_show(it["uncertainty"]), cmap="inferno", vmin=0, vmax=0.25)
        axes[3][j].imshow(error_map(_show(it["mask"]), _show(it["truth"])))
        axes[0][j].set_title(it["name"], fontsize=8)
        for i in range(4):
            axes[i][j].axis("off")
    for i, label in enumerate(("input + contours", "probability", "uncertainty", "error (FP red, FN blue)")):
        axes[i][0].text(-0.08, 0.5, label, transform=axes[i][0].transAxes, rotation=90, va="center", ha="right",
                        fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
