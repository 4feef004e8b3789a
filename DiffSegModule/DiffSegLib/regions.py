"""Tumour regions on the Slicer side: region codes, the segments they become, nesting, per-region names.

Regions are nested: whole tumour (``wt``) ⊇ tumour core (``tc``) ⊇ enhancing tumour (``et``). A region
model's label map holds BraTS labels: 2 = edema (WT − TC), 1 = necrotic / non-enhancing core (TC − ET),
4 = enhancing tumour (ET); a whole-tumour model's holds 1 = tumour. The rules mirror the engine's
``DiffSegExtension/regions.py``, which the Slicer process never imports (it would import torch).

No MRML, no Qt: numpy and plain data only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage  # Slicer ships SciPy

#: Region codes in nesting order (each contains the next).
REGIONS = ("wt", "tc", "et")
REGION_TITLES = {"wt": "Whole tumor", "tc": "Tumor core", "et": "Enhancing tumor"}
#: Segmentation-node attribute: the result's regions, comma-separated (absent: ``wt`` only, as before regions).
REGIONS_ATTRIBUTE = "DiffSeg.Regions"
#: Segmentation-node attribute: the run's ``min_component_probability`` (absent: 0, every component kept).
MIN_COMPONENT_ATTRIBUTE = "DiffSeg.MinComponentProbability"
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of a DiffSeg result: the label-map value it holds, its ID, name, colour and terminology."""

    label: int
    segment_id: str
    name: str
    color: tuple[float, float, float]
    terminology: str


def _terminology(property_type: str) -> str:
    """Slicer's terminology entry: category Morphologically Altered Structure (SCT 49755003), the given
    type (``scheme^code^meaning``), anatomic region Brain (SCT 12738006)."""
    return ("Segmentation category and type - DICOM master list"
            f"~SCT^49755003^Morphologically Altered Structure~{property_type}~^^"
            "~Anatomic codes - DICOM master list~SCT^12738006^Brain~^^")


# Types from DICOM PS3.16 CID 7168 / 7169 (Brain Lesion Segmentation Type with / without Necrosis):
# Edema SCT 79654002; Necrosis SCT 6574001 (CID 7168 uses this concept for non-enhancing tumour too);
# Enhancing Lesion NCIt C113842; the whole tumour is Neoplasm SCT 108369006. Colours: the BraTS
# convention (ITK-SNAP's default label colours used in BraTS figures): 1 red, 2 green, 4 yellow.
TUMOR = SegmentSpec(1, "Tumor", "Tumor", (0.35, 0.85, 0.45), _terminology("SCT^108369006^Neoplasm"))
EDEMA = SegmentSpec(2, "Edema", "Edema", (0.0, 1.0, 0.0), _terminology("SCT^79654002^Edema"))
NECROTIC_CORE = SegmentSpec(1, "NecroticCore", "Necrotic / non-enhancing core", (1.0, 0.0, 0.0),
                            _terminology("SCT^6574001^Necrosis"))
ENHANCING = SegmentSpec(4, "Enhancing", "Enhancing tumor", (1.0, 1.0, 0.0),
                        _terminology("NCIt^C113842^Enhancing Lesion"))
#: A model with WT and TC but no ET: label 1 is the whole core.
TUMOR_CORE = SegmentSpec(1, "TumorCore", "Tumor core", (1.0, 0.0, 0.0), _terminology("SCT^108369006^Neoplasm"))
ALL_SEGMENT_IDS = tuple(s.segment_id for s in (TUMOR, EDEMA, NECROTIC_CORE, ENHANCING, TUMOR_CORE))


def check_regions(regions: Sequence[str]) -> tuple[str, ...]:
    """``regions`` as a tuple: ``wt`` first, then optionally ``tc``, then ``et``.

    :raises ValueError: for anything else.
    """
    regions = tuple(regions)
    if regions not in (REGIONS[:1], REGIONS[:2], REGIONS):
        raise ValueError(f"regions {list(regions)} are invalid: give 'wt', optionally followed by 'tc' and then 'et'.")
    return regions


def segment_specs(regions: Sequence[str]) -> tuple[SegmentSpec, ...]:
    """The segments of a result with ``regions``: one "Tumor" for a whole-tumour model, else one per label."""
    regions = check_regions(regions)
    if regions == ("wt",):
        return (TUMOR,)
    return (EDEMA, NECROTIC_CORE, ENHANCING) if "et" in regions else (EDEMA, TUMOR_CORE)


