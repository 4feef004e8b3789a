"""Speed and memory benchmark: presets, the seed's recipe vs ours, recipes side by side, a whole real volume.

    python benchmarks/bench_speed.py [--repeats 3] [--model brats-regions [brats-flair ...]] [--case DIR]
        [--recipes full,10,5 full,student,2,5] [--quality-data ../shared/data/...] [--json out.json]

Prints the tables and the ratios against the targets of issues #2 and #11. Each recipe
(``ensemble,[sampler,]steps,members``; the first is the reference, DPM-Solver++ ``full,10,5``) segments the whole
volume in a child process (wall time with start-up and writing, that process's own peak RSS), an ROI of
30 slices, and is scored on the model card's validation subjects (Dice per region, uncertainty AUROC,
QU-BraTS score). ``diffseg refine`` is timed for one click on the last recipe's result, as a process of its
own and through the Slicer module's runner with an engine started ahead of time (as is that recipe's ROI). With
several ``--model``s, the whole volume is segmented by each in turn and their times are compared. Every time is
the median of repeated runs on this machine (repeats interleaved, so a slower phase hits every variant
alike); the seed's 1000-step × 5-member cost per slice is extrapolated from measured passes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from DiffSegExtension.config import preset
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.modalities import list_cases
from DiffSegExtension.evaluation.evaluate import evaluate_cases
from DiffSegExtension.inference.segment import SegmentOptions
from DiffSegExtension.model_card import load_model, resolve_model
from DiffSegExtension.network import DenoisingUNet, count_flops, count_parameters

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "DiffSegModule"))
from DiffSegLib.runner import EngineRunner  # noqa: E402  the Slicer module's runner (no Slicer in it)
from DiffSegLib.warmengines import WARM_ENGINES  # noqa: E402

WARM_START_S = 20  # the waiting engine's imports take 4–5 s on this CPU; a user places points for longer

DEFAULT_CASE = REPO.parent / "shared" / "data" / "brats2018_flair_t1" / "Brats18_CBICA_AAB_1"
DEFAULT_QUALITY_DATA = [REPO.parent / "shared" / "data" / "brats2018_4mod",
                        REPO.parent / "shared" / "data" / "brats2018_flair_t1",
                        REPO.parent / "shared" / "data" / "brats2015_flair_t1ce"]
REFERENCE_PASS_S = 7.2  # the seed UNet's pass on this machine type (DESIGN.md §4, noisier run)


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_presets(repeats: int) -> list[dict]:
    rows = []
    for name, reps in (("paper", max(3, repeats)), ("small", 5 * repeats)):
        config = preset(name, ["t1", "t1ce", "t2", "flair"])
        torch.manual_seed(0)
        net = DenoisingUNet(config.network).eval()
        x, t = torch.rand(1, config.network.in_channels, 224, 224), torch.tensor([500])
        with torch.inference_mode():
            seconds = median_time(lambda: net(x, t), reps)
        rows.append({"preset": name, "parameters_M": count_parameters(net) / 1e6,
                     "gflop_per_pass_224": count_flops(net) / 1e9, "s_per_pass_b1": seconds, "repeats": reps})
    return rows


def bench_memory_format(model_name: str, repeats: int) -> dict[str, float]:
    """Milliseconds per (slice, member) item of the model's network at batch 32 on a 160×192 brain crop,
    contiguous vs channels-last (what the engine runs), measured alternately in this process."""
    net = load_model(model_name).network.eval()
    x, t = torch.randn(32, net.config.in_channels, 160, 192), torch.full((32,), 500)
    variants = {"contiguous (NCHW)": (net, x),
                "channels-last (NHWC)": (copy.deepcopy(net).to(memory_format=torch.channels_last),
                                         x.contiguous(memory_format=torch.channels_last))}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for _ in range(repeats):
            for name, (module, inputs) in variants.items():
                times[name].append(median_time(lambda: module(inputs, t), 1) * 1000 / 32)
    return {name: statistics.median(values) for name, values in times.items()}


# Network passes timed in a fresh process with glibc's malloc defaults or as the CLI tunes it: the median
# of 5 passes after 2 that grow the heap.
_ALLOCATOR_CHILD = """
import resource, statistics, sys, time, torch
from DiffSegExtension.allocator import keep_freed_memory
from DiffSegExtension.model_card import load_model
if sys.argv[2] == "tuned":
    keep_freed_memory()
