"""A refinement click as the Slicer module runs it, by phase: real MRML nodes (``slicer-core``), the module's
logic, the real engine started ahead of time.

    python benchmarks/bench_module_refine.py [--case DIR] [--model brats-regions] [--clicks 5]

Loads the case's sequences into a scene, presses Apply once (the model card's default recipe), then places one
include point after another near the tumour's centre and refines each time, as a user would (each click
refines the result of the one before). Every run goes through the logic's three halves the panel uses, each
timed: ``start`` (the inputs written for the engine; for a refinement also the previous result staged from
the scene, which becomes the undo folder), the engine (from the request to its last line) and ``finish``
(outputs read back into the same nodes). Between runs it waits as long as a user placing a point would, so
the next engine has started ahead of time. Prints a table (median of the clicks) and each phase's share.
``bench_speed.py`` times the engine's part alone; this is what the clinician waits for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "DiffSegModule"), str(REPO / "Testing" / "module")]
import slicer  # noqa: E402  (slicer-core)
import vtk  # noqa: E402
from conftest import SceneHarness  # noqa: E402  the scene as Slicer assembles it (the module tests' harness)
from DiffSegLib import results  # noqa: E402
from DiffSegLib.logic import DiffSegLogic, RunRequest  # noqa: E402
from DiffSegLib.models import read_model_card  # noqa: E402
from DiffSegLib.warmengines import WARM_ENGINES  # noqa: E402

from DiffSegExtension.data.modalities import find_case_files  # noqa: E402
from DiffSegExtension.model_card import resolve_model  # noqa: E402

DEFAULT_CASE = REPO.parent / "shared" / "data" / "brats2018_flair_t1" / "Brats18_CBICA_AAB_1"
THINK_S = 15  # a user placing the next point; the engine for the next run imports meanwhile (4–5 s)
CLICK_STEP_MM = 4.0  # successive clicks walk along R from the tumour's centre


def timed_run(logic: DiffSegLogic, request: RunRequest) -> dict[str, float]:
    """One run through start / engine / finish, each phase's wall seconds."""
    times = {}
    began = time.perf_counter()
    handle = logic.start(request)
    times["start"] = time.perf_counter() - began
    mark = time.perf_counter()
    outcome = handle.runner.wait(timeout=600)
    times["engine"] = time.perf_counter() - mark
    if not outcome.ok:
        logic.cancel(handle)
        raise RuntimeError(outcome.failure_message())
    mark = time.perf_counter()
    logic.finish(handle)
    times["finish"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - began
    return times


def tumour_centre(segmentation) -> np.ndarray:
    """World RAS (mm) of the voxel of the whole-tumour probability ≥ 0.5 nearest the tumour's centroid."""
    probability, _ = results.output_volumes(segmentation, "wt")
    voxels = np.argwhere(slicer.util.arrayFromVolume(probability) >= 0.5)  # KJI
    kji = voxels[np.argmin(((voxels - voxels.mean(0)) ** 2).sum(1))]
    matrix = vtk.vtkMatrix4x4()
    probability.GetIJKToRASMatrix(matrix)
    return np.array(matrix.MultiplyPoint([float(kji[2]), float(kji[1]), float(kji[0]), 1.0])[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--model", default="brats-regions")
    parser.add_argument("--clicks", type=int, default=5)
    args = parser.parse_args()
    model = read_model_card(resolve_model(args.model))
    work = Path(tempfile.mkdtemp(prefix="bench-module-refine-"))
    (work / "home").mkdir()
    (work / "temp").mkdir()
    harness = SceneHarness(work / "home")
    slicer.mrmlScene = harness.scene
    files = {m: path for m, path in find_case_files(args.case).items() if m in model.modalities}
    volumes = {m: harness.load_volume(path, m) for m, path in files.items()}
    shape = nib.load(str(next(iter(files.values())))).shape
    logic = DiffSegLogic(scene=harness.scene, temp_root=work / "temp", results_root=work / "results")
    logic.warm_up()
    time.sleep(THINK_S)
    apply = timed_run(logic, RunRequest(model, volumes, members=model.default("members"), steps=model.default("steps"),
                                        sampler=model.default("sampler"), ensemble=model.default("ensemble"),
                                        device="cpu"))
    segmentation = results.find_outputs(harness.scene, results.input_key(volumes))
    centre = tumour_centre(segmentation)
    clicks = []
    for k in range(args.clicks):
        time.sleep(THINK_S)
        point = centre + np.array([CLICK_STEP_MM * k, 0.0, 0.0])
        clicks.append(timed_run(logic, logic.refine_request(segmentation, include=[tuple(point)])))
    WARM_ENGINES.stop_all()

    print(f"# A refinement click through the Slicer module's logic — {args.case.name} ({'×'.join(map(str, shape))}), "
          f"model {args.model}, default recipe, engine started ahead of time\n")
    print("| run | start: inputs (+ previous staged) | engine | finish: read back | total |")
    print("|---|---|---|---|---|")
    print(f"| Apply (whole volume) | {apply['start']:.2f} s | {apply['engine']:.2f} s | {apply['finish']:.2f} s | "
          f"{apply['total']:.1f} s |")
    median = {phase: statistics.median(c[phase] for c in clicks) for phase in clicks[0]}
    print(f"| Refine, one include point (median of {len(clicks)}) | {median['start']:.2f} s | {median['engine']:.2f} s | "
          f"{median['finish']:.2f} s | {median['total']:.1f} s |")
    each = ", ".join(f"{c['total']:.1f}" for c in clicks)
    print(f"\nEach click (s): {each}. Shares of a click: "
          + ", ".join(f"{phase} {median[phase] / median['total']:.0%}" for phase in ("start", "engine", "finish"))
          + f". Target (#10): ≤ 5 s per interaction → {median['total'] / 5:.2f}× the target.")


if __name__ == "__main__":
    main()