def label_map(masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Region masks (region → boolean array) → uint8 label map, nesting enforced by union upwards
    (a voxel of an inner region is in every outer one; the innermost region wins its label)."""
    regions = check_regions([r for r in REGIONS if r in masks])
    nested = {}
    inner = None
    for region in reversed(regions):
        nested[region] = np.asarray(masks[region], dtype=bool) | (inner if inner is not None else False)
        inner = nested[region]
    if regions == ("wt",):
        return nested["wt"].astype(np.uint8)
    labels = np.where(nested["wt"], 2, 0).astype(np.uint8)
    labels[nested["tc"]] = 1
    if "et" in regions:
        labels[nested["et"]] = 4
    return labels


#: Label-map values inside each region (a whole-tumour result labels its tumour 1).
REGION_LABELS = {"wt": (1, 2, 4), "tc": (1, 4), "et": (4,)}


def region_mask(labels: np.ndarray, region: str) -> np.ndarray:
    """Bool array: the voxels of a label map (any shape) that lie in ``region``."""
    return np.isin(labels, REGION_LABELS[region])


def label_map_at(probabilities: Mapping[str, np.ndarray], thresholds: Mapping[str, float],
                 min_component: float = 0.0, keep: np.ndarray | None = None) -> np.ndarray:
    """The label map of region probabilities, each region at its threshold (probability ≥ threshold), without the
    whole-tumour components whose mean whole-tumour probability is below ``min_component`` unless they hold a
    ``keep`` voxel (the engine's ``components.drop_unlikely_components``; a test keeps the two alike). Only the box
    holding every probability above 0 is worked on (a tumour is a small part of a volume)."""
    shape = np.shape(next(iter(probabilities.values())))
    everything = tuple(slice(None) for _ in shape)  # a threshold of 0 takes every voxel
    box = _positive_box(probabilities.values()) if min(thresholds[r] for r in probabilities) > 0 else everything
    labels = np.zeros(shape, dtype=np.uint8)
    if box is None:
        return labels
    probabilities = {r: np.asarray(p)[box] for r, p in probabilities.items()}
    keep = None if keep is None else np.asarray(keep)[box]
    masks = {r: np.asarray(p, dtype=np.float64) >= float(thresholds[r]) for r, p in probabilities.items()}
    if min_component > 0:
        whole = np.logical_or.reduce(list(masks.values()))  # nesting: every region lies in the whole tumour
        components, count = ndimage.label(whole)
        ids = components[whole]
        means = np.bincount(ids, weights=np.asarray(probabilities["wt"])[whole], minlength=count + 1) / np.maximum(
            np.bincount(ids, minlength=count + 1), 1)
        drop = means < min_component
        drop[0] = False
        if keep is not None:
            drop[np.unique(components[keep])] = False
        removed = drop[components]
        masks = {r: m & ~removed for r, m in masks.items()}
    labels[box] = label_map(masks)
    return labels


def _positive_box(arrays) -> tuple[slice, ...] | None:
    """The smallest box (slices per axis) holding every voxel above 0 of any of ``arrays`` (same shape), or None."""
    positive = np.logical_or.reduce([np.asarray(a) > 0 for a in arrays])
    boxes = ndimage.find_objects(positive.astype(np.uint8))
    return boxes[0] if boxes else None


def suffix(region: str) -> str:
    """Name suffix of a region's nodes, references and attributes: none for the whole tumour (so scenes
    saved before regions keep working), ``_tc`` / ``_et`` for the inner regions (the engine's output names)."""
    return "" if region == "wt" else f"_{region}"


def output_key(kind: str, region: str) -> str:
    """The engine's output name of a region's map: ``probability``, ``uncertainty_tc``, ..."""
    return f"{kind}{suffix(region)}"


def probability_reference(region: str) -> str:
    return f"DiffSegProbability{suffix(region)}"


def uncertainty_reference(region: str) -> str:
    return f"DiffSegUncertainty{suffix(region)}"


def threshold_attribute(region: str) -> str:
    return f"DiffSeg.Threshold{suffix(region)}"


def regions_of(segmentation) -> tuple[str, ...]:
    """The regions of a DiffSeg result (``("wt",)`` for results saved before regions existed)."""
    value = segmentation.GetAttribute(REGIONS_ATTRIBUTE)
    return check_regions(value.split(",")) if value else ("wt",)
