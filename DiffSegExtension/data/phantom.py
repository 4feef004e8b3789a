"""A procedural brain-tumour MRI phantom: FLAIR/T1/T1ce/T2-like volumes with BraTS labels.

The anatomy is built in world millimetres (head upright: +z superior) and sampled on a voxel grid
whose affine may be flipped (RAS, LPS, ...) and oblique, so code that uses the phantom must go
through the affine. Content: a skull-stripped, lumpy brain ellipsoid; cortex folded by sulci; white
matter; deep grey nuclei; lateral ventricles with choroid plexus; a midline fissure; optional
white-matter hyperintensities (tumour look-alikes in FLAIR/T2); and an irregular tumour — necrotic
core (label 1), enhancing rim (4) and edema (2) whose FLAIR/T2 signal fades towards its border.
Intensities are raw-scanner-like (background 0, brain ~100…2000) with a smooth multiplicative bias
field and Rician noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.phantom_fields import blur, ellipsoid_radius, random_rotation, smooth_noise
from DiffSegExtension.errors import DiffSegInputError

#: Relative mean signal per tissue (white matter in T1 = 1), before per-phantom jitter and gain.
#: Orders follow clinical appearance: T1 WM > GM > CSF; T2 CSF brightest; FLAIR CSF dark;
#: T1ce: enhancing rim and choroid plexus bright, necrosis dark; edema bright in FLAIR and T2.
_TISSUE_ORDER = ("csf", "gm", "wm", "deep_gm", "necrosis", "rim", "edema", "choroid", "wmh")
CONTRASTS: dict[str, dict[str, float]] = {
    modality: dict(zip(_TISSUE_ORDER, values)) for modality, values in {
        #        csf   gm    wm    deep  necr  rim   edema chor  wmh
        "t1":   (0.30, 0.66, 1.00, 0.78, 0.38, 0.72, 0.60, 0.60, 0.80),
        "t1ce": (0.28, 0.64, 0.96, 0.76, 0.32, 1.55, 0.58, 1.50, 0.78),
        "t2":   (1.90, 0.98, 0.70, 0.85, 1.75, 1.12, 1.40, 1.20, 1.25),
        "flair": (0.22, 0.92, 0.72, 0.85, 0.55, 1.05, 1.45, 0.55, 1.30),
    }.items()
}
#: Healthy tissue classes; ``Phantom.tissue`` holds 1 + their index (0 = background).
TISSUES = ("csf", "gm", "wm", "deep_gm", "choroid", "wmh")


@dataclass
class Phantom:
    """``images``: modality → float32 (shape), raw-scanner-like, background exactly 0.
    ``label``: uint8 BraTS labels {0, 1 necrotic core, 2 edema, 4 enhancing rim}, same grid.
    ``affine``: 4×4 voxel (i, j, k) → RAS mm. ``tissue``: uint8 dominant healthy tissue per voxel
    (0 background, else 1 + index in :data:`TISSUES`; tumour voxels keep the tissue they replaced)."""

    images: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray
    tissue: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.label.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def has_tumour(self) -> bool:
        return bool(self.label.any())

    def to_case(self, name: str = "phantom") -> Case:
        """The phantom as a loaded :class:`Case` (whole-tumour label and BraTS label map), without writing files."""
        first = next(iter(self.images))
        reference = nib.Nifti1Image(self.images[first], self.affine)
        return Case(name=name, images={m: v.copy() for m, v in self.images.items()},
                    label=(self.label > 0).astype(np.uint8), reference=reference, label_map=self.label.copy())


def make_phantom(seed: int, shape: tuple[int, int, int] = (96, 96, 64),
                 spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), oblique: bool = False,
                 modalities: Sequence[str] = ("flair", "t1", "t1ce", "t2"),
                 tumour_probability: float = 1.0) -> Phantom:
    """A random phantom; the same arguments always give the same phantom.

    ``shape``/``spacing``: voxel grid (voxels, mm). The brain fills ~80 % of the field of view along
    each axis; the tumour's whole extent (edema included) is 8–35 mm. ``oblique``: rotate the grid
    10–25° about two world axes. The voxel-axis flips (RAS, LPS, LAI, ...) and the origin vary with
    ``seed``. ``tumour_probability``: chance that the phantom has a tumour (0 → always tumour-free).
    """
    unknown = [m for m in modalities if m not in CONTRASTS]
    if unknown or not modalities:
        raise DiffSegInputError(f"phantom modalities {list(modalities)} are invalid: choose from {list(CONTRASTS)}")
    if len(shape) != 3 or min(shape) < 8:
        raise DiffSegInputError(f"phantom shape {shape} is invalid: give three sizes of at least 8 voxels")
    if seed < 0:
        raise DiffSegInputError(f"phantom seed {seed} is negative: give a seed >= 0")
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in shape)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    affine = _affine(rng, shape, spacing_arr, oblique)
    # World coordinates (mm, RAS, relative to the field-of-view centre) of every voxel: (3, *shape).
    index = np.indices(shape, dtype=np.float64).reshape(3, -1) - (np.asarray(shape)[:, None] - 1) / 2
    p = (affine[:3, :3] @ index).reshape(3, *shape)

    semi = _brain_semi_axes(rng, affine, shape, spacing_arr)
    noise = lambda sigma: smooth_noise(rng, shape, spacing_arr, sigma)  # noqa: E731
    frac, brain = _healthy_tissues(rng, p, semi, noise, spacing_arr)
    tumour = _tumour(rng, p, semi, brain, frac["wm"], noise) if rng.random() < tumour_probability else None
    label = np.zeros(shape, dtype=np.uint8)
    if tumour is not None:
        label[tumour["edema"]] = 2
        label[tumour["rim"]] = 4
        label[tumour["necrosis"]] = 1
        label[~brain] = 0

    texture = 1.0 + 0.035 * noise(1.2)
    tumour_texture = 1.0 + 0.10 * noise(2.0)
    soft = {k: blur(v.astype(np.float64), spacing_arr, 0.5) for k, v in (tumour or {}).items() if k != "fade"}
    images = {}
    for modality in modalities:
        # Own stream per modality: a modality's image does not depend on which others are asked for.
        mrng = np.random.default_rng([seed, 1 + list(CONTRASTS).index(modality)])
        c = {k: v * mrng.uniform(0.93, 1.07) for k, v in CONTRASTS[modality].items()}
        healthy = sum(frac[t] * c[t] for t in TISSUES)
        signal = healthy
        if tumour is not None:
            core = soft["necrosis"] + soft["rim"]
            lesion = tumour_texture * (soft["necrosis"] * c["necrosis"] + soft["rim"] * c["rim"])
            signal = healthy * (1.0 - core) + lesion + soft["edema"] * tumour["fade"] * (c["edema"] - healthy)
        gain = mrng.uniform(350.0, 1100.0)
        bias = np.exp(0.12 * smooth_noise(mrng, shape, spacing_arr, 35.0))
        clean = gain * signal * texture * bias
        sigma = 0.025 * gain
        noisy = np.hypot(clean + sigma * mrng.standard_normal(shape), sigma * mrng.standard_normal(shape))
        image = np.where(brain, np.maximum(np.rint(noisy), 1.0), 0.0)  # skull-stripped: background exactly 0
        images[modality] = image.astype(np.float32)
    tissue = np.where(brain, 1 + np.argmax(np.stack([frac[t] for t in TISSUES]), axis=0), 0).astype(np.uint8)
    return Phantom(images=images, label=label, affine=affine, tissue=tissue)


def write_phantom_case(out_dir: Path, name: str, phantom: Phantom) -> Path:
    """Write ``<out_dir>/<name>/<name>_<modality>.nii.gz`` and ``<name>_seg.nii.gz``; return the folder.

    Each file is written under a hidden temporary name in the same folder, then renamed (atomic).
    """
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    arrays = dict(phantom.images, seg=phantom.label)
    for modality, array in arrays.items():
        image = nib.Nifti1Image(array, phantom.affine)
        image.set_qform(phantom.affine, code=1)
        image.set_sform(phantom.affine, code=1)
        image.header.set_xyzt_units("mm")
        final = folder / f"{name}_{modality}.nii.gz"
        temporary = folder / f".{name}_{modality}.{os.getpid()}.tmp.nii.gz"
        try:
            nib.save(image, str(temporary))
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
    return folder


def write_phantom_dataset(root: Path, seeds: Sequence[int], vary_geometry: bool = True,
                          tumour_probability: float = 0.9) -> list[Path]:
    """Write one phantom case per seed (``<root>/phantom<seed>/``) for training and validation.

    Odd seeds are oblique; a share ``1 − tumour_probability`` has no tumour. With ``vary_geometry``
    each seed also draws its grid: 64–112 voxels in-plane at 0.9–1.25 mm (a 58–140 mm field of view,
    so brain sizes vary), 1–2.5 mm slices over ~70 % of that extent; otherwise the default grid.
    Existing case folders are kept, so an interrupted dataset is completed, not rewritten.
    """
    folders = []
    for seed in seeds:
        folder = Path(root) / f"phantom{seed}"
        if not folder.exists():
            geometry = {}
            if vary_geometry:
                rng = np.random.default_rng([seed, 99])
                size, pixel, thickness = int(rng.integers(64, 113)), float(rng.uniform(0.9, 1.25)), float(rng.uniform(1.0, 2.5))
                geometry = {"shape": (size, size, max(16, round(0.7 * size * pixel / thickness))),
                            "spacing": (pixel, pixel, thickness)}
            phantom = make_phantom(seed, oblique=seed % 2 == 1, tumour_probability=tumour_probability, **geometry)
            write_phantom_case(root, folder.name, phantom)
        folders.append(folder)
    return folders


def _affine(rng: np.random.Generator, shape: tuple[int, ...], spacing: np.ndarray, oblique: bool) -> np.ndarray:
    flips = rng.choice([-1.0, 1.0], size=3)
    rotation = random_rotation(rng, degrees=(10.0, 25.0)) if oblique else np.eye(3)
    linear = rotation @ np.diag(flips * spacing)
    centre_world = rng.uniform(-30.0, 30.0, size=3)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = centre_world - linear @ ((np.asarray(shape) - 1) / 2)
    return affine


def _brain_semi_axes(rng: np.random.Generator, affine: np.ndarray, shape: tuple[int, ...],
                     spacing: np.ndarray) -> np.ndarray:
    """World-axis (x, y, z) semi-axes (mm) of the brain ellipsoid, small enough to fit the rotated grid."""
    extent = np.asarray(shape) * spacing
    directions = affine[:3, :3] / spacing  # column i: world direction of voxel axis i
    world_axis = np.argmax(np.abs(directions), axis=0)  # the world axis each voxel axis is closest to
    semi = np.empty(3)
    semi[world_axis] = 0.40 * extent
    semi *= rng.uniform(0.94, 1.0, size=3) * np.array([0.95, 1.0, 0.92])
    half_width = np.sqrt(((semi[:, None] * directions) ** 2).sum(axis=0))  # ellipsoid's reach along each voxel axis
    return semi * min(1.0, float(np.min(0.46 * extent / half_width)))


def _healthy_tissues(rng, p, semi, noise, spacing):
    """Soft tissue fractions (sum 1 inside the brain) and the hard brain mask."""
    x, y, z = p
    r = ellipsoid_radius(p, semi)
    scale = float(np.mean(semi))
    brain = r < 1.0 + 0.035 * noise(10.0)
    depth = (1.0 - r) * scale  # ≈ mm below the brain surface
    # Sulci: thin sheets along the zero set of a smooth field; the cortex lines them and the surface.
    sulcus_field = noise(3.0)
    sulcus = (np.abs(sulcus_field) < 0.12) & (depth < 9.0)
    fissure = (np.abs(x) < 0.8) & ((z > 0.2 * semi[2]) | (np.abs(y) > 0.55 * semi[1]))
    cortex = (depth < 3.5) | ((np.abs(sulcus_field) < 0.75) & (depth < 12.0))
    bend = 0.30 * semi[2] * (y / semi[1]) ** 2  # ventricles curve down at both ends
    ventricle = np.zeros(p.shape[1:], dtype=bool)
    choroid = np.zeros(p.shape[1:], dtype=bool)
    deep_gm = np.zeros(p.shape[1:], dtype=bool)
    for side in (-1.0, 1.0):
        centre = np.array([side * 0.12 * semi[0], 0.0, 0.10 * semi[2]])
        spread = side * 0.10 * semi[0] * (y / semi[1]) ** 2  # horns diverge at both ends (butterfly)
        q = np.stack([x - centre[0] - spread, y - centre[1], z - centre[2] + bend])
        ventricle |= ellipsoid_radius(q, semi * np.array([0.10, 0.45, 0.14])) < 1.0
        q_chor = np.stack([x - centre[0], y + 0.30 * semi[1], z - centre[2] + bend])
        choroid |= ellipsoid_radius(q_chor, semi * np.array([0.04, 0.07, 0.05])) < 1.0
        q_deep = np.stack([x - side * 0.24 * semi[0], y + 0.02 * semi[1], z + 0.10 * semi[2]])
        deep_gm |= ellipsoid_radius(q_deep, semi * np.array([0.11, 0.22, 0.15])) < 1.0
    wmh = np.zeros(p.shape[1:], dtype=bool)
    for _ in range(rng.integers(0, 4)):
        centre = semi * rng.uniform(-0.45, 0.45, size=3)
        radius = rng.uniform(1.5, 3.5)
        wmh |= np.sqrt(((p - centre[:, None, None, None]) ** 2).sum(axis=0)) < radius
    csf = brain & (sulcus | fissure | ventricle | (depth < 0.6))
    choroid &= ventricle
    gm = brain & ~csf & (cortex | deep_gm)
    labels = {"csf": csf & ~choroid, "choroid": choroid, "deep_gm": gm & deep_gm & ~cortex,
              "gm": gm & ~(deep_gm & ~cortex), "wmh": brain & ~csf & ~gm & wmh}
    labels["wm"] = brain & ~csf & ~gm & ~wmh
    frac = {k: blur(v.astype(np.float64), spacing, 0.45) for k, v in labels.items()}
    total = sum(frac.values())
    frac = {k: np.where(brain, v / np.maximum(total, 1e-6), 0.0) for k, v in frac.items()}
    return frac, brain


def _tumour(rng, p, semi, brain, wm, noise):
    """Boolean maps of necrosis, enhancing rim, edema, and ``fade`` (edema signal strength 0.3…1)."""
    diameter = rng.uniform(8.0, 35.0)
    axes = 0.5 * diameter * rng.uniform(0.75, 1.0, size=3)
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    reach = np.max(axes) / np.min(semi)
    centre = semi * direction * rng.uniform(0.0, max(0.05, 0.85 - reach))
    rotation = random_rotation(rng, degrees=(0.0, 90.0))
    q = np.tensordot(rotation.T, p - centre[:, None, None, None], axes=1)
    t = ellipsoid_radius(q, axes)
    whole = t + 0.20 * noise(2.5) < 1.0 + 0.15 * (wm - 0.5)
    core_t = t + 0.15 * noise(2.0)
    core_level = rng.uniform(0.45, 0.7)
    core = core_t < core_level
    necrosis = core_t < core_level * rng.uniform(0.4, 0.7) if diameter > 14.0 else np.zeros_like(core)
    fade = np.clip(1.15 - 0.85 * np.clip(t, 0.0, 1.3), 0.3, 1.0)
    return {"necrosis": necrosis & brain, "rim": core & ~necrosis & brain, "edema": whole & ~core & brain,
            "fade": fade}
