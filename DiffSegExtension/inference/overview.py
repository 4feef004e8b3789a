"""``overview.png``: inputs, members, probability and uncertainty on the slice with most tumour."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def most_tumour_slice(members) -> int:
    """Index (into the sampled slices) with the largest mean member area; 0 if no tumour anywhere."""
    areas = members.float().mean(dim=0).sum(dim=(1, 2))
    return int(areas.argmax())


def render_overview(path: Path, seg, title: str = "", max_members: int = 5) -> None:
    """Save a two-row figure: inputs (mask contour in red), probability, uncertainty; then the members.
    Slices are shown in the canonical frame, radiological convention (patient left on the image
    right, anterior at the top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from DiffSegExtension.ensemble import aggregate

    index = most_tumour_slice(seg.members)
    prepared = seg.prepared
    images = prepared.images[index].numpy()
    members = seg.members[:, index].numpy()
    result = aggregate(seg.members[:, index])
    show = lambda a: np.asarray(a).T  # noqa: E731  canonical (L, P) → rows P (anterior up), columns L
    top = [(name, show(img), "gray", (0, 1)) for name, img in zip(prepared.modalities, images)]
    top += [("probability", show(result.probability), "magma", (0, 1)),
            ("uncertainty (variance)", show(result.uncertainty), "inferno", (0, 0.25))]
    bottom = [(f"member {m + 1}", show(members[m]), "gray", (0, 1)) for m in range(min(max_members, len(members)))]
    columns = max(len(top), len(bottom))
    fig, axes = plt.subplots(2, columns, figsize=(2.1 * columns, 4.6), squeeze=False)
    for row, panels in enumerate((top, bottom)):
        for ax in axes[row]:
            ax.axis("off")
        for ax, (label, image, cmap, (lo, hi)) in zip(axes[row], panels):
            ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if row == 0 and label in prepared.modalities:
                ax.contour(show(result.mask), levels=[0.5], colors="red", linewidths=0.7)
            ax.set_title(label, fontsize=8)
    source_index = prepared.source_slices[index]
    fig.suptitle(f"{title}  slice {source_index} (axis {prepared.frame.slice_axis})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
