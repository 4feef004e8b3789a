"""What refinement keeps on disk, in the module's results folder (:attr:`.logic.DiffSegLogic.results_root`).

* A result's **run record** (attribute ``DiffSeg.RunFolder``): the engine's ``summary.json`` (case name,
  regions, sampling options), ``guidance.json`` and ``strokes_<region>.nii.gz`` of the run that made it: what
  ``diffseg refine --previous`` needs besides the maps, and the maps as that run wrote them. Every segment,
  refine and undo leaves one. While the result's probability and uncertainty volumes are unchanged since
  (their image data's modification time, ``DiffSeg.RecordMaps``), staging copies those files instead of
  writing them again; a re-run merged in, or any other change to the volumes, makes it write them.
* The **previous result** a refinement starts from, staged in the run's temporary folder by
  :func:`stage_previous` as a complete ``--previous`` folder: the run record plus every region's probability,
  uncertainty and entropy taken from the scene's nodes (float32, so exactly what the user reviews, re-runs
  merged in), the segments' label map as they are (edits included) and the result's ``DiffSeg.*`` attributes.
  On success it becomes the refined result's **undo folder** (``DiffSeg.UndoFolder``), which
  :func:`load_undo` reads back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np

from . import geometry, results, segments, volumeio
from .regions import output_key, regions_of

RUN_FOLDER_ATTRIBUTE = "DiffSeg.RunFolder"
MAPS_ATTRIBUTE = "DiffSeg.RecordMaps"
MAP_KINDS = ("probability", "uncertainty", "entropy")
UNDO_FOLDER_ATTRIBUTE = "DiffSeg.UndoFolder"
SUMMARY, GUIDANCE, ATTRIBUTES, LABELS = "summary.json", "guidance.json", "attributes.json", "segmentation.nii.gz"


def keep_record(outputs: Mapping[str, str], folder: Path) -> Path:
    """Copy the run record (summary, guidance, strokes, maps) out of the engine's ``outputs`` (name → path) into
    ``folder`` (created)."""
    folder.mkdir(parents=True)
    for name, path in outputs.items():
        if (name in ("summary", "guidance") or name.startswith(("strokes_", *MAP_KINDS))) and Path(path).is_file():
            shutil.copy2(path, folder / Path(path).name)
    return folder


def record_of(segmentation) -> Path | None:
    """The run record folder of a result, None when it has none (made before refinement existed, or its
    session's temporary files are gone)."""
    value = segmentation.GetAttribute(RUN_FOLDER_ATTRIBUTE)
    return Path(value) if value and (Path(value) / SUMMARY).is_file() else None


def undo_of(segmentation) -> Path | None:
    """The undo folder of a refined result, None when there is nothing to undo."""
    value = segmentation.GetAttribute(UNDO_FOLDER_ATTRIBUTE)
    return Path(value) if value and (Path(value) / ATTRIBUTES).is_file() else None


def _image_stamps(segmentation) -> dict[str, int]:
    """Output key (``probability_tc`` …) → modification time of the image data of each of the result's
    probability and uncertainty volumes."""
    stamps = {}
    for region in regions_of(segmentation):
        for kind, node in zip(("probability", "uncertainty"), results.output_volumes(segmentation, region)):
            if node is not None and node.GetImageData() is not None:
                stamps[output_key(kind, region)] = node.GetImageData().GetMTime()
    return stamps


def note_record_maps(segmentation, current: bool) -> None:
    """Remember (``current``: the result's volumes equal its run record's maps) or forget the modification times
    of the result's probability and uncertainty image data; see the module docstring."""
    segmentation.SetAttribute(MAPS_ATTRIBUTE, json.dumps(_image_stamps(segmentation) if current else {}))


def _unchanged_maps(segmentation) -> set[str]:
    """Output keys of the volumes unchanged since :func:`note_record_maps` remembered them."""
    remembered = json.loads(segmentation.GetAttribute(MAPS_ATTRIBUTE) or "{}")
    return {key for key, stamp in _image_stamps(segmentation).items() if remembered.get(key) == stamp}


def marked_tumour(record: Path | None, reference) -> np.ndarray | None:
    """(KJI) bool on ``reference``'s grid: the voxels the run record's guidance marks as tumour (the voxel of each
    include point, every stroke painted 1), whose whole-tumour components the component rule keeps; None when
    there are none."""
    if record is None or not (record / GUIDANCE).is_file():
        return None
    marked = np.zeros(tuple(reversed(geometry.dimensions(reference))), dtype=bool)
    to_ijk = np.linalg.inv(geometry.ijk_to_ras(reference))
    for point in json.loads((record / GUIDANCE).read_text(encoding="utf-8")).get("points", []):
        if point.get("kind") == "include":
            i, j, k = np.rint(to_ijk @ np.array([*point["ras_mm"], 1.0]))[:3].astype(int)
            if all(0 <= v < n for v, n in zip((k, j, i), marked.shape)):
                marked[k, j, i] = True
    for strokes in record.glob("strokes_*.nii.gz"):
        marked |= volumeio.array_kji(volumeio.read_nifti(strokes)) == 1
    return marked if marked.any() else None


def entropy_bits(probability: np.ndarray) -> np.ndarray:
    """Binary entropy (bits, float32 in [0, 1]) of the members' mean, the engine's definition for binary members.
    Computed only where 0 < p < 1 (a small part of a volume; elsewhere it is 0): the whole volume in float64 took
    two seconds of every refinement."""
    p = np.asarray(probability)
    entropy = np.zeros(p.shape, dtype=np.float32)
    open_ = (p > 0) & (p < 1)
    q = p[open_].astype(np.float64)
    entropy[open_] = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return entropy


def stage_previous(segmentation, record: Path, folder: Path) -> Path:
    """Write the result as it is in the scene into ``folder`` (created) as a ``--previous`` folder; see the
    module docstring. Reads the scene, changes nothing in it."""
    folder.mkdir(parents=True)
    for path in record.iterdir():
        shutil.copy2(path, folder / path.name)
    regions = regions_of(segmentation)
    reference = segmentation.GetNodeReference(results.INPUT_REFERENCE)
    matrix = geometry.ijk_to_ras(reference)
    unchanged = _unchanged_maps(segmentation)
    for region in regions:
        probability, uncertainty = results.output_volumes(segmentation, region)
        for kind, node in (("probability", probability), ("uncertainty", uncertainty), ("entropy", probability)):
            key = output_key(kind, region)
            if output_key("probability" if kind == "entropy" else kind, region) in unchanged and \
                    (folder / f"{key}.nii.gz").is_file():
                continue  # the record's copy is what the scene holds
            values = volumeio.array_kji(node)
            values = entropy_bits(values) if kind == "entropy" else values
            volumeio.write_nifti(volumeio.image_from_array(values.astype(np.float32)), matrix, folder / f"{key}.nii.gz")
    labels = segments.read_label_map(segmentation, matrix, geometry.dimensions(reference), regions)
    volumeio.write_nifti(volumeio.image_from_array(labels), matrix, folder / LABELS)
    attributes = {name: segmentation.GetAttribute(name) for name in segmentation.GetAttributeNames()
                  if name.startswith("DiffSeg.")}
    (folder / ATTRIBUTES).write_text(json.dumps(attributes, indent=2), encoding="utf-8")
    return folder


def load_undo(folder: Path, reference) -> tuple[results.EngineOutputs, dict[str, str]]:
    """The staged result in an undo folder as detached nodes, and its ``DiffSeg.*`` attributes.

    :raises OSError: a file is missing or not on ``reference``'s grid.
    """
    attributes = json.loads((folder / ATTRIBUTES).read_text(encoding="utf-8"))
    regions = tuple(attributes.get("DiffSeg.Regions", "wt").split(","))
    outputs = {"segmentation": str(folder / LABELS), "summary": str(folder / SUMMARY)}
    for region in regions:
        for kind in ("probability", "uncertainty"):
            outputs[output_key(kind, region)] = str(folder / f"{output_key(kind, region)}.nii.gz")
    return results.load_engine_outputs(outputs, reference), attributes
