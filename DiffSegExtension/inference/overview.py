"""``overview.png``: inputs, members, probability and uncertainty on the slice with most tumour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


#: Contour colour per region in the overview.
REGION_COLOURS = {"wt": "yellow", "tc": "red", "et": "cyan"}


def most_tumour_slice(members) -> int:
    """Index (into the sampled slices) with the largest mean whole-tumour member area; 0 if no tumour anywhere.

    members: (N, S, R, H, W) or (N, S, H, W) in {0, 1}, any dtype (counted as integers: no float copy)."""
    whole = members[:, :, 0] if members.ndim == 5 else members
    return int(whole.sum(dim=(0, 2, 3), dtype=torch.int64).argmax())


def render_overview(path: Path, seg, title: str = "", max_members: int = 5) -> None:
    """Save a two-row figure: the given inputs (region contours), probability and uncertainty per region; then
    the members' label maps. Slices are shown in the canonical frame, radiological convention (patient left
    on the image right, anterior at the top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from DiffSegExtension.ensemble import aggregate
    from DiffSegExtension.regions import label_map_from_regions

    index = most_tumour_slice(seg.members)
    prepared = seg.prepared
    images = prepared.images[index].numpy()
    members = seg.members[:, index].numpy()  # (N, R, H, W)
    result = aggregate(seg.members[:, index])
    show = lambda a: np.asarray(a).T  # noqa: E731  canonical (L, P) → rows P (anterior up), columns L
    given = [(name, img) for name, img, here in zip(prepared.modalities, images, prepared.present) if here]
    top = [(name, show(img), "gray", (0, 1)) for name, img in given]
    for r, region in enumerate(seg.regions):
        top += [(f"{region.upper()} probability", show(result.probability[r]), "magma", (0, 1)),
                (f"{region.upper()} uncertainty", show(result.uncertainty[r]), "inferno", (0, 0.25))]
    # A whole-tumour model's members are binary (grey); a region model's are BraTS label maps 0…4.
    cmap, top_label = ("gray", 1) if len(seg.regions) == 1 else ("viridis", 4)
    bottom = [(f"member {m + 1}", show(label_map_from_regions(members[m], seg.regions)), cmap, (0, top_label))
              for m in range(min(max_members, len(members)))]
    columns = max(len(top), len(bottom))
    fig, axes = plt.subplots(2, columns, figsize=(2.1 * columns, 4.6), squeeze=False)
    for row, panels in enumerate((top, bottom)):
        for ax in axes[row]:
            ax.axis("off")
        for ax, (label, image, cmap, (lo, hi)) in zip(axes[row], panels):
            ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if row == 0 and label in prepared.modalities:
                for r, region in enumerate(seg.regions):
                    if result.mask[r].any():
                        ax.contour(show(result.mask[r]), levels=[0.5], colors=REGION_COLOURS[region], linewidths=0.7)
            ax.set_title(label, fontsize=8)
    source_index = prepared.source_slices[index]
    fig.suptitle(f"{title}  slice {source_index} (axis {prepared.frame.slice_axis})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