net = load_model(sys.argv[1]).network.eval().to(memory_format=torch.channels_last)
x = torch.randn(32, net.config.in_channels, 160, 192).contiguous(memory_format=torch.channels_last)
t = torch.full((32,), 500)
passes = []
with torch.inference_mode():
    for i in range(7):
        faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        net(x, t)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        passes.append(((time.perf_counter() - start) * 1000 / 32, after - faults))
print(statistics.median(ms for ms, _ in passes[2:]), statistics.median(f for _, f in passes[2:]))
"""


def bench_allocator(model_dir: str, repeats: int) -> dict[str, dict[str, float]]:
    """Milliseconds per item (batch 32 × 160×192, channels-last) and page faults per pass with glibc's
    malloc defaults vs the CLI's tuning (``DiffSegExtension/allocator.py``), fresh processes alternately."""
    rows: dict[str, list[tuple[float, float]]] = {"glibc defaults": [], "tuned (the CLI)": []}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for _ in range(repeats):
        for name, mode in zip(rows, ("default", "tuned")):
            out = subprocess.run([sys.executable, "-c", _ALLOCATOR_CHILD, model_dir, mode], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            rows[name].append((float(out[0]), float(out[1])))
    return {name: {"ms_per_item": statistics.median(ms for ms, _ in values),
                   "faults_per_pass": statistics.median(f for _, f in values)} for name, values in rows.items()}


@dataclass(frozen=True)
class Recipe:
    """How to sample: ``ensemble`` (full / adaptive), ``sampler`` (``student``: the model's distilled student),
    its ``steps``, ``members``, and an adaptive ensemble's ``screen_steps`` (``None``: member 0 screens)."""

    ensemble: str
    steps: int
    members: int
    screen_steps: int | None = None
    sampler: str = "dpmpp"
    min_component: float = 0.0  # --min-component-probability (the card's default recipe has its own)

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        """``ensemble,[sampler,]steps,members[,screen_steps]`` (sampler default dpmpp)."""
        ensemble, *rest = text.split(",")
        sampler = rest.pop(0) if rest and not rest[0].isdigit() else "dpmpp"
        steps, members, *screen = rest
        return cls(ensemble, int(steps), int(members), int(screen[0]) if screen else None, sampler)

    def args(self) -> list[str]:
        return ["--ensemble", self.ensemble, "--steps", str(self.steps), "--members", str(self.members),
                "--sampler", self.sampler, *(["--screen-steps", str(self.screen_steps)] if self.screen_steps else []),
                "--min-component-probability", str(self.min_component)]

    def options(self) -> SegmentOptions:
        return SegmentOptions(members=self.members, steps=self.steps, ensemble=self.ensemble, sampler=self.sampler,
                              screen_steps=self.screen_steps, min_component_probability=self.min_component)

    def __str__(self) -> str:
        screen = f", screen {self.screen_steps} steps" if self.screen_steps else ""
        rule = f", components ≥ {self.min_component:g}" if self.min_component else ""
        return f"{self.ensemble} {self.sampler} {self.steps} × {self.members}{screen}{rule}"


REFERENCE_RECIPE = Recipe("full", 10, 5)  # DPM-Solver++ 10 × 5, the default before issue #11


# The child reports its own peak RSS (VmHWM, Linux): a forked child's rusage would include this process's. Then it
# ends as `diffseg` does (cli.run_and_exit: no interpreter teardown).
_CHILD = ("import os, sys; from pathlib import Path; from DiffSegExtension.cli import main; code = main(sys.argv[2:]); "
          "Path(sys.argv[1]).write_text(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]); "
          "sys.stdout.flush(); sys.stderr.flush(); os._exit(code)")


def run_child(args: list[str]) -> tuple[float, float]:
    """``diffseg ARGS`` in a child process → (wall seconds, the child's peak RSS in GiB)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with tempfile.NamedTemporaryFile() as peak:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CHILD, peak.name, *args, "--progress", "none"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        return wall, int(Path(peak.name).read_text()) / 1024**2  # KiB → GiB


def engine_run(args: list[str], out: Path) -> dict:
    """``diffseg ARGS`` writing ``out`` (replaced) as a child process: wall time, peak RSS and from its summary the
    engine's seconds, slices and passes per slice."""
    wall, rss = run_child([*args, "--out", str(out), "--overwrite"])
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "rss_gib": rss, "engine_s": summary["seconds"], "slices": summary["slices_sampled"],
            "passes_per_slice": summary["passes_per_slice"]}


