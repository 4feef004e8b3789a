"""Evaluation report of a DiffSeg model on its validation cases → docs/results.md + docs/figures/*.png.

    python benchmarks/eval_report.py --model brats-regions --out docs --baseline runs/baseline-regions
        --flair-model brats-flair [--subset-stride 4] [--data ROOT ...] [--cases NAME ...] [--threads 1] [--quick]

Every number is measured by this script (scored per region by the engine's ``case_metrics``),
the command line is printed at the top, and no path of this machine appears. Sections: split and data;
full-volume validation with the card's default sampler per region and case; ensemble sizes 1, 3, 5, 10
(the first k members of ONE 10-member run); every accepted sequence subset on every K-th brain slice;
FLAIR alone vs a FLAIR-only model on the same slices; the deterministic baseline (MC dropout at the
ensemble's compute) in the same tables; the worst case in pictures; the targets of issue 8.
``--quick`` runs every section with tiny settings (smoke test only: its numbers mean nothing).
Each finished step is kept in ``--cache`` (:mod:`benchmarks.evaluation.cache`; default runs/eval_report_cache,
outside the tracked tree): run the same command again after an interruption and it resumes; the report
says how many steps came from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.baseline_model import load_baseline, matched_passes, segment_baseline, segment_prepared  # noqa: E402
from benchmarks.evaluation import figures  # noqa: E402
from benchmarks.evaluation.cache import StepCache  # noqa: E402
from benchmarks.evaluation import markdown as md  # noqa: E402
from benchmarks.evaluation.cases import card_roots, load_cases, sequence_subsets, shown_argv, shown_path  # noqa: E402
from benchmarks.evaluation.measure import (Settings, diffusion_segment, prepare_for, run_full_volume,  # noqa: E402
                                           stride_sources, subset_rows, with_defaults_from)
from benchmarks.evaluation.sections import (ROBOT_USER_HEADING, baseline_section, build_targets,  # noqa: E402
                                            reproduce_section, robot_user_section, split_section)
from benchmarks.robot_user_report import from_saved  # noqa: E402
from DiffSegExtension.commands.common import add_threads_argument, apply_threads  # noqa: E402
from DiffSegExtension.evaluation.evaluate import case_metrics  # noqa: E402
from DiffSegExtension.model_card import load_model  # noqa: E402

FIGURES = {"ensemble": "ensemble_size", "subsets": "sequence_subsets", "worst": "worst_case", "robot": "robot_user"}


def figure(key: str) -> str:
    """A figure's path relative to results.md."""
    return f"figures/{FIGURES[key]}.png"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="brats-regions", help="model folder or bundled model name")
    p.add_argument("--data", type=Path, nargs="*", help="data roots (default: the model card's data.roots)")
    p.add_argument("--cases", nargs="*", help="case names (default: the model card's validation cases)")
    p.add_argument("--out", type=Path, default=REPO / "docs", help="folder for results.md, results.json, figures/")
    p.add_argument("--subset-stride", type=int, default=4, help="sequence subsets on every K-th brain slice")
    p.add_argument("--baseline", type=Path, help="region baseline folder (benchmarks/baseline_unet.py)")
    p.add_argument("--baseline-passes", type=int, help="MC-dropout passes (default: matched to the ensemble's FLOPs)")
    p.add_argument("--flair-model", help="FLAIR-only model to compare with the model given FLAIR alone")
    p.add_argument("--robot-user", type=Path, help="output folder of benchmarks/robot_user.py: its curve becomes §8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="(slice, member) items per network pass (default: engine's)")
    add_threads_argument(p)
    p.add_argument("--quick", action="store_true", help="tiny settings: smoke test of every section")
    p.add_argument("--cache", type=Path, default=REPO / "runs" / "eval_report_cache",
                   help="folder of finished steps, to resume an interrupted run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    apply_threads(args)
    started = time.perf_counter()
    log = lambda text: print(text, flush=True)  # noqa: E731
    model = load_model(args.model)
    common = dict(seed=args.seed, device=args.device, batch_size=args.batch_size, subset_stride=args.subset_stride)
    settings = (Settings.quick(sampler=model.inference_defaults["sampler"], **common) if args.quick
                else with_defaults_from(model, Settings(**common)))
    card = model.card
    roots = args.data or card_roots(card)
    names = args.cases or card.get("data", {}).get("validation") or []
    if not names:
        raise SystemExit("no cases: the model card has no validation cases; give --cases")
    cases = load_cases(roots, names, model.modalities, model.optional_modalities)
    log(f"{model.name}: {len(cases)} cases, settings {settings}")

    baseline = load_baseline(args.baseline) if args.baseline else None
    reference = load_model(args.flair_model) if args.flair_model else None
    cache = StepCache(args.cache, {
        "model": model.card.get("weights_sha256"), "roots": [shown_path(r) for r in roots],
        "settings": asdict(settings), "quick": args.quick,
        "baseline": baseline.card.get("weights_sha256") if baseline else None, "baseline_passes": args.baseline_passes,
        "flair_model": reference.card.get("weights_sha256") if reference else None})
    runs = [cache.volume(f"volume-{case.name}", partial(run_full_volume, model, case, settings, log)) for case in cases]
    size_rows = {k: [row for run in runs for row in run.rows[k]] for k in sorted(settings.sizes)}
    default_rows = size_rows[settings.members]
    sources = {run.case: stride_sources(run, settings.subset_stride) for run in runs}

    passes, baseline_rows = None, None
    if baseline is not None:
        passes = matched_passes(model.network, baseline, settings.members * settings.steps)
        passes["matched"] = passes["passes"]
        passes["passes"] = args.baseline_passes or passes["matched"]
        baseline_rows = []

        def baseline_case(case):
            seg = segment_baseline(baseline, case, passes["passes"], seed=args.seed, device=args.device)
            log(f"  baseline {case.name}: {seg.seconds:.1f} s, {passes['passes']} MC-dropout passes per slice")
            return case_metrics(seg, case)

        for case in cases:
            baseline_rows += cache.rows(f"baseline-{case.name}", partial(baseline_case, case))

    methods = {"diffusion": (diffusion_segment(model, settings), partial(prepare_for, model))}
    if baseline is not None:
        methods["baseline"] = (partial(segment_prepared, baseline, passes=passes["passes"], seed=args.seed,
                                       device=args.device), baseline.prepare)
    subset_results = []
    for subset in sequence_subsets(model.modalities, model.optional_modalities):
        for method, (segment, prepare) in methods.items():
            rows = [row for case in cases for row in cache.rows(
                f"subset-{'+'.join(subset)}-{method}-{case.name}",
                partial(subset_rows, segment, prepare, case, subset, sources[case.name]))]
            subset_results.append({"subset": "+".join(subset), "modalities": list(subset), "method": method, "rows": rows})
            log(f"  subset {'+'.join(subset)} {method}: WT Dice {md.region_mean(rows, 'wt', 'dice'):.3f}")

    flair = None
    if reference is not None:
        subset = tuple(reference.modalities)
        if subset not in sequence_subsets(model.modalities, model.optional_modalities):
            raise SystemExit(f"--flair-model reads {list(subset)}, which {model.name} cannot be given alone")
        ref_settings = replace(settings, sampler=reference.inference_defaults["sampler"]) if args.quick else \
            with_defaults_from(reference, settings)
        rows = [row for case in cases for row in cache.rows(
            f"flair-{case.name}", partial(subset_rows, diffusion_segment(reference, ref_settings),
                                          partial(prepare_for, reference), case, subset, sources[case.name]))]
        ours = next(r for r in subset_results if r["modalities"] == list(subset) and r["method"] == "diffusion")
        flair = {"model": reference.name, "folder": shown_path(reference.folder), "modalities": list(subset),
                 "settings": asdict(ref_settings), "rows": rows, "region_rows": ours["rows"]}

    fig_dir = args.out / "figures"
    figures.ensemble_size(size_rows, model.regions, fig_dir / f"{FIGURES['ensemble']}.png")
    figures.subsets(_subset_means(subset_results), model.regions, fig_dir / f"{FIGURES['subsets']}.png")
    wt_dice = {r["case"]: r["dice"] for r in default_rows if r["region"] == "wt"}
    worst = min(runs, key=lambda run: wt_dice[run.case])
    figures.worst_case(worst.figure, fig_dir / f"{FIGURES['worst']}.png",
                       f"WORST case {worst.case}: WT Dice {wt_dice[worst.case]:.3f}")

    targets = build_targets(default_rows, model.regions, baseline_rows, flair, settings)
    robot = json.loads((args.robot_user / "robot_user.json").read_text()) if args.robot_user else None
    robot_text = None
    if robot is not None:
        robot_text, draw = from_saved(robot, ROBOT_USER_HEADING)
        draw(fig_dir / f"{FIGURES['robot']}.png")
    wall = time.perf_counter() - started
    text = report_text(args, argv, model, settings, roots, names, runs, size_rows, subset_results, flair, baseline,
                       passes, baseline_rows, worst, wt_dice, targets, wall, cache, robot_text)
    results = {"command": shown_argv(argv), "model": model.name, "settings": asdict(settings),
               "sizes": {str(k): v for k, v in size_rows.items()}, "subset_slices": sources,
               "subsets": subset_results, "flair": flair, "baseline": baseline_rows, "baseline_compute": passes,
               "worst_case": {"case": worst.case, "slice": worst.figure["slice"]}, "targets": targets,
               "robot_user": robot and {"protocol": robot["protocol"], "mean": robot["mean"], "targets": robot["targets"]},
               "seconds": wall,
               "steps": {"measured": cache.computed, "from_cache": cache.reused}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text, encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=_json), encoding="utf-8")
    log(f"wrote {shown_path(args.out.resolve() / 'results.md')} in {wall / 60:.1f} min")
    return results


def _subset_means(subset_results: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``{subset: {method: {region: mean Dice}}}`` for the subsets figure."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in subset_results:
        out.setdefault(r["subset"], {})[r["method"]] = {g: md.region_mean(r["rows"], g, "dice")
                                                        for g in md.regions_of(r["rows"])}
    return out


def report_text(args, argv, model, settings, roots, names, runs, size_rows, subset_results, flair, baseline, passes,
                baseline_rows, worst, wt_dice, targets, wall, cache, robot_text=None) -> str:
    default_rows = size_rows[settings.members]
    label = f"{settings.sampler} {settings.steps} steps × {settings.members} members"
    regions = list(model.regions)
    stride, slices = settings.subset_stride, sum(len(r.source_slices) for r in runs)
    text = [f"# DiffSeg evaluation — model `{model.name}`\n",
            f"Command: `{shlex.join(['python', 'benchmarks/eval_report.py', *shown_argv(argv)])}`\n",
            f"Written {time.strftime('%Y-%m-%d %H:%M')} on {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), device "
            f"`{args.device}`; " + _provenance(wall, cache)]
    if args.quick:
        text.append("> **QUICK SMOKE RUN** (`--quick`): tiny settings to check the machinery. The numbers below "
                    "mean nothing about the model's quality.\n")
    text += ["## Targets of issue 8\n", md.target_rows(targets), "\n", split_section(model, roots, names),
             f"## 2. Full-volume validation — default {label} (model card)\n",
             f"Every brain slice of each validation case ({slices} slices in all); metrics on the whole volume "
             "against the case's label, one table per region the labels annotate (nested WT ⊇ TC ⊇ ET, label map "
             "4 = ET, 1 = TC − ET, 2 = WT − TC). AUROC: how well the uncertainty (variance of the binary members) "
             "ranks wrong voxels above right ones inside the brain (0.5 = chance). QU-BraTS 2020: uncertainty map "
             "= 100 × entropy of the ensemble probability; Dice AUC, filtered true-positive (FTP) and "
             "true-negative (FTN) ratio AUCs over 41 thresholds inside the brain; score = (Dice AUC + (1 − FTP AUC) "
             "+ (1 − FTN AUC)) / 3. Seconds per volume = preparation + sampling + aggregation/restoring.\n",
             md.per_case_tables(default_rows),
             f"\n## 3. Ensemble size (first k members of one {settings.full_members}-member run)\n",
             "Members are keyed by (seed, slice, member), so the first k members of this run are exactly a k-member "
             "run; seconds of k = preparation + sampling of members 1…k (timed chunk by chunk) + aggregation. "
             "One member has no uncertainty (AUROC 0.5).\n", md.ensemble_size_table(size_rows),
             f"\n![Dice, AUROC and QU-BraTS score vs ensemble size]({figure('ensemble')})\n\n",
             f"## 4. Available sequences (one brain slice in {stride})\n",
             f"Every input subset the model accepts ({', '.join(model.config.network.required_modalities)} required"
             f"{', plus any of ' + ', '.join(model.optional_modalities) if model.optional_modalities else ''}), "
             f"each sequence left out really absent (zeroed, presence plane 0). To keep the CPU cost bearable, on "
             f"one brain slice in {stride} of each case (positions {stride // 2}, {stride // 2 + stride}, … of its "
             f"brain slices; the same slices for every row), scored on those slices only; default {label}"
             + (f"; the baseline with {passes['passes']} MC-dropout passes" if passes else "") + ".\n",
             md.subset_table(subset_results, regions), f"\n![Dice per sequence subset]({figure('subsets')})\n\n",
             flair_section(flair, stride),
             baseline_section(baseline, passes, baseline_rows, default_rows, model, settings),
             "## 7. Worst case\n",
             f"The case with the lowest WT Dice ({worst.case}, {md.fmt(wt_dice[worst.case])}), on its slice with the "
             f"most wrong region voxels; uncertainty as the QU-BraTS map (0 certain … 100):\n\n"
             f"![worst case]({figure('worst')})\n\n",
             robot_user_section(robot_text, figure('robot')),
             reproduce_section(shown_argv(argv), settings)]
    return "\n".join(text)


def _provenance(wall: float, cache: StepCache) -> str:
    """Whether every number was measured in this run, or how many steps came from earlier runs of the same command."""
    if not cache.reused:
        return f"the whole report took {wall / 60:.1f} min. Every number below was measured in this run.\n"
    total = len(cache.reused) + len(cache.computed)
    counted = (f"all {total} steps" if not cache.computed else f"{len(cache.reused)} of its {total} steps")
    rest = f", {len(cache.computed)} were measured in this run" if cache.computed else ""
    return (f"this run took {wall / 60:.1f} min: {counted} (a case's full volume, baseline, FLAIR-only comparison or "
            f"sequence subset) come from earlier, interrupted runs of the same command with the same model, baseline "
            f"and settings{rest}. Seconds are those of the run that measured the step, on a CPU that other jobs may "
            "have shared: for speed, see `benchmarks/bench_speed.py`.\n")


def flair_section(flair: dict | None, stride: int) -> str:
    if flair is None:
        return "## 5. FLAIR alone vs the FLAIR-only model\n\nNot run: give `--flair-model brats-flair`.\n\n"
    s = flair["settings"]
    return (f"## 5. FLAIR alone vs the FLAIR-only model `{flair['model']}`\n\n"
            f"The same cases and slices as §4 (one brain slice in {stride}); `{flair['model']}` ({flair['folder']}) "
            f"with its own defaults ({s['sampler']} {s['steps']} steps × {s['members']} members), the region model "
            f"given {', '.join(flair['modalities'])} only. Whole-tumour Dice on those slices:\n\n"
            + md.flair_table(flair["rows"], flair["region_rows"], flair["model"]) + "\n")


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    main()
