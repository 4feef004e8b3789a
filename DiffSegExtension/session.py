"""What an engine that stays between runs keeps in memory (the Slicer module's waiting engine, ``__main__``).

A ``refine`` click in Slicer spent about 2 s of its engine time redoing what the run before had just had in
memory: loading the model's weights and the previous result's maps (nine gzipped volumes for a region model),
and normalising the whole case again. With :func:`enable` (once per process) the engine keeps

- the model it loaded last (checked against its files' sizes and modification times);
- the last whole-case preparation (every brain slice), keyed by a digest of the case's images and the
  preparation's settings: a refinement of the same images takes its slices from it;
- the maps of the last result it wrote, keyed by the digest of the files it wrote. A later ``refine --previous``
  whose map files have the same bytes (the module stages copies of them) takes those arrays instead of
  decompressing the files; any other folder (an undo, a result the module wrote from the scene after a change)
  is read from its files. The maps are handed over, not copied: a refinement updates them in place, and its
  own result is remembered next.

Off (a plain ``diffseg`` process), nothing is kept.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from DiffSegExtension.config import PreprocessConfig
from DiffSegExtension.data.loading import Case
from DiffSegExtension.data.preparation import PreparedVolume, kept_positions, prepare_volume
from DiffSegExtension.model_card import LoadedModel, load_model, resolve_model

_enabled = False
_model: tuple[tuple, LoadedModel] | None = None
_prepared: tuple[tuple, PreparedVolume] | None = None
_last_maps: tuple[tuple, dict[str, np.ndarray]] | None = None


def enable(on: bool = True) -> None:
    """Keep the model, the case's preparation and the last result between the runs of this process (``on``), or
    stop and forget them."""
    global _enabled, _model, _prepared, _last_maps
    _enabled = on
    if not on:
        _model = _prepared = _last_maps = None


def model(name_or_path: str | Path) -> LoadedModel:
    """:func:`~DiffSegExtension.model_card.load_model` (on the CPU), or the one loaded before from the same, unchanged
    files."""
    global _model
    if not _enabled:
        return load_model(name_or_path, device="cpu")
    folder = resolve_model(name_or_path)
    key = (str(folder.resolve()), *(_stat(path) for path in sorted(folder.iterdir()) if path.is_file()))
    if _model is None or _model[0] != key:  # one model at a time: another one replaces it
        _model = (key, load_model(folder, device="cpu"))
    return _model[1]


def prepared_volume(case: Case, modalities: Sequence[str], preprocess: PreprocessConfig, size_multiple: int, *,
                    regions: Sequence[str], optional: Sequence[str], slice_range: tuple[int, int] | None = None,
                    keep: Sequence[int] | None = None) -> PreparedVolume:
    """:func:`~DiffSegExtension.data.preparation.prepare_volume`; every slice's preparation (no ``slice_range``) is
    kept, and ``keep`` on the same images is then its selection (equal to preparing those slices alone)."""
    global _prepared
    build = partial(prepare_volume, case, modalities, preprocess, size_multiple, slice_range=slice_range,
                    regions=regions, optional=optional)
    if not _enabled or slice_range is not None:
        return build(keep=keep)
    key = (_case_digest(case), tuple(modalities), repr(preprocess), size_multiple, tuple(regions), tuple(optional))
    if _prepared is not None and _prepared[0] == key:
        full = _prepared[1]
        return full if keep is None else full.select(kept_positions(case.name, full.frame, full._canonical_slices,
                                                                     keep))
    if keep is not None:
        return build(keep=keep)  # preparing every slice would cost this run more than it saves
    full = build()
    _prepared = (key, full)
    return full


def remember_maps(files: dict[str, list[Path]], maps: dict[str, np.ndarray]) -> None:
    """After writing a result: ``maps`` (kind → (R, ...) float32) are what ``files`` (kind → R paths) hold."""
    global _last_maps
    if _enabled:
        _last_maps = (_digest(files), maps)


def take_maps(files: dict[str, list[Path]]) -> dict[str, np.ndarray] | None:
    """The remembered maps if ``files`` hold exactly the bytes written with them (then forgotten: the caller owns
    them), else None."""
    global _last_maps
    if not _enabled or _last_maps is None or _last_maps[0] != _digest(files):
        return None
    maps, _last_maps = _last_maps[1], None
    return maps


def _case_digest(case: Case) -> tuple:
    """The case's name, grid and a SHA-256 of each image's (and the label's) voxels."""
    arrays = {**case.images, **({"label": case.label_map} if case.label_map is not None else {})}
    return (case.name, case.affine.tobytes(), *((name, array.shape, str(array.dtype), _array_digest(array))
                                                for name, array in sorted(arrays.items())))


def _array_digest(array: np.ndarray) -> str:
    flat = array if array.flags.c_contiguous else array.T if array.flags.f_contiguous else np.ascontiguousarray(array)
    return hashlib.sha256(memoryview(flat).cast("B")).hexdigest()


def _stat(path: Path) -> tuple:
    stat = path.stat()
    return path.name, stat.st_size, stat.st_mtime_ns


def _digest(files: dict[str, list[Path]]) -> tuple:
    """(kind, file digest) pairs; a missing file makes the key unique (nothing matches it)."""
    def one(path: Path) -> str:
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return f"missing:{path}"
    return tuple((kind, one(path)) for kind in sorted(files) for path in files[kind])