def segment_volume(model: str, case: Path, recipe: Recipe, out: Path, slices: str | None = None) -> dict:
    """One `diffseg segment` into ``out`` (:func:`engine_run`)."""
    return engine_run(["segment", "--model", model, "--input", str(case), *recipe.args(),
                       *(["--slices", slices] if slices else [])], out)


def tumour_click(result: Path) -> tuple[str, str]:
    """An include click (RAS mm) at the centre of the result's tumour, and a 30-slice range around it."""
    image = nib.load(result / "segmentation.nii.gz")
    voxels = np.argwhere(np.asarray(image.dataobj) > 0)
    centre = voxels[np.argmin(((voxels - voxels.mean(0)) ** 2).sum(1))]  # a tumour voxel near the centroid
    ras = nib.affines.apply_affine(image.affine, centre)
    axis = json.loads((result / "summary.json").read_text())["slice_axis"]
    first = max(0, int(centre[axis]) - 15)
    return ",".join(f"{v:.1f}" for v in ras), f"{first}:{first + 30}"


def refine_arguments(model: str, case: Path, previous: Path, click: str, out: Path) -> list[str]:
    """`diffseg refine` with an include click (the previous run's settings)."""
    return ["refine", "--model", model, "--input", str(case), "--previous", str(previous), f"--include={click}",
            "--out", str(out), "--overwrite"]


def refine_once(model: str, case: Path, previous: Path, click: str, out: Path) -> float:
    """Wall seconds of one `diffseg refine` process."""
    wall, _ = run_child(refine_arguments(model, case, previous, click, out))
    return wall


def warm_run(args: list[str]) -> float:
    """Seconds from start to end of ``diffseg ARGS`` run as the Slicer module runs it: through its runner, by an
    engine started ahead of time (its imports done while the user places points or picks slices), without
    overview.png."""
    runner = EngineRunner(python=sys.executable, engine_path=REPO, warm=True)
    runner.warm_up()
    time.sleep(WARM_START_S)
    start = time.perf_counter()
    runner.start([*args, "--no-overview", "--progress", "json"])
    result = runner.wait(timeout=600)
    seconds = time.perf_counter() - start
    WARM_ENGINES.stop_all()
    if not result.ok:
        raise RuntimeError(result.error or result.stderr_tail)
    return seconds


