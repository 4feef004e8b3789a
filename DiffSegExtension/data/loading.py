"""Load one case: NIfTI modality files (+ optional label) → a checked :class:`Case` on one voxel grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np

from DiffSegExtension.data.modalities import MODALITY_ALIASES, canonical_modality, case_name_from_file, find_case_files
from DiffSegExtension.data.resample import resample_to_grid, same_grid
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.parallel_io import map_files

_DISPLAY = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2", "seg": "segmentation"}


@dataclass
class Case:
    """One subject's images on a single voxel grid (the reference modality's).

    ``images``: modality → float32 array of shape ``shape``, axis order as in the reference file
    (nibabel (i, j, k)); intensities as stored in the files (not normalised).
    ``label``: uint8 whole-tumour mask {0, 1} (any label > 0), same grid, or ``None``.
    ``label_map``: the label file's integer labels (uint8, e.g. BraTS {0, 1, 2, 4}), or ``None``;
    :mod:`DiffSegExtension.regions` turns it into region masks. Left out, it is ``label`` (whole tumour only).
    ``reference``: the reference modality's NIfTI image; outputs are written with its affine/header.
    """

    name: str
    images: dict[str, np.ndarray]
    label: np.ndarray | None
    reference: nib.Nifti1Image
    label_map: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.label_map is None and self.label is not None:
            self.label_map = self.label

    @property
    def affine(self) -> np.ndarray:
        """4×4 float64 voxel (i, j, k) → RAS millimetre transform."""
        return np.asarray(self.reference.affine, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.reference.shape[:3])


def load_case(source: Path | Mapping[str, Path], modalities: Sequence[str], *, with_label: bool = False,
              allow_2d: bool = False, optional: Sequence[str] = ()) -> Case:
    """Read ``modalities`` (and the label if ``with_label``) of one case onto the first modality's grid.

    Modalities named in ``optional`` are skipped when the case has no file for them (a model trained
    with sequence drop-out does without them); every other one is required.

    ``source``: a case folder (files found by :func:`find_case_files`) or a modality → path mapping
    (keys may be aliases, e.g. ``"t1gd"``). Modalities on another grid are resampled in physical
    space (linear; nearest for the label); voxels outside their field of view get the image's minimum
    (its background). 2D files (and single-slice volumes) are refused unless ``allow_2d``; a 2D file
    then loads as shape (H, W, 1) with its affine. Every problem raises :class:`DiffSegInputError`.
    """
    wanted = _canonical_names(modalities)
    files, where = _resolve_source(source)
    skippable = set(_canonical_names(optional)) if optional else set()
    wanted = [m for m in wanted if m in files or m not in skippable]
    needed = wanted + (["seg"] if with_label else [])
    for modality in needed:
        if modality not in files:
            found = ", ".join(sorted(files)) or "no modality files"
            aliases = "/".join(MODALITY_ALIASES[modality])
            raise DiffSegInputError(f"no {_DISPLAY[modality]} file for {where} (found: {found}): add a file named "
                                    f"<case>_{modality}.nii.gz (accepted tokens: {aliases}) or pass it explicitly")

    read = dict(zip(needed, map_files(lambda m: _read(files[m], m, allow_2d), needed)))
    ref_name = wanted[0]
    reference, ref_data = read[ref_name]
    shape, affine = ref_data.shape, np.asarray(reference.affine, dtype=np.float64)
    images = {ref_name: ref_data}
    for modality in wanted[1:]:
        image, data = read[modality]
        images[modality] = _onto_reference(data, image.affine, shape, affine, files[modality], modality,
                                           files[ref_name], fill=float(data.min()))
    label = label_map = None
    if with_label:
        image, data = read["seg"]
        data = _onto_reference(data, image.affine, shape, affine, files["seg"], "seg", files[ref_name], fill=0.0)
        # Labels are integers; rounded so float label files with rounding noise still work.
        label_map = np.rint(np.clip(data, 0, 255)).astype(np.uint8)
        label = (label_map > 0).astype(np.uint8)
    name = Path(source).name if not isinstance(source, Mapping) else case_name_from_file(files[ref_name])
    return Case(name=name, images=images, label=label, reference=reference, label_map=label_map)


def _canonical_names(modalities: Sequence[str]) -> list[str]:
    if isinstance(modalities, str):
        modalities = [modalities]
    names = []
    for token in modalities:
        name = canonical_modality(token)
        if name is None or name == "seg":
            known = ", ".join(m for m in MODALITY_ALIASES if m != "seg")
            raise DiffSegInputError(f"'{token}' is not an image modality: use one of {known}")
        names.append(name)
    if not names or len(set(names)) != len(names):
        raise DiffSegInputError(f"modalities {list(modalities)} must be non-empty and distinct")
    return names


def _resolve_source(source: Path | Mapping[str, Path]) -> tuple[dict[str, Path], str]:
    if isinstance(source, Mapping):
        files: dict[str, Path] = {}
        for token, path in source.items():
            name = canonical_modality(token)
            if name is None:
                raise DiffSegInputError(f"unknown modality '{token}' for file {path}: use one of "
                                        f"{', '.join(MODALITY_ALIASES)}")
            if name in files:
                raise DiffSegInputError(f"two files given for modality '{name}' ({files[name]}, {path}): give one")
            files[name] = Path(path)
        return files, "the given files"
    folder = Path(source)
    return find_case_files(folder), f"case folder {folder}"


def _read(path: Path, modality: str, allow_2d: bool) -> tuple[nib.Nifti1Image, np.ndarray]:
    """The checked image and its float32 array (3D; 2D → (H, W, 1))."""
    what = f"{_DISPLAY[modality]} file {path}"
    if not path.is_file():
        raise DiffSegInputError(f"{what} does not exist: check the path")
    try:
        image = nib.load(str(path))
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise TypeError(f"it is a {type(image).__name__}")
        raw = np.asarray(image.dataobj)
    except Exception as err:  # nibabel raises many types for bad files (ImageFileError, EOFError, zlib.error...)
        raise DiffSegInputError(f"{what} is not a readable NIfTI image ({err}): give a .nii or .nii.gz volume") from err
    if raw.dtype.fields is not None or not np.issubdtype(raw.dtype, np.number):
        raise DiffSegInputError(f"{what} has voxel type {raw.dtype} (e.g. RGB): give a scalar (grey-value) volume")
    size = "×".join(str(n) for n in raw.shape)
    data = raw
    while data.ndim > 3 and data.shape[-1] == 1:  # trailing singleton time/component axes
        data = data[..., 0]
    if data.ndim > 3:
        raise DiffSegInputError(f"{what} is {data.ndim}D ({size}); give a single 3D volume")
    if data.ndim < 2:
        raise DiffSegInputError(f"{what} is {data.ndim}D ({size}); give a 3D volume")
    if data.ndim == 2 or min(data.shape) == 1:
        if not allow_2d:
            raise DiffSegInputError(f"{what} is a 2D image ({size}); give a 3D volume "
                                    "(2D slices load only with allow_2d=True)")
        if data.ndim == 2:
            data = data[:, :, np.newaxis]
    data = np.asarray(data, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise DiffSegInputError(f"{what} has {bad} NaN/infinite voxels; replace them (e.g. by 0) and save again")
    if modality != "seg" and data.min() == data.max():
        raise DiffSegInputError(f"{what} is constant (every voxel is {data.flat[0]:g}): it holds no image; "
                                "give the right file")
    if abs(np.linalg.det(image.affine[:3, :3])) < 1e-12:
        raise DiffSegInputError(f"{what} has a degenerate affine (zero voxel size or collinear axes): fix its "
                                "header (pixdim / sform)")
    if data.shape != image.shape or not isinstance(image, nib.Nifti1Image):
        # Keep header and affine, but with the shape the arrays have, so outputs can be written with it.
        image = nib.Nifti1Image(data, image.affine, nib.Nifti1Header.from_header(image.header))
    return image, data


def _onto_reference(data: np.ndarray, affine: np.ndarray, ref_shape: tuple[int, ...], ref_affine: np.ndarray,
                    path: Path, modality: str, ref_path: Path, fill: float) -> np.ndarray:
    if same_grid(data.shape, affine, ref_shape, ref_affine):
        return data
    out = resample_to_grid(data, affine, ref_shape, ref_affine, nearest=(modality == "seg"))
    inside = np.isfinite(out)
    if not inside.any():
        raise DiffSegInputError(
            f"{_DISPLAY[modality]} file {path} does not overlap the reference image {ref_path} in physical space "
            f"(it spans {_world_box(data.shape, affine)} mm, the reference {_world_box(ref_shape, ref_affine)} mm, "
            "RAS): give images of the same scan, or fix their affines")
    out[~inside] = fill
    return out


def _world_box(shape: tuple[int, ...], affine: np.ndarray) -> str:
    last = [n - 1 for n in shape[:3]]
    corners = np.array([[i, j, k, 1.0] for i in (0, last[0]) for j in (0, last[1]) for k in (0, last[2])])
    world = (np.asarray(affine) @ corners.T)[:3]
    return "×".join(f"[{lo:.0f}, {hi:.0f}]" for lo, hi in zip(world.min(axis=1), world.max(axis=1)))
