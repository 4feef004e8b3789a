"""Which file of a case folder holds which MRI modality.

File names are split at underscores (and hyphens, as in BraTS 2023's ``BraTS-GLI-00000-000-t2f``) and
matched token by token (case-insensitive), so ``t1`` never matches ``t1ce``. Two layouts are understood:

* BraTS: ``<case>_<modality>.nii.gz`` (``Brats18_CBICA_AAB_1_flair.nii.gz``);
* the seed's 2D slices: the modality is a token inside the name (``brats_train_001_flair_080_w.nii.gz``).
"""

from __future__ import annotations

import re
from pathlib import Path

from DiffSegExtension.errors import DiffSegInputError

#: Canonical modality name → accepted file-name tokens (lower case).
MODALITY_ALIASES: dict[str, tuple[str, ...]] = {
    "flair": ("flair", "t2f"),
    "t1": ("t1", "t1n"),
    "t1ce": ("t1ce", "t1c", "t1gd"),
    "t2": ("t2", "t2w"),
    "seg": ("seg", "label", "gt"),
}

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Files with one of these tokens are never a modality (BraTS 2015 ships a brain mask per case).
_IGNORED_TOKENS = frozenset({"brainmask"})
_TOKEN_SPLIT = re.compile(r"[_-]")
_TOKEN_TO_MODALITY = {alias: name for name, aliases in MODALITY_ALIASES.items() for alias in aliases}


def canonical_modality(token: str) -> str | None:
    """The canonical modality name for a name or alias (``"T1Gd"`` → ``"t1ce"``), else ``None``."""
    return _TOKEN_TO_MODALITY.get(token.strip().lower())


def nifti_stem(path: Path) -> str | None:
    """The file name without ``.nii``/``.nii.gz`` (case-insensitive), or ``None`` if not NIfTI."""
    lower = path.name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def modality_of_file(path: Path) -> str | None:
    """The canonical modality a NIfTI file name declares, or ``None``.

    The LAST underscore token that is an alias wins, so a case name that happens to contain a
    modality word (``seg_study_01_flair``) still resolves to the suffix.
    """
    stem = nifti_stem(path)
    if stem is None or path.name.startswith("."):
        return None
    tokens = [t.lower() for t in _TOKEN_SPLIT.split(stem)]
    if _IGNORED_TOKENS.intersection(tokens):
        return None
    found = [_TOKEN_TO_MODALITY[t] for t in tokens if t in _TOKEN_TO_MODALITY]
    return found[-1] if found else None


def case_name_from_file(path: Path) -> str:
    """The file name without extension and without its modality token (``x_flair.nii.gz`` → ``x``)."""
    stem = nifti_stem(path) or path.name
    parts = re.split(r"([_-])", stem)  # tokens at even positions, separators at odd ones
    hits = [i for i in range(0, len(parts), 2) if parts[i].lower() in _TOKEN_TO_MODALITY]
    if not hits or len(parts) == 1:
        return stem
    i = hits[-1]
    # Drop the token with the separator before it (after it, when the token comes first).
    del parts[slice(i - 1, i + 1) if i > 0 else slice(0, 2)]
    return "".join(parts)


def _scan(case_dir: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(case_dir.iterdir()):
        if path.is_file():
            modality = modality_of_file(path)
            if modality is not None:
                found.setdefault(modality, []).append(path)
    return found


def find_case_files(case_dir: Path) -> dict[str, Path]:
    """Canonical modality name → NIfTI file, for every modality file in ``case_dir``.

    Non-NIfTI files, hidden files and ``*brainmask*`` files are ignored. Two files for one
    modality raise :class:`DiffSegInputError` (the loader cannot guess which one is meant).
    """
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        raise DiffSegInputError(f"case folder {case_dir} does not exist or is not a folder: give the folder "
                                "that holds the <case>_<modality>.nii.gz files")
    result: dict[str, Path] = {}
    for modality, paths in _scan(case_dir).items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise DiffSegInputError(f"case folder {case_dir} has {len(paths)} files for modality '{modality}' "
                                    f"({names}): keep one, or pass the files explicitly")
        result[modality] = paths[0]
    return result


def list_cases(root: Path) -> list[Path]:
    """The case folders under ``root``.

    ``[root]`` if ``root`` itself holds NIfTI modality files, else its immediate subfolders that do
    (sorted by name). Raises :class:`DiffSegInputError` if there are none.
    """
    root = Path(root)
    if not root.is_dir():
        raise DiffSegInputError(f"data folder {root} does not exist or is not a folder: give a case folder "
                                "or a folder of case folders")
    if _scan(root):
        return [root]
    cases = [p for p in sorted(root.iterdir()) if p.is_dir() and _scan(p)]
    if not cases:
        known = ", ".join(MODALITY_ALIASES)
        raise DiffSegInputError(f"no cases found in {root}: expected NIfTI files named <case>_<modality>.nii.gz "
                                f"(modality one of {known}) in it or in its immediate subfolders")
    return cases
