"""Whole-tumour components the ensemble does not back: removed from the mask, kept in the maps.

A majority vote decides each voxel alone, so a few members that agree on a blob far from the tumour make it
tumour although most of the blob's voxels are barely above half the members (the few-step student's false
blobs: mean probability 0.63–0.67, true tumour 0.88–0.95). The rule here judges each connected component of
the whole-tumour mask by its mean whole-tumour probability and removes the components below a minimum from
every region's mask (the regions are nested, so their voxels go too). Probability, uncertainty and entropy
are left as they are: the uncertainty map still shows the blob. Components holding a voxel the clinician
marked as tumour are always kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def masks_from_probability(probability: np.ndarray, min_mean: float, keep: np.ndarray | None = None) -> np.ndarray:
    """(R, *shape) uint8 region masks of (R, *shape) probabilities: the majority (p ≥ 0.5) without the whole-tumour
    components :func:`drop_unlikely_components` removes (``keep`` as there)."""
    mask = (probability >= 0.5).astype(np.uint8)
    drop_unlikely_components(mask, probability[0], min_mean, keep)
    return mask


def drop_unlikely_components(mask: np.ndarray, wt_probability: np.ndarray, min_mean: float,
                             keep: np.ndarray | None = None) -> int:
    """Remove, in place, the whole-tumour components whose mean probability is below ``min_mean``.

    :param mask: (R, *shape) uint8 {0, 1} region masks, whole tumour first, nested.
    :param wt_probability: (*shape) float whole-tumour probability (fraction of members).
    :param min_mean: in [0, 1]; 0 keeps every component.
    :param keep: (*shape) bool voxels whose components stay whatever their mean (the clinician's "tumour here").
    :return: the number of components removed.
    """
    box = ndimage.find_objects(mask[0])  # the whole tumour's bounding box: labelling the volume costs more
    if min_mean <= 0 or not box:
        return 0
    labels, count = ndimage.label(mask[0][box[0]])  # face connectivity
    inside = labels > 0
    ids = labels[inside]  # the tumour voxels only: a few percent of a volume
    means = np.bincount(ids, weights=wt_probability[box[0]][inside], minlength=count + 1) / np.maximum(
        np.bincount(ids, minlength=count + 1), 1)
    drop = means < min_mean
    drop[0] = False  # background
    if keep is not None:
        drop[np.unique(labels[keep[box[0]]])] = False
    if drop.any():
        mask[(slice(None), *box[0])][:, drop[labels]] = 0  # a view: the masks change in place
    return int(drop.sum())
