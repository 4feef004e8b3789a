"""Python packages the engine needs in Slicer's Python, installed on first Apply (after asking).

PyTorch comes through the PyTorch extension's ``PyTorchUtils`` (it picks the CUDA/CPU build that
fits the machine); the rest through ``slicer.util.pip_install`` with a constraints file that pins
what Slicer ships (numpy, scipy, SimpleITK, Pillow) to the installed versions, so pip can never
replace them.
Whether a package is present is checked with ``importlib.util.find_spec``, which imports nothing.
DiffSeg itself never imports torch into the Slicer process (the engine runs in a child process),
but installing it through ``PyTorchUtilsLogic.installTorch`` does: that call ends with
``import torch`` in Slicer's process. It happens once, on the first Apply, after the user agreed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys
import tempfile
from pathlib import Path
from typing import Callable

#: import name → pip requirement (mirrors pyproject.toml's dependencies, minus what Slicer ships).
ENGINE_REQUIREMENTS = {
    "monai": "monai>=1.4",
    "einops": "einops>=0.7",
    "nibabel": "nibabel>=5.0",
    "safetensors": "safetensors>=0.4",
    "tqdm": "tqdm>=4.60",
    "matplotlib": "matplotlib>=3.7",
}
TORCH_REQUIREMENT = ">=2.1"
#: The engine's ``requires-python`` (pyproject.toml). Slicer 5.6 and 5.8 ship Python 3.9.10;
#: Slicer 5.10 and later ship 3.12.10, so DiffSeg needs Slicer 5.10 or later.
MIN_PYTHON = (3, 10)
MIN_SLICER = "5.10"
#: Engine dependencies that Slicer ships: never installed or upgraded by DiffSeg.
SHIPPED_BY_SLICER = ("numpy", "scipy", "SimpleITK")
#: Pinned to the installed version whenever DiffSeg runs pip (Pillow: shipped, and matplotlib needs it).
PINNED = (*SHIPPED_BY_SLICER, "Pillow")


def python_problem(version_info=sys.version_info) -> str | None:
    """Why this Python cannot run the engine (too old), else None."""
    if tuple(version_info[:2]) >= MIN_PYTHON:
        return None
    found = ".".join(str(part) for part in version_info[:3])
    return (f"DiffSeg needs Slicer {MIN_SLICER} or later: its engine needs Python "
            f"{'.'.join(map(str, MIN_PYTHON))} or later, and this Slicer has Python {found}.")


def torch_missing() -> bool:
    return importlib.util.find_spec("torch") is None


def missing_packages() -> list[str]:
    """pip requirements of engine packages that are not importable yet (torch excluded)."""
    return [req for name, req in ENGINE_REQUIREMENTS.items() if importlib.util.find_spec(name) is None]


def missing_summary() -> str:
    """Human-readable list of what is missing ('' when nothing is)."""
    names = (["torch"] if torch_missing() else []) + [r.split(">")[0] for r in missing_packages()]
    return ", ".join(names)


def _constraints_file(folder: Path) -> Path:
    lines = []
    for dist in PINNED:
        try:
            lines.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    path = folder / "diffseg-constraints.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ensure_engine_dependencies(confirm: Callable[[str], bool]) -> bool:
    """Install what the engine lacks, after ``confirm(message)`` agrees. Inside Slicer only.

    :return: True when everything is present afterwards; False if the user declined.
    """
    missing = missing_summary()
    if not missing:
        return True
    if not confirm(f"DiffSeg runs its engine in Slicer's Python and needs these packages: {missing}.\n\n"
                   "Download and install them now? (PyTorch alone is several hundred MB; this happens once.)"):
        return False
    import slicer

    if torch_missing():
        try:
            import PyTorchUtils
        except ImportError as err:
            raise RuntimeError("The PyTorch extension is not installed: install 'PyTorch' from the Extensions "
                               "Manager (DiffSeg depends on it), restart Slicer and try again.") from err
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                              torchVersionRequirement=TORCH_REQUIREMENT)
        if torch is None:
            return False
    requirements = missing_packages()
    if requirements:
        with tempfile.TemporaryDirectory() as folder:
            constraints = _constraints_file(Path(folder))
            logging.info("DiffSeg: installing %s", " ".join(requirements))
            # A list of arguments: each is quoted for pip.
            slicer.util.pip_install([*requirements, "-c", str(constraints)])
    importlib.invalidate_caches()
    return not missing_summary()
