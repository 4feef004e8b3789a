"""Write a :class:`Segmentation` as NIfTI files in exactly the input's geometry, atomically."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from DiffSegExtension import __version__
from DiffSegExtension.atomic import atomic_directory
from DiffSegExtension.data.loading import Case
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.overview import render_overview
from DiffSegExtension.inference.segment import Segmentation

OUTPUT_FILES = {
    "segmentation": "segmentation.nii.gz",
    "probability": "probability.nii.gz",
    "uncertainty": "uncertainty.nii.gz",
    "entropy": "entropy.nii.gz",
    "overview": "overview.png",
    "summary": "summary.json",
}


def check_output_folder(out_dir: Path, overwrite: bool) -> None:
    if Path(out_dir).exists() and not overwrite:
        raise DiffSegInputError(f"output folder {out_dir} already exists: choose another --out or add --overwrite")


def like_reference(data: np.ndarray, case: Case, dtype) -> nib.Nifti1Image:
    """A NIfTI image with the reference's affine, qform/sform codes and shape (2D inputs stay 2D)."""
    reference = case.reference
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype).reshape(reference.shape), reference.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    return image


def write_outputs(seg: Segmentation, case: Case, out_dir: Path, model_summary: dict, overwrite: bool = False) -> dict[str, str]:
    """Write all outputs into ``out_dir`` at once (a temp folder renamed into place); return their paths."""
    out_dir = Path(out_dir)
    check_output_folder(out_dir, overwrite)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        nib.save(like_reference(seg.mask, case, np.uint8), tmp / OUTPUT_FILES["segmentation"])
        for name in ("probability", "uncertainty", "entropy"):
            nib.save(like_reference(getattr(seg, name), case, np.float32), tmp / OUTPUT_FILES[name])
        render_overview(tmp / OUTPUT_FILES["overview"], seg, title=f"{case.name} — {model_summary.get('name', '')}")
        summary = {"case": case.name, "model": model_summary, "diffseg_version": __version__, **seg.summary(),
                   "tumour_voxels": int(seg.mask.sum()),
                   "tumour_volume_ml": float(seg.mask.sum() * abs(np.linalg.det(case.affine[:3, :3])) / 1000.0)}
        (tmp / OUTPUT_FILES["summary"]).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return {name: str(out_dir / file) for name, file in OUTPUT_FILES.items()}
