"""What the clinician waits for in Slicer, by phase: real MRML nodes (``slicer-core``), the module's logic, the
real engine started ahead of time.

    python benchmarks/bench_module.py [--case DIR] [--model brats-regions] [--repeats 3] [--clicks 5]

Loads the case's sequences into a scene and presses Apply once (the model card's default recipe); then Apply on
30 slices around the tumour's centre (``--repeats`` times, as new outputs); then places one include point after
another near the tumour's centre and refines the whole-volume result each time, as a user would (each click
refines the result of the one before). Every run goes through the logic's three halves the panel uses, each
timed: ``start`` (the inputs written for the engine; for a refinement also the previous result staged from
the scene, which becomes the undo folder), the engine (from the request to its last line) and ``finish``
(outputs read back into the nodes). Between runs it waits as long as a user placing a point would, so the next
engine has started ahead of time. Prints a table (medians) and each phase's share of a click.
``bench_speed.py`` times the engine's part alone (through the same runner); this adds what the module does.
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
from DiffSegLib import results, review  # noqa: E402
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


def tumour_centre(segmentation) -> tuple[np.ndarray, np.ndarray]:
    """(world RAS mm, IJK) of the voxel of the whole-tumour probability ≥ 0.5 nearest the tumour's centroid."""
    probability, _ = results.output_volumes(segmentation, "wt")
    voxels = np.argwhere(slicer.util.arrayFromVolume(probability) >= 0.5)  # KJI
    kji = voxels[np.argmin(((voxels - voxels.mean(0)) ** 2).sum(1))]
    matrix = vtk.vtkMatrix4x4()
    probability.GetIJKToRASMatrix(matrix)
    ijk = kji[::-1]
    return np.array(matrix.MultiplyPoint([*map(float, ijk), 1.0])[:3]), ijk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--model", default="brats-regions")
    parser.add_argument("--repeats", type=int, default=3, help="30-slice Apply runs")
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
    recipe = dict(members=model.default("members"), steps=model.default("steps"), sampler=model.default("sampler"),
                  ensemble=model.default("ensemble"), device="cpu")
    apply = timed_run(logic, RunRequest(model, volumes, **recipe))
    segmentation = results.find_outputs(harness.scene, results.input_key(volumes))
    centre, ijk = tumour_centre(segmentation)
    first = max(0, int(ijk[review.slice_axis_of(segmentation)]) - 15)
    rois = []
    for _ in range(args.repeats):
        time.sleep(THINK_S)
        rois.append(timed_run(logic, RunRequest(model, volumes, slices=(first, first + 30), new_outputs=True, **recipe)))
    clicks = []
    for k in range(args.clicks):
        time.sleep(THINK_S)
        point = centre + np.array([CLICK_STEP_MM * k, 0.0, 0.0])
        clicks.append(timed_run(logic, logic.refine_request(segmentation, include=[tuple(point)])))
    WARM_ENGINES.stop_all()

    print(f"# Runs through the Slicer module's logic — {args.case.name} ({'×'.join(map(str, shape))}), "
          f"model {args.model}, default recipe, engine started ahead of time\n")
    print("| run | start: inputs (+ previous staged) | engine | finish: read back | total |")
    print("|---|---|---|---|---|")
    print(f"| Apply (whole volume) | {apply['start']:.2f} s | {apply['engine']:.2f} s | {apply['finish']:.2f} s | "
          f"{apply['total']:.1f} s |")
    roi = {phase: statistics.median(r[phase] for r in rois) for phase in rois[0]}
    print(f"| Apply, 30 slices {first}:{first + 30} (median of {len(rois)}) | {roi['start']:.2f} s | "
          f"{roi['engine']:.2f} s | {roi['finish']:.2f} s | {roi['total']:.1f} s |")
    median = {phase: statistics.median(c[phase] for c in clicks) for phase in clicks[0]}
    print(f"| Refine, one include point (median of {len(clicks)}) | {median['start']:.2f} s | {median['engine']:.2f} s | "
          f"{median['finish']:.2f} s | {median['total']:.1f} s |")
    each = ", ".join(f"{c['total']:.1f}" for c in clicks)
    print(f"\nEach click (s): {each}. Shares of a click: "
          + ", ".join(f"{phase} {median[phase] / median['total']:.0%}" for phase in ("start", "engine", "finish"))
          + f". Targets: #10 one interaction ≤ 5 s → {median['total'] / 5:.2f}× it; #11 a 30-slice ROI ≤ 8 s → "
          f"{roi['total'] / 8:.2f}× it.")


if __name__ == "__main__":
    main()