def quality(model_name: str, recipes: list[Recipe], data: list[Path], names: list[str] | None) -> dict[Recipe, dict]:
    """Mean Dice / AUROC / QU-BraTS score per region of each recipe on the cases ``names`` (default: the model
    card's validation subjects)."""
    model = load_model(model_name)
    wanted = set(names or model.card.get("data", {}).get("validation", []))
    cases = [load_case(c, model.modalities, with_label=True, optional=model.optional_modalities)
             for root in data for c in list_cases(root) if c.name in wanted]
    if not cases:
        print(f"\n(no quality table: none of the cases {', '.join(sorted(wanted))} is under the --quality-data roots)")
        return {}
    results = {}
    for recipe in recipes:
        rows, _ = evaluate_cases(model, cases, recipe.options())
        results[recipe] = {"cases": sorted({r["case"] for r in rows}), "regions": {
            region: {key: statistics.mean(r[key] for r in rows if r["region"] == region)
                     for key in ("dice", "auroc_uncertainty_error", "qu_score", "passes_per_slice", "seconds")}
            for region in dict.fromkeys(r["region"] for r in rows)}}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", nargs="+", default=["brats-regions"],
                        help="model(s) for the whole-volume run; the first is the one the recipe tables use")
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--recipes", nargs="+", type=Recipe.parse, default=None,
                        help="ensemble,[sampler,]steps,members[,screen_steps] (default: full,10,5 = DPM-Solver++ 10 × 5, the "
                             "default before issue #11, and "
                             "the model card's default)")
    parser.add_argument("--quality-data", type=Path, nargs="*", default=DEFAULT_QUALITY_DATA,
                        help="roots holding the quality cases (none: skip the quality table)")
    parser.add_argument("--quality-cases", nargs="+", help="case names (default: the model card's validation subjects)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    first_model = load_model(args.model[0])
    defaults = first_model.inference_defaults
    card_default = Recipe(defaults["ensemble"], defaults["steps"], defaults["members"], defaults.get("screen_steps"),
                          defaults["sampler"], defaults["min_component_probability"])
    recipes = args.recipes or list(dict.fromkeys([REFERENCE_RECIPE, card_default]))
    reference, default = recipes[0], recipes[-1]

    print(f"# DiffSeg speed benchmark — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    presets = bench_presets(args.repeats)
    print("| preset | parameters | GFLOP / pass (224²) | s / pass (batch 1, median) |")
    print("|---|---|---|---|")
    for r in presets:
        print(f"| {r['preset']} | {r['parameters_M']:.2f} M | {r['gflop_per_pass_224']:.1f} | {r['s_per_pass_b1']:.3f} "
              f"(of {r['repeats']}) |")

    formats = bench_memory_format(args.model[0], 3 * args.repeats)
    print(f"\n| memory format ({args.model[0]}, batch 32 × 160×192) | ms per item (median of {3 * args.repeats}) |")
    print("|---|---|")
    for name, ms in formats.items():
        print(f"| {name} | {ms:.2f} |")

    model_dir = str(resolve_model(args.model[0]))
    allocator = bench_allocator(model_dir, args.repeats)
    print(f"\n| malloc ({args.model[0]}, batch 32 × 160×192, {args.repeats} fresh processes each) | ms per item "
          "(median) | page faults per pass (median) |")
    print("|---|---|---|")
    for name, row in allocator.items():
        print(f"| {name} | {row['ms_per_item']:.2f} | {row['faults_per_pass']:,.0f} |")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs: dict[Recipe, list[dict]] = {r: [] for r in recipes}
        rois: dict[Recipe, list[dict]] = {r: [] for r in recipes}
        refines: list[float] = []
        warm_refines: list[float] = []
        warm_rois: list[float] = []
        for _ in range(args.repeats):  # interleaved
            for recipe in recipes:
                runs[recipe].append(segment_volume(model_dir, args.case, recipe, tmp / "volume"))
                if recipe == default:
                    click, roi = tumour_click(tmp / "volume")
                    refines.append(refine_once(model_dir, args.case, tmp / "volume", click, tmp / "refined"))
                    warm_refines.append(warm_run(refine_arguments(model_dir, args.case, tmp / "volume", click,
                                                                  tmp / "refined")))
            for recipe in recipes:
                rois[recipe].append(segment_volume(model_dir, args.case, recipe, tmp / "roi", slices=roi))
            warm_rois.append(warm_run(["segment", "--model", model_dir, "--input", str(args.case), "--out",
                                       str(tmp / "roi"), "--overwrite", *default.args(), "--slices", roi]))
        other_models = {name: [segment_volume(str(resolve_model(name)), args.case, default, tmp / name)
                               for _ in range(args.repeats)] for name in args.model[1:]}

    med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    slices = runs[reference][0]["slices"]
    paper_pass = presets[0]["s_per_pass_b1"]
    seed_passes = 1000 * 5
    seed_slice_s = seed_passes * paper_pass
    ours_slice_s = med(runs[default], "engine_s") / slices

    print("\n| recipe | network passes / slice | seconds / slice |")
    print("|---|---|---|")
    print(f"| seed: paper UNet, DDPM 1000 × 5 members, one member per pass | {seed_passes} | "
          f"{seed_slice_s:.0f} (= {seed_passes} × {paper_pass:.2f} s, extrapolated) |")
    print(f"| ours: small UNet, {default}, batched | {med(runs[default], 'passes_per_slice'):.1f} | "
          f"{ours_slice_s:.2f} (measured over {slices} brain slices) |")

    print(f"\n| recipe ({args.model[0]}, {args.case.name}, {slices} brain slices; median of {args.repeats}) | "
          "full-slice passes / slice | wall s (start-up, writing incl.) | engine s | peak RSS GiB | "
          "ROI 30 slices wall s | speed-up vs " + str(reference) + " |")
    print("|---|---|---|---|---|---|---|")
    for recipe in recipes:
        print(f"| {recipe} | {med(runs[recipe], 'passes_per_slice'):.1f} | {med(runs[recipe], 'wall_s'):.1f} | "
              f"{med(runs[recipe], 'engine_s'):.1f} | {max(r['rss_gib'] for r in runs[recipe]):.2f} | "
              f"{med(rois[recipe], 'wall_s'):.1f} | "
              f"{med(runs[reference], 'wall_s') / med(runs[recipe], 'wall_s'):.2f}× |")
    print(f"\n`diffseg refine`, one include click at the tumour's centre on the {default} result: "
          f"{statistics.median(refines):.1f} s wall as a `diffseg refine` process (median of {len(refines)}); "
          f"{statistics.median(warm_refines):.1f} s through the Slicer module's runner with an engine started ahead "
          "of time (no overview.png, as the module runs it). The ROI of 30 slices with the default recipe through "
          f"that runner: {statistics.median(warm_rois):.1f} s (median of {len(warm_rois)}).")

    scores = quality(args.model[0], recipes, args.quality_data, args.quality_cases) if args.quality_data else {}
    if scores:
        print(f"\n| recipe (mean over {', '.join(scores[reference]['cases'])}) | region | Dice | "
              f"uncertainty AUROC | QU-BraTS score | Δ Dice vs {reference} | Δ AUROC |")
        print("|---|---|---|---|---|---|---|")
        for recipe in recipes:
            for region, m in scores[recipe]["regions"].items():
                ref = scores[reference]["regions"][region]
                print(f"| {recipe} | {region.upper()} | {m['dice']:.4f} | {m['auroc_uncertainty_error']:.4f} | "
                      f"{m['qu_score']:.4f} | {m['dice'] - ref['dice']:+.4f} | "
                      f"{m['auroc_uncertainty_error'] - ref['auroc_uncertainty_error']:+.4f} |")

    if other_models:
        print(f"\n| model ({args.case.name}, {default}) | wall s (median of {args.repeats}) | engine s | "
              f"vs {args.model[0]} |")
        print("|---|---|---|---|")
        for name, model_runs in {args.model[0]: runs[default], **other_models}.items():
            print(f"| {name} | {med(model_runs, 'wall_s'):.1f} | {med(model_runs, 'engine_s'):.1f} | "
                  f"{med(model_runs, 'wall_s') / med(runs[default], 'wall_s'):.2f}× |")

    wall, rss = med(runs[default], "wall_s"), max(r["rss_gib"] for r in runs[default])
    print("\nRatios and targets")
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print(f"- #2 passes per slice: {med(runs[default], 'passes_per_slice'):.1f} (target ≤ 100): "
          f"{met(med(runs[default], 'passes_per_slice') <= 100)}")
    print(f"- #2 paper pass {paper_pass:.2f} s vs reference {REFERENCE_PASS_S} s: {REFERENCE_PASS_S / paper_pass:.2f}× "
          f"({met(paper_pass <= REFERENCE_PASS_S)})")
    print(f"- per slice, ours vs seed: {seed_slice_s / ours_slice_s:,.0f}× faster; per volume the seed needs "
          f"{seed_slice_s * slices / 86400:.1f} days")
    print(f"- #11 {default} vs {reference}: {med(runs[reference], 'wall_s') / wall:.2f}× less wall time "
          f"(target ≥ 4×): {met(med(runs[reference], 'wall_s') / wall >= 4)}")
    print(f"- #11 whole volume {wall:.1f} s wall (target ≤ 30 s): {met(wall <= 30)}")
    print(f"- #11 peak RSS {rss:.2f} GiB (target ≤ 2 GB = 1.86 GiB): {met(rss * 1024**3 <= 2e9)}")
    for path, seconds in (("`diffseg segment` process", med(rois[default], "wall_s")),
                          ("Slicer's warm engine", statistics.median(warm_rois))):
        print(f"- #11 ROI of 30 slices, {path}: {seconds:.1f} s (target ≤ 8 s): {met(seconds <= 8)}")
    for path, times in (("`diffseg refine` process", refines), ("Slicer's warm engine", warm_refines)):
        print(f"- #10/#11 one refinement, {path}: {statistics.median(times):.1f} s (target ≤ 5 s): "
              f"{met(statistics.median(times) <= 5)}")
    for region, m in (scores[default]["regions"].items() if scores else []):
        ref = scores[reference]["regions"][region]
        dd, da = m["dice"] - ref["dice"], m["auroc_uncertainty_error"] - ref["auroc_uncertainty_error"]
        print(f"- #11 {region.upper()} Dice {dd:+.4f} (target: no loss over 0.005): {met(dd >= -0.005)}; "
              f"AUROC {da:+.4f} (target: no loss over 0.01): {met(da >= -0.01)}")
    if args.json:
        args.json.write_text(json.dumps({
            "presets": presets, "memory_format_ms_per_item": formats, "allocator": allocator,
            "recipes": {str(r): {"volume": runs[r], "roi": rois[r], **({"quality": scores[r]} if scores else {})}
                        for r in recipes},
            "refine_wall_s": refines, "refine_warm_s": warm_refines, "roi_warm_s": warm_rois, "other_models": other_models,
            "seed_slice_s": seed_slice_s, "ours_slice_s": ours_slice_s}, indent=2))


if __name__ == "__main__":
    main()
