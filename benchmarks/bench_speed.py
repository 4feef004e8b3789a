"""Speed and memory benchmark: presets, the seed's recipe vs ours, and a whole real volume.

    python benchmarks/bench_speed.py [--repeats 3] [--model brats-flair [brats-regions ...]] [--case DIR] [--json out.json]

Prints three tables and the ratios against the targets of issue #2. With several ``--model``s, the
whole volume is segmented by each in turn (interleaved repeats) and their times are compared in one run. Every time is the median of
repeated runs on this machine; the seed's 1000-step × 5-member cost per slice is extrapolated
from measured passes (running it takes hours).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from DiffSegExtension.config import preset
from DiffSegExtension.model_card import resolve_model
from DiffSegExtension.network import DenoisingUNet, count_flops, count_parameters

REPO = Path(__file__).resolve().parent.parent

DEFAULT_CASE = REPO.parent / "shared" / "data" / "brats2018_flair_t1" / "Brats18_CBICA_AAB_1"
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


def segment_volume(model: str, case: Path, members: int, steps: int, sampler: str) -> dict:
    """One `diffseg segment` in a child process: wall time, peak RSS and its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "DiffSegExtension", "segment", "--model", model, "--input", str(case),
               "--out", str(out), "--members", str(members), "--steps", str(steps), "--sampler", sampler,
               "--progress", "none"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        start = time.perf_counter()
        code = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if code.returncode:
            raise RuntimeError(code.stderr[-2000:])
        summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "engine_s": summary["seconds"], "slices": summary["slices_sampled"]}


def peak_child_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # KiB → GiB (Linux)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", nargs="+", default=["brats-flair"],
                        help="model(s) for the whole-volume run; the first is the one the recipe table uses")
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sampler", default="dpmpp")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    print(f"# DiffSeg speed benchmark — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    presets = bench_presets(args.repeats)
    print("| preset | parameters | GFLOP / pass (224²) | s / pass (batch 1, median) |")
    print("|---|---|---|---|")
    for r in presets:
        print(f"| {r['preset']} | {r['parameters_M']:.2f} M | {r['gflop_per_pass_224']:.1f} | {r['s_per_pass_b1']:.3f} "
              f"(of {r['repeats']}) |")

    model_dirs = [str(resolve_model(name)) for name in args.model]
    runs_by_model: dict[str, list[dict]] = {name: [] for name in args.model}
    for _ in range(args.repeats):  # interleaved, so a slower phase of the machine hits every model alike
        for name, folder in zip(args.model, model_dirs):
            runs_by_model[name].append(segment_volume(folder, args.case, args.members, args.steps, args.sampler))
    runs = runs_by_model[args.model[0]]
    rss = peak_child_rss_gib()
    wall = statistics.median(r["wall_s"] for r in runs)
    engine = statistics.median(r["engine_s"] for r in runs)
    slices = runs[0]["slices"]
    paper_pass = presets[0]["s_per_pass_b1"]
    seed_passes = 1000 * 5
    seed_slice_s = seed_passes * paper_pass
    ours_passes = args.members * args.steps
    ours_slice_s = engine / slices

    print("\n| recipe | network passes / slice | seconds / slice |")
    print("|---|---|---|")
    print(f"| seed: paper UNet, DDPM 1000 × 5 members, one member per pass | {seed_passes} | "
          f"{seed_slice_s:.0f} (= {seed_passes} × {paper_pass:.2f} s, extrapolated) |")
    print(f"| ours: small UNet, {args.sampler} {args.steps} × {args.members} members, batched | {ours_passes} | "
          f"{ours_slice_s:.2f} (measured over {slices} brain slices) |")

    print(f"\n| whole volume ({args.case.name}, {slices} brain slices) | median of {args.repeats} |")
    print("|---|---|")
    print(f"| wall time incl. start-up and writing | {wall:.1f} s |")
    print(f"| engine time (prepare + sample + restore) | {engine:.1f} s |")
    print(f"| peak RSS of the child process | {rss:.2f} GiB |")

    if len(args.model) > 1:
        print(f"\n| model ({args.case.name}, same settings) | wall s (median of {args.repeats}) | engine s | "
              f"vs {args.model[0]} |")
        print("|---|---|---|---|")
        for name, model_runs in runs_by_model.items():
            w = statistics.median(r["wall_s"] for r in model_runs)
            e = statistics.median(r["engine_s"] for r in model_runs)
            print(f"| {name} | {w:.1f} | {e:.1f} | {w / wall:.2f}× |")

    print("\nRatios and targets")
    print(f"- passes per slice: {ours_passes} (target ≤ 100): {'met' if ours_passes <= 100 else 'NOT met'}")
    print(f"- whole volume: {wall / 60:.2f} min (target ≤ 5 min): {'met' if wall <= 300 else 'NOT met'}")
    print(f"- peak RSS: {rss:.2f} GiB (target ≤ 4 GB = 3.73 GiB): {'met' if rss * 1024**3 <= 4e9 else 'NOT met'}")
    print(f"- paper pass {paper_pass:.2f} s vs reference {REFERENCE_PASS_S} s: {REFERENCE_PASS_S / paper_pass:.2f}× "
          f"({'met' if paper_pass <= REFERENCE_PASS_S else 'NOT met'})")
    print(f"- per slice, ours vs seed: {seed_slice_s / ours_slice_s:,.0f}× faster; per volume the seed needs "
          f"{seed_slice_s * slices / 86400:.1f} days")
    if args.json:
        args.json.write_text(json.dumps({"presets": presets, "volume": runs_by_model, "peak_rss_gib": rss,
                                         "seed_slice_s": seed_slice_s, "ours_slice_s": ours_slice_s}, indent=2))


if __name__ == "__main__":
    main()
