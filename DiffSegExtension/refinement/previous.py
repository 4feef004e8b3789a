"""Read an earlier ``segment`` / ``refine`` output folder as the starting point of a refinement."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from DiffSegExtension import session
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.resample import sub_grid_box
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.outputs import map_paths
from DiffSegExtension.model_card import CARD_FILE, bundled_models_dir
from DiffSegExtension.refinement.guidance import Guidance
from DiffSegExtension.refinement.record import read_guidance


@dataclass
class PreviousResult:
    """``maps``: kind (probability / uncertainty / entropy) → (R, *case shape) float32, exactly as written (a
    cropped map, ``--crop-outputs``, is zero outside its box);
    ``guidance``: what was applied so far (empty after ``segment``)."""

    folder: Path
    summary: dict
    maps: dict[str, np.ndarray]
    guidance: Guidance


def read_summary(folder: Path) -> dict:
    """``summary.json`` of an output folder, or one clear error."""
    summary_path = Path(folder) / "summary.json"
    if not summary_path.is_file():
        raise DiffSegInputError(f"--previous {folder} is not a DiffSeg output folder (no summary.json): give the "
                                "folder `diffseg segment` or `diffseg refine` wrote")
    try:
        return json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DiffSegInputError(f"{summary_path} is not valid JSON ({err}): give an intact output folder") from err


def previous_model(folder: Path) -> str:
    """The model that wrote ``folder``: its model folder if it is still there, else the bundled model of that name."""
    model = read_summary(folder).get("model") or {}
    written_by = model.get("folder")
    if written_by and (Path(written_by) / CARD_FILE).is_file():
        return written_by
    if model.get("name") and (bundled_models_dir() / model["name"] / CARD_FILE).is_file():
        return model["name"]
    raise DiffSegInputError(f"--previous {folder} was written by model '{model.get('name')}', which is not found here: "
                            "give it with --model")


def load_previous(folder: Path, case: Case, regions: tuple[str, ...]) -> PreviousResult:
    """The result in ``folder``; it must be of ``case`` (same name and grid) and of a model with ``regions``."""
    folder = Path(folder)
    summary = read_summary(folder)
    if summary.get("case") != case.name:
        raise DiffSegInputError(f"--previous {folder} holds case '{summary.get('case')}', the input is case "
                                f"'{case.name}': give the folder written for this case")
    if tuple(summary.get("regions", {})) != tuple(regions):
        raise DiffSegInputError(f"--previous {folder} has regions {list(summary.get('regions', {}))}, the model has "
                                f"{list(regions)}: refine with the model that wrote it")
    paths = map_paths(folder, tuple(regions))
    images = {kind: [_map_image(path, case) for path in kind_paths] for kind, kind_paths in paths.items()}
    maps = session.take_maps(paths) or {kind: np.stack([_on_case_grid(*image, case) for image in kind_images])
                                        for kind, kind_images in images.items()}
    return PreviousResult(folder, summary, maps, read_guidance(folder, case))


def _map_image(path: Path, case: Case) -> tuple[nib.Nifti1Image, tuple[slice, ...]]:
    """The map file's image (header read, data not yet) and the box of the case's grid it covers: the whole grid,
    or a box of it (``--crop-outputs``)."""
    if not path.is_file():
        raise DiffSegInputError(f"--previous folder lacks {path.name}: give a complete output folder")
    image = nib.load(str(path))
    box = sub_grid_box(image.shape, image.affine, case.shape, case.affine)
    if box is None:
        raise DiffSegInputError(f"--previous {path} is on another grid ({'×'.join(map(str, image.shape))} voxels) than "
                                f"the input ({'×'.join(map(str, case.shape))}): give the folder written for these images")
    return image, box


def _on_case_grid(image: nib.Nifti1Image, box: tuple[slice, ...], case: Case) -> np.ndarray:
    """The map's voxels on the case's whole grid (*shape) float32, zero outside ``box``."""
    data = np.asarray(image.dataobj, dtype=np.float32).reshape(tuple(s.stop - s.start for s in box))
    if data.shape == tuple(case.shape):
        return data
    full = np.zeros(case.shape, dtype=np.float32)
    full[box] = data
    return full
