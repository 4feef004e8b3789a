"""Tumour regions: BraTS label maps ↔ nested region masks (whole tumour ⊇ tumour core ⊇ enhancing).

A region model diffuses one mask channel per region. Labels follow BraTS 2017–2020: 1 necrotic /
non-enhancing core, 2 edema, 4 enhancing tumour. Regions: WT = {1, 2, 4}, TC = {1, 4}, ET = {4}.
Two other conventions are read: the BraTS 2013 scheme (3 = non-enhancing core, part of TC) and
BraTS 2021+ (3 = enhancing tumour, no 4); see :func:`region_masks`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from DiffSegExtension.errors import DiffSegInputError

#: Region codes in nesting order (each contains the next).
REGIONS = ("wt", "tc", "et")
REGION_TITLES = {"wt": "whole tumour", "tc": "tumour core", "et": "enhancing tumour"}
#: QU-BraTS file-name suffix per region (``<case>_unc_whole.nii.gz`` ...).
QUBRATS_NAMES = {"wt": "whole", "tc": "core", "et": "enhance"}
#: Output label values of a region model's label map (BraTS) and what each means.
REGION_LABELS = {2: "edema (whole tumour without core)", 1: "necrotic / non-enhancing core (core without enhancing)",
                 4: "enhancing tumour"}
#: A whole-tumour-only model's label map.
WHOLE_TUMOUR_LABELS = {1: "tumour"}


def check_regions(regions: Sequence[str]) -> tuple[str, ...]:
    """``regions`` as a tuple, checked: distinct known codes in nesting order, starting with ``wt``."""
    regions = tuple(regions)
    if not regions or regions[0] != "wt" or list(regions) != [r for r in REGIONS if r in regions] or \
            len(set(regions)) != len(regions):
        raise DiffSegInputError(f"regions {list(regions)} are invalid: give 'wt' followed optionally by 'tc' and "
                                f"then 'et' (nesting order {list(REGIONS)})")
    return regions


def annotated_regions(label_map: np.ndarray) -> tuple[str, ...]:
    """Which regions a label map annotates: a binary map {0, 1} only WT; any other map all three."""
    return ("wt",) if int(np.max(label_map, initial=0)) <= 1 else REGIONS


def region_masks(label_map: np.ndarray, regions: Sequence[str] = REGIONS) -> np.ndarray:
    """(R, ...) uint8 masks of ``regions`` from an integer label map (...).

    Label 3: with a 4 present (or no 3 at all) it is the 2013 scheme's non-enhancing core (in TC);
    with 3 present and no 4 it is BraTS 2021+'s enhancing tumour. A binary map {0, 1} gives WT only;
    its TC and ET masks are empty (check :func:`annotated_regions` before training on them).
    """
    labels = np.asarray(label_map)
    has3, has4 = bool((labels == 3).any()), bool((labels == 4).any())
    enhancing = 3 if has3 and not has4 else 4
    core = [1, 4] if enhancing == 3 else [1, 3, 4]
    if annotated_regions(labels) == ("wt",):
        core, enhancing = [], -1
    rules = {"wt": labels > 0, "tc": np.isin(labels, core) | (labels == enhancing),
             "et": labels == enhancing}
    return np.stack([rules[r] for r in check_regions(regions)]).astype(np.uint8)


def nest(masks: np.ndarray) -> np.ndarray:
    """Enforce WT ⊇ TC ⊇ ET on (R, ...) masks by union upwards: an inner-region voxel is in every outer one.

    This is how region-based BraTS methods build their label map (the innermost positive region wins).
    """
    out = np.asarray(masks).astype(bool)  # a copy
    nest_in_place(out)
    return out.astype(np.uint8)


def nest_in_place(masks: np.ndarray) -> None:
    """:func:`nest` on (R, ...) bool or {0, 1} integer masks (or a view of them), without a copy."""
    for r in range(masks.shape[0] - 2, -1, -1):
        masks[r] |= masks[r + 1]


def label_map_from_regions(masks: np.ndarray, regions: Sequence[str]) -> np.ndarray:
    """(R, ...) region masks → uint8 label map: 4 = ET, 1 = TC − ET, 2 = WT − TC; {0, 1} for a WT-only model."""
    regions = check_regions(regions)
    nested = nest(masks)
    if regions == ("wt",):
        return nested[0].astype(np.uint8)
    out = np.where(nested[0] > 0, 2, 0).astype(np.uint8)
    out[nested[regions.index("tc")] > 0] = 1
    if "et" in regions:
        out[nested[regions.index("et")] > 0] = 4
    return out


def output_labels(regions: Sequence[str]) -> dict[int, str]:
    """The label values a model with ``regions`` writes, and their meaning."""
    if tuple(regions) == ("wt",):
        return dict(WHOLE_TUMOUR_LABELS)
    return {value: text for value, text in REGION_LABELS.items() if value != 4 or "et" in regions}
