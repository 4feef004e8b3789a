"""Fixtures shared by the engine and module suites: phantom cases on disk and a quickly trained model."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def phantom_cases(tmp_path_factory) -> Path:
    """A folder of four small 4-modality phantom cases (two oblique), BraTS naming, with labels."""
    from DiffSegExtension.data.phantom import make_phantom, write_phantom_case

    root = tmp_path_factory.mktemp("phantoms")
    for seed in range(4):
        write_phantom_case(root, f"phantom{seed}", make_phantom(seed, shape=(64, 64, 24), oblique=seed % 2 == 1))
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, phantom_cases) -> Path:
    """A `tiny` FLAIR+T1ce model trained for a few iterations (a real run folder; not a good model)."""
    from DiffSegExtension.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", "--data", str(phantom_cases), "--modalities", "flair", "t1ce", "--preset", "tiny",
                 "--out", str(out), "--iterations", "6", "--batch-size", "4", "--crop", "32", "--val-cases", "phantom3",
                 "--val-every", "6", "--val-max-slices", "2", "--val-steps", "2", "--val-members", "2",
                 "--checkpoint-every", "3", "--log-every", "1", "--progress", "none"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def tiny_region_run(tmp_path_factory, phantom_cases) -> Path:
    """A `tiny` region model (WT, TC, ET) needing FLAIR, with T1ce and T2 optional, trained for a few iterations."""
    from DiffSegExtension.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny_regions"
    code = main(["train", "--data", str(phantom_cases), "--modalities", "flair", "t1ce", "t2",
                 "--optional-modalities", "t1ce", "t2", "--regions", "wt", "tc", "et", "--preset", "tiny",
                 "--out", str(out), "--iterations", "4", "--batch-size", "4", "--crop", "32", "--val-cases", "phantom3",
                 "--val-every", "4", "--val-max-slices", "2", "--val-steps", "2", "--val-members", "2",
                 "--checkpoint-every", "4", "--log-every", "1", "--progress", "none"])
    assert code == 0
    return out
