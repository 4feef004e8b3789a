"""GPU benchmark (issue 11's GPU targets, issue 10's GPU interaction): run on a machine with a CUDA GPU.

    python benchmarks/bench_gpu.py [--case DIR] [--model brats-regions] [--repeats 3] [--json out.json]

In one run, on the whole volume of ``--case``:
- the model card's default recipe and the teacher's DPM-Solver++ 10 × 5 (full ensemble) as ``diffseg segment
  --device cuda`` processes (wall time with start-up, CUDA initialisation and writing; the engine's own seconds),
  an ROI of 30 slices, and one ``diffseg refine`` include click at the tumour's centre;
- the same default recipe in one process that keeps the model on the GPU (a warm engine: the first run pays the
  CUDA start-up and is left out of the median);
- the ``paper`` preset (the seed's 113.7 M UNet) with DPM-Solver++ 10 steps × 5 members on every brain slice, in
  that process, with random weights (no trained ``paper`` model is bundled: its speed does not depend on them), in
  float32 (TF32 matrix units, as the engine runs) and under bfloat16 autocast.
Every time is a median of ``--repeats`` runs. Prints a table and the targets (default ≤ 3 s, ``paper`` ≤ 30 s
per volume with 5 members).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_speed import DEFAULT_CASE, REFERENCE_RECIPE, Recipe, engine_run, tumour_click  # noqa: E402

from DiffSegExtension.allocator import keep_freed_memory  # noqa: E402
from DiffSegExtension.config import preset  # noqa: E402
from DiffSegExtension.data.loading import load_case  # noqa: E402
from DiffSegExtension.evaluation.metrics import dice  # noqa: E402
from DiffSegExtension.inference.segment import SegmentOptions, segment_case  # noqa: E402
from DiffSegExtension.model_card import LoadedModel, load_model, resolve_model  # noqa: E402
from DiffSegExtension.network import DenoisingUNet, count_parameters  # noqa: E402


def process_run(args: list[str], out: Path, device: str) -> dict:
    """``diffseg ARGS`` as a process on ``device`` writing ``out`` (:func:`bench_speed.engine_run`)."""
    return engine_run([*args, "--device", device], out)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def in_process(model: LoadedModel, case, options: SegmentOptions, repeats: int, bf16: bool = False) -> dict:
    """``segment_case`` ``repeats`` + 1 times in this process (the first warms the device up and is not counted)."""
    times, seg = [], None
    for _ in range(repeats + 1):
        autocast = torch.autocast(options.device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        synchronize(options.device)
        start = time.perf_counter()
        with autocast:
            seg = segment_case(model, case, options)
        synchronize(options.device)
        times.append(time.perf_counter() - start)
    return {"s": statistics.median(times[1:]), "first_s": times[0], "all_s": times,
            "passes": seg.passes, "slices": len(seg.prepared.source_slices), "mask": seg.mask}


def paper_model(modalities: tuple[str, ...]) -> LoadedModel:
    """The ``paper`` preset with random weights (seed 0) for ``modalities``."""
    config = preset("paper", list(modalities))
    torch.manual_seed(0)
    network = DenoisingUNet(config.network).eval()
    return LoadedModel(folder=REPO, card={"name": "paper (random weights)"}, config=config, network=network)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE)
    parser.add_argument("--model", default="brats-regions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda", help="cuda (cpu only to try the script out)")
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA GPU here; run it on a machine with one")
    keep_freed_memory()
    model_dir = str(resolve_model(args.model))
    model = load_model(model_dir)
    defaults = model.inference_defaults
    default = Recipe(defaults["ensemble"], defaults["steps"], defaults["members"], defaults.get("screen_steps"),
                     defaults["sampler"], defaults["min_component_probability"])
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    print(f"# DiffSeg GPU benchmark — {gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{args.case.name}, model {model.name}\n", flush=True)
    figures: dict = {"gpu": gpu, "torch": torch.__version__, "case": args.case.name, "model": model.name}

    case = load_case(args.case, model.modalities, optional=model.optional_modalities)
    options = default.options()
    options.device = args.device
    warm = in_process(model, case, options, args.repeats)
    warm_bf16 = in_process(model, case, options, args.repeats, bf16=True)
    agreement = dice(warm_bf16.pop("mask")[0], warm["mask"][0])
    warm.pop("mask")
    figures["warm_default"], figures["warm_default_bf16"] = warm, {**warm_bf16, "wt_dice_vs_fp32": agreement}
    print(f"  warm default: {warm['s']:.2f} s (first {warm['first_s']:.2f} s); bf16 {warm_bf16['s']:.2f} s, "
          f"WT Dice vs fp32 {agreement:.4f}", flush=True)

    if not args.skip_paper:
        paper = paper_model(tuple(m for m in model.modalities if m in case.images))  # the case's sequences
        paper_options = REFERENCE_RECIPE.options()
        paper_options.device = args.device
        for name, bf16 in (("paper_fp32", False), ("paper_bf16", True)):
            row = in_process(paper, case, paper_options, max(1, args.repeats - 1), bf16=bf16)
            row.pop("mask")
            figures[name] = {**row, "parameters_M": count_parameters(paper.network) / 1e6}
            print(f"  {name}: {row['s']:.1f} s (first {row['first_s']:.1f} s)", flush=True)
        del paper
        if args.device == "cuda":
            torch.cuda.empty_cache()  # for the processes that follow
    segment = ["segment", "--model", model_dir, "--input", str(args.case)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {"default": [], "teacher": [], "roi": [], "refine": []}
        for _ in range(args.repeats):  # interleaved
            runs["default"].append(process_run([*segment, *default.args()], tmp / "volume", args.device))
            click, roi = tumour_click(tmp / "volume")
            runs["refine"].append(process_run(["refine", "--model", model_dir, "--input", str(args.case), "--previous",
                                               str(tmp / "volume"), f"--include={click}"], tmp / "refined", args.device))
            runs["roi"].append(process_run([*segment, *default.args(), "--slices", roi], tmp / "roi", args.device))
            runs["teacher"].append(process_run([*segment, *REFERENCE_RECIPE.args()], tmp / "teacher", args.device))
            print("  processes, wall / engine s: " + ", ".join(f"{name} {rows[-1]['wall_s']:.1f} / {rows[-1]['engine_s']:.2f}"
                                                           for name, rows in runs.items()), flush=True)
    figures["processes"] = runs

    if args.device == "cuda":
        figures["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
        print(f"\nPeak GPU memory: {figures['peak_gpu_memory_gib']:.1f} GiB.")

    med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    slices = warm["slices"]
    print(f"\n| on {gpu} ({args.case.name}, {slices} brain slices; median of {args.repeats}) | wall s "
          "(process: start-up, CUDA, writing incl.) | engine s |")
    print("|---|---|---|")
    print(f"| default ({default}), `diffseg segment` process | {med(runs['default'], 'wall_s'):.1f} | "
          f"{med(runs['default'], 'engine_s'):.2f} |")
    print(f"| default, in a process that keeps the model on the GPU | — | {warm['s']:.2f} |")
    print(f"| default under bfloat16 autocast, same process | — | {warm_bf16['s']:.2f} (WT Dice vs float32 "
          f"{agreement:.4f}) |")
    print(f"| default, ROI of 30 slices, process | {med(runs['roi'], 'wall_s'):.1f} | {med(runs['roi'], 'engine_s'):.2f} |")
    print(f"| one `diffseg refine` include click, process | {med(runs['refine'], 'wall_s'):.1f} | "
          f"{med(runs['refine'], 'engine_s'):.2f} |")
    print(f"| teacher ({REFERENCE_RECIPE}), process | {med(runs['teacher'], 'wall_s'):.1f} | "
          f"{med(runs['teacher'], 'engine_s'):.2f} |")
    for name in ("paper_fp32", "paper_bf16"):
        if name in figures:
            row = figures[name]
            print(f"| `paper` preset ({row['parameters_M']:.1f} M, random weights), {REFERENCE_RECIPE}, "
                  f"{'bfloat16 autocast' if name.endswith('bf16') else 'float32 (TF32)'}, in process | — | "
                  f"{row['s']:.1f} |")
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print("\nTargets")
    print(f"- #11 default model ≤ 3 s per volume: process {med(runs['default'], 'wall_s'):.1f} s wall, engine "
          f"{med(runs['default'], 'engine_s'):.2f} s, warm {warm['s']:.2f} s: "
          f"{met(med(runs['default'], 'wall_s') <= 3)} as a process, {met(warm['s'] <= 3)} warm")
    for name in ("paper_fp32", "paper_bf16"):
        if name in figures:
            print(f"- #11 paper preset ≤ 30 s per volume with 5 members ({name}): {figures[name]['s']:.1f} s: "
                  f"{met(figures[name]['s'] <= 30)}")
    print(f"- #10 one interaction ≤ 1 s on a GPU: `diffseg refine` process {med(runs['refine'], 'wall_s'):.1f} s "
          f"(engine {med(runs['refine'], 'engine_s'):.2f} s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=lambda v: v.tolist() if isinstance(v, np.ndarray)
                                        else str(v)))


if __name__ == "__main__":
    main()
