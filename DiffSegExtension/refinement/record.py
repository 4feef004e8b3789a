"""Guidance on disk: the strokes file a user gives, and the accumulated guidance an output folder records.

An output folder of ``diffseg refine`` holds ``guidance.json`` (the points, in order, and which stroke
volumes exist) and one ``strokes_<region>.nii.gz`` per painted region (uint8 on the input grid:
1 inside, 2 not inside). Refining again from that folder starts from this guidance.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.resample import same_grid
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.outputs import like_reference
from DiffSegExtension.refinement.guidance import Guidance, Point

GUIDANCE_FILE = "guidance.json"


def stroke_file(region: str) -> str:
    return f"strokes_{region}.nii.gz"


def load_strokes(path: Path, case: Case, what: str = "--strokes") -> np.ndarray:
    """A stroke label volume (uint8, the case's shape) from ``path``; it must lie on the case's grid."""
    path = Path(path)
    if not path.is_file():
        raise DiffSegInputError(f"{what} file {path} does not exist: check the path")
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as err:  # nibabel raises many types for bad files
        raise DiffSegInputError(f"{what} file {path} is not a readable NIfTI image ({err}): give a .nii.gz label volume") from err
    data = data.reshape(data.shape[:3]) if data.ndim > 3 and all(n == 1 for n in data.shape[3:]) else data
    if not same_grid(data.shape, image.affine, case.shape, case.affine):
        raise DiffSegInputError(f"{what} file {path} ({'×'.join(map(str, data.shape))} voxels) is not on the input's grid "
                                f"({'×'.join(map(str, case.shape))}, same affine): paint the labels on the input volume")
    values = set(np.unique(data).tolist())
    if not values <= {0, 1, 2}:
        raise DiffSegInputError(f"{what} file {path} has labels {sorted(values)}: use 1 = region, 2 = not region, 0 = unpainted")
    return data.astype(np.uint8)


def write_guidance(folder: Path, guidance: Guidance, case: Case) -> dict[str, str]:
    """Write ``guidance.json`` and the stroke volumes (the case's geometry) into ``folder``; return output
    name → file name."""
    files = {"guidance": GUIDANCE_FILE}
    for region, paint in guidance.strokes.items():
        files[f"strokes_{region}"] = stroke_file(region)
        nib.save(like_reference(paint, case, np.uint8), Path(folder) / stroke_file(region))
    record = {"format": 1, "points": [p.to_json() for p in guidance.points],
              "strokes": {r: stroke_file(r) for r in guidance.strokes}}
    (Path(folder) / GUIDANCE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return files


def read_guidance(folder: Path, case: Case) -> Guidance:
    """The guidance recorded in an output folder (none for a ``segment`` output)."""
    path = Path(folder) / GUIDANCE_FILE
    if not path.is_file():
        return Guidance()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        points = [Point.from_json(p) for p in record["points"]]
        strokes = {r: load_strokes(Path(folder) / name, case, what="recorded stroke")
                   for r, name in record["strokes"].items()}
    except (ValueError, KeyError, TypeError) as err:
        if isinstance(err, DiffSegInputError):
            raise
        raise DiffSegInputError(f"{path} is damaged ({err}): refine from an intact output folder") from err
    return Guidance(points, strokes)
