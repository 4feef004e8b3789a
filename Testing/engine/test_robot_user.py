"""The robot-user benchmark: its click rule, and a whole run on a phantom."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from testing_utils import REPO, engine_env

sys.path.insert(0, str(REPO / "benchmarks"))
from robot_user import next_click  # noqa: E402


def test_the_robot_clicks_the_centre_of_the_largest_error_component():
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (10.0, -5.0, 3.0)
    truth = np.zeros((20, 20, 12), np.uint8)
    truth[2:9, 2:9, 2:9] = 1  # a 7-voxel cube
    prediction = truth.copy()
    prediction[2:9, 2:9, 2:9] = 0  # missed entirely
    prediction[12:15, 12:15, 2:5] = 1  # a smaller false positive
    click = next_click(prediction, truth, affine)
    assert click.kind == "include" and click.voxel == (5, 5, 5) and click.component.sum() == 7 ** 3
    assert np.allclose(click.ras, [5.0, 0.0, 8.0]), "RAS through the affine"
    prediction[2:9, 2:9, 2:9] = 1
    click = next_click(prediction, truth, affine)
    assert click.kind == "exclude" and click.voxel == (13, 13, 3)
    assert next_click(truth, truth, affine) is None


@pytest.mark.parametrize("run", ["tiny_run", "tiny_region_run"])
def test_the_robot_user_runs_end_to_end_on_a_phantom(tmp_path, run, phantom_cases, request):
    model = request.getfixturevalue(run)
    # The whole-tumour run also compares the model with itself: the same seed must give the same curve.
    compare = ["--compare-model", str(model)] if run == "tiny_run" else []
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "robot_user.py"), "--model", str(model),
                           "--data", str(phantom_cases), "--cases", "phantom3", "--out", str(tmp_path), "--clicks", "2",
                           "--members", "2", "--steps", "2", *compare], env=engine_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "robot_user.json").read_text())
    case = report["cases"]["phantom3"]
    regions = ["wt", "tc", "et"] if run == "tiny_region_run" else ["wt"]
    assert report["protocol"]["regions"] == regions
    for method in ("diffusion", "sphere", "evidence", "distance"):
        assert list(case[method]["dice"]) == regions
        assert all(len(d) == 3 and all(0 <= v <= 1 for v in d) for d in case[method]["dice"].values())
    clicks = case["diffusion"]["clicks"]
    assert clicks and all(c["kind"] in ("include", "exclude") and c["seconds"] > 0 for c in clicks)
    assert all(c["uncertainty_after"] >= 0 and c["component_voxels"] > 0 for c in clicks)
    assert report["mean"]["diffusion"]["wt"][0] == case["diffusion"]["dice"]["wt"][0]
    assert len(report["targets"]) == 6 + bool(compare) and report["seconds"]["median"] > 0
    assert "| **mean** | diffusion |" in (tmp_path / "robot_user.md").read_text()
    assert [c["voxel"] for c in case["evidence"]["clicks"]][:1] == [c["voxel"] for c in clicks][:1], \
        "the evidence-only method starts from the same automatic result"
    if compare:
        assert case["compare"]["dice"] == case["diffusion"]["dice"], "same model, same seed, same clicks"
        assert [c["voxel"] for c in case["compare"]["clicks"]] == [c["voxel"] for c in clicks]
        assert "| **mean** | compare |" in (tmp_path / "robot_user.md").read_text()
    assert (tmp_path / "robot_user.png").stat().st_size > 5000
    second = tmp_path / "work" / "phantom3" / f"click{len(clicks)}"
    assert len(json.loads((second / "guidance.json").read_text())["points"]) == len(clicks), "clicks accumulate"
