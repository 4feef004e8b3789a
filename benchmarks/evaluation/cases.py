"""Cases for the benchmarks: find them by name under a model card's roots, drop sequences, keep a slice subset,
and name paths without revealing the machine (reports must hold no absolute path)."""

from __future__ import annotations

import os
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from DiffSegExtension.data.loading import Case, load_case
from DiffSegExtension.data.modalities import list_cases
from DiffSegExtension.data.preparation import PreparedVolume
from DiffSegExtension.errors import DiffSegInputError

REPO = Path(__file__).resolve().parent.parent.parent


def card_roots(card: dict[str, Any]) -> list[Path]:
    """The card's ``data.roots``; relative ones are relative to the repository (or, if found, the working folder)."""
    given = [Path(r) for r in (card.get("data") or {}).get("roots", [])]
    return [r if r.is_absolute() or r.exists() else REPO / r for r in given]


def case_folders(roots: Sequence[Path], names: Sequence[str]) -> list[Path]:
    """The case folders called ``names`` under ``roots`` (a root may itself be a case folder); each found once."""
    found: dict[str, list[Path]] = {}
    for root in roots:
        for path in list_cases(root):
            found.setdefault(path.name, []).append(path)
    missing = [n for n in names if n not in found]
    twice = [n for n in names if len(found.get(n, [])) > 1]
    if missing or twice:
        raise DiffSegInputError(f"cases not found ({missing}) or found twice ({twice}) under "
                                f"{[shown_path(r) for r in roots]}")
    return [found[n][0] for n in names]


def load_cases(roots: Sequence[Path], names: Sequence[str], modalities: Sequence[str],
               optional: Sequence[str] = ()) -> list[Case]:
    """Cases ``names`` with their label; ``optional`` modalities are skipped where a case lacks them."""
    return [load_case(p, modalities, with_label=True, allow_2d=True, optional=optional)
            for p in case_folders(roots, names)]


def sequence_subsets(modalities: Sequence[str], optional: Sequence[str]) -> list[tuple[str, ...]]:
    """Every input subset a model accepts: its required modalities plus each subset of the optional ones.

    In model order, smallest first (required only … all). A model without optional inputs has one subset.
    """
    required = [m for m in modalities if m not in optional]
    extra = [m for m in modalities if m in optional]
    subsets = [set(required) | set(c) for k in range(len(extra) + 1) for c in combinations(extra, k)]
    return [tuple(m for m in modalities if m in s) for s in subsets]


def with_modalities(case: Case, keep: Sequence[str]) -> Case:
    """``case`` with only the images of ``keep`` (the label and reference grid unchanged)."""
    return replace(case, images={m: v for m, v in case.images.items() if m in keep})


def slice_subset(prepared: PreparedVolume, index: Sequence[int]) -> PreparedVolume:
    """The prepared slices at positions ``index`` (ascending); :meth:`restore` puts them back where they came from."""
    index = list(index)
    if not index or index != sorted(set(index)):
        raise ValueError("slice subset: give distinct ascending positions")
    return prepared.select(index)


def restrict_label(case: Case, slice_axis: int, source_slices: Sequence[int]) -> Case:
    """``case`` with its label (and label map) zeroed outside ``source_slices`` along ``slice_axis``.

    Scoring a segmentation of a slice subset against this case scores exactly those slices.
    """
    keep = np.zeros(case.shape[slice_axis], dtype=bool)
    keep[list(source_slices)] = True
    shape = [1, 1, 1]
    shape[slice_axis] = -1
    keep = keep.reshape(shape)
    cut = lambda a: None if a is None else np.where(keep, a, 0).astype(a.dtype)  # noqa: E731
    return replace(case, label=cut(case.label), label_map=cut(case.label_map))


def shown_path(path: str | Path) -> str:
    """A path as a report may show it: relative to the repository when it lies beside it (``../shared/…``),
    else ``…/<parent>/<name>``; never this machine's absolute path."""
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    resolved = path.resolve()
    if resolved.is_relative_to(REPO.parent):
        return os.path.relpath(resolved, REPO)
    return "…/" + "/".join(resolved.parts[-2:])


def shown_argv(argv: Sequence[str]) -> list[str]:
    """Command-line arguments with every absolute path replaced by :func:`shown_path`."""
    return [shown_path(a) if a.startswith(os.sep) else a for a in argv]
