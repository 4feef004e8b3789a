"""Write a :class:`Segmentation` as NIfTI files in exactly the input's geometry, atomically."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
from scipy import ndimage

from DiffSegExtension import __version__, session
from DiffSegExtension.atomic import atomic_directory
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.resample import box_affine
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.overview import render_overview
from DiffSegExtension.inference.segment import MAP_KINDS, Segmentation
from DiffSegExtension.parallel_io import map_files
from DiffSegExtension.regions import QUBRATS_NAMES, output_labels

OUTPUT_FILES = {
    "segmentation": "segmentation.nii.gz",
    "probability": "probability.nii.gz",
    "uncertainty": "uncertainty.nii.gz",
    "entropy": "entropy.nii.gz",
    "overview": "overview.png",
    "summary": "summary.json",
}


def region_output_files(regions: tuple[str, ...]) -> dict[str, str]:
    """Output name → file for a model with ``regions``: the WT maps as ``probability.nii.gz`` …, the inner
    regions' as ``probability_tc.nii.gz`` … (key ``probability_tc`` …)."""
    files = dict(OUTPUT_FILES)
    for region in regions[1:]:
        files.update({f"{kind}_{region}": f"{kind}_{region}.nii.gz" for kind in MAP_KINDS})
    return files


def map_output_name(kind: str, index: int, region: str) -> str:
    """The output name of the ``kind`` map of the region at ``index``: the whole tumour's (first) is ``kind``."""
    return kind if index == 0 else f"{kind}_{region}"


def map_paths(folder: Path, regions: tuple[str, ...]) -> dict[str, list[Path]]:
    """kind (:data:`MAP_KINDS`) → the R files of an output folder that hold it, region by region."""
    files = region_output_files(regions)
    return {kind: [Path(folder) / files[map_output_name(kind, i, r)] for i, r in enumerate(regions)]
            for kind in MAP_KINDS}


def qubrats_uncertainty(seg: Segmentation) -> np.ndarray:
    """(R, ...) uint8 uncertainty in the QU-BraTS format: 0 = certain … 100 = most uncertain (100 × entropy)."""
    return np.rint(np.clip(seg.entropy, 0.0, 1.0) * 100.0).astype(np.uint8)


def qubrats_files(case_name: str, regions: tuple[str, ...]) -> dict[str, str]:
    """``qubrats_<region>`` → ``<case>_unc_whole.nii.gz`` / ``_unc_core`` / ``_unc_enhance`` (the challenge's names)."""
    return {f"qubrats_{r}": f"{case_name}_unc_{QUBRATS_NAMES[r]}.nii.gz" for r in regions}


def check_output_folder(out_dir: Path, overwrite: bool) -> None:
    if Path(out_dir).exists() and not overwrite:
        raise DiffSegInputError(f"output folder {out_dir} already exists: choose another --out or add --overwrite")


def like_reference(data: np.ndarray, case: Case, dtype, box: tuple[slice, ...] | None = None) -> nib.Nifti1Image:
    """A NIfTI image with the reference's affine, qform/sform codes and shape; with ``box`` (slices of the
    reference's voxel axes) only those voxels, their affine the reference's moved to the box's first voxel, so
    every voxel keeps its place in physical space."""
    reference = case.reference
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    data, affine = np.asarray(data, dtype=dtype).reshape(reference.shape), reference.affine
    if box is not None:
        data, affine = data[box], box_affine(affine, box)
    image = nib.Nifti1Image(data, affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    return image


def content_box(seg: Segmentation) -> tuple[slice, slice, slice]:
    """The smallest box of the input grid holding every non-zero voxel of ``seg``'s outputs (a non-zero label,
    uncertainty, entropy or QU-BraTS value needs probability > 0); the first voxel alone when there is none."""
    nonzero = (seg.probability > 0).any(axis=0) | (seg.label_map > 0)
    boxes = ndimage.find_objects(nonzero.astype(np.uint8))
    return boxes[0] if boxes else (slice(0, 1),) * 3


def write_outputs(seg: Segmentation, case: Case, out_dir: Path, model_summary: dict, overwrite: bool = False,
                  qubrats: bool = False, extra_summary: dict | None = None,
                  write_extra: Callable[[Path], dict[str, str]] | None = None, overview: bool = True,
                  crop: bool = False) -> dict[str, str]:
    """Write all outputs into ``out_dir`` at once (a temp folder renamed into place); return their paths.

    The label map, per-region probability / uncertainty (variance) / entropy, the overview (unless
    ``overview`` is False) and ``summary.json`` (with each region's volume in ml); with ``qubrats`` also the
    QU-BraTS uncertainty maps. With ``crop`` every volume holds only :func:`content_box` (zero outside it),
    each on that sub-grid of the input (summary ``crop``: its first voxel and shape).
    ``extra_summary`` is added to the summary; ``write_extra(folder)`` writes more files into the folder
    being filled and returns output name → file name (e.g. the guidance of ``diffseg refine``).
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir, overwrite)
    files = region_output_files(seg.regions)
    if not overview:
        del files["overview"]
    if qubrats:
        files.update(qubrats_files(case.name, seg.regions))
    voxel_ml = abs(np.linalg.det(case.affine[:3, :3])) / 1000.0
    volumes = [(seg.label_map, np.uint8, "segmentation")]
    for i, region in enumerate(seg.regions):
        volumes += [(getattr(seg, kind)[i], np.float32, map_output_name(kind, i, region)) for kind in MAP_KINDS]
    if qubrats:
        volumes += [(volume, np.uint8, f"qubrats_{region}") for region, volume in zip(seg.regions, qubrats_uncertainty(seg))]
    box = content_box(seg) if crop else None
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        # The overview first: drawn while the other thread compresses the maps.
        jobs = [partial(render_overview, tmp / files["overview"], seg,
                        title=f"{case.name} — {model_summary.get('name', '')}")] if overview else []
        jobs += [partial(nib.save, like_reference(data, case, dtype, box), tmp / files[name])
                 for data, dtype, name in volumes]
        map_files(lambda job: job(), jobs)
        if write_extra is not None:
            files.update(write_extra(tmp))
        summary = {"case": case.name, "model": model_summary, "diffseg_version": __version__,
                   **seg.summary(voxel_ml), "output_labels": {str(k): v for k, v in output_labels(seg.regions).items()},
                   "files": files,
                   # Kept for readers of earlier summaries: the whole tumour.
                   "tumour_voxels": int(seg.mask[0].sum()), "tumour_volume_ml": float(seg.mask[0].sum() * voxel_ml),
                   **({"crop": {"first_voxel": [s.start for s in box], "shape": [s.stop - s.start for s in box]}}
                      if box else {}),
                   **(extra_summary or {})}
        (tmp / files["summary"]).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    session.remember_maps(map_paths(out_dir, seg.regions), {kind: np.asarray(getattr(seg, kind), dtype=np.float32)
                                                               for kind in MAP_KINDS})
    return {name: str(out_dir / file) for name, file in files.items()}
