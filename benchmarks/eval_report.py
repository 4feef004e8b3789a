"""Evaluation report of a DiffSeg model on its validation cases → docs/results.md + docs/figures/*.png.

    python benchmarks/eval_report.py --model brats-flair --out docs [--data ROOT ...] [--cases NAME ...]
        [--stride 8] [--ddpm1000-slices 2] [--baseline runs/baseline] [--msd4 runs/msd4] [--quick]

Every number in the report is measured in the run that writes it; the command line is printed at the
top. Sections: split and data; full-volume validation with the model card's default sampler and
ensemble sizes 1, 2, 3, 5, 10 (the first k members of ONE 10-member run); sampler × steps on every
K-th brain slice and the seed's DDPM-1000 recipe on the slices with most tumour; uncertainty quality
and calibration; the deterministic baseline; the 4-modality model; the targets of issue 4.
``--quick`` runs every section with tiny settings (smoke test only: its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.baseline_unet import card_roots, evaluate_baseline, load_baseline, load_cases  # noqa: E402
from benchmarks.evaluation import figures  # noqa: E402
from benchmarks.evaluation import markdown as md  # noqa: E402
from benchmarks.evaluation.measure import (Settings, pooled_reliability, quality_speed_grid, reference_comparison,  # noqa: E402
                                run_full_volume, stride_slices, top_tumour_slices, with_defaults_from)

from DiffSegExtension.commands.common import add_threads_argument, apply_threads  # noqa: E402
from DiffSegExtension.data.loading import load_case  # noqa: E402
from DiffSegExtension.data.modalities import list_cases  # noqa: E402
from DiffSegExtension.ensemble import aggregate  # noqa: E402
from DiffSegExtension.evaluation.evaluate import evaluate_cases  # noqa: E402
from DiffSegExtension.evaluation.metrics import dice  # noqa: E402
from DiffSegExtension.inference.segment import SegmentOptions  # noqa: E402
from DiffSegExtension.model_card import load_model  # noqa: E402

SEED_SLICES = REPO.parent / "shared" / "data" / "brats2020_slices_seed_layout" / "training"


def evaluate_msd4(model_dir: Path, roots: list[Path], settings: Settings, quick: bool, log=print) -> dict:
    """The 4-modality model on its validation material (default: the seed-layout BraTS20 slices)."""
    model = load_model(model_dir)
    d = model.inference_defaults
    options = SegmentOptions(members=settings.members if quick else d["members"], sampler=d["sampler"],
                             steps=settings.steps if quick else d["steps"], seed=settings.seed, device=settings.device)
    cases = [load_case(p, model.modalities, with_label=True, allow_2d=True) for root in roots for p in list_cases(root)]
    rows, segs = evaluate_cases(model, cases, options, keep=True)
    items, masks, truths = [], [], []
    show = model.modalities.index("flair") if "flair" in model.modalities else 0
    for case, seg in zip(cases, segs):
        result = aggregate(seg.members)
        k = int(seg.members.float().mean(0).flatten(1).sum(1).argmax()) if seg.members.shape[1] > 1 else 0
        items.append({"name": case.name, "image": seg.prepared.images[k, show].numpy(), "truth": seg.prepared.label[k].numpy(),
                      "mask": result.mask[k].numpy(), "probability": result.probability[k].numpy(),
                      "uncertainty": result.uncertainty[k].numpy()})
        masks.append(seg.mask.ravel())
        truths.append(case.label.ravel())
    log(f"  msd4: {len(rows)} cases, mean Dice {md.mean(r['dice'] for r in rows):.3f}")
    return {"model": str(model_dir), "card": {k: model.card.get(k) for k in ("name", "title", "data", "training",
                                                                           "parameters", "preset", "data_sources")},
            "options": asdict(options), "rows": rows, "pooled_dice": dice(np.concatenate(masks), np.concatenate(truths)),
            "items": items[:8], "roots": [str(r) for r in roots]}


def build_targets(size_rows, settings, reference, baseline_rows, figure) -> list[dict]:
    default = size_rows[settings.members]
    mean = lambda key, rows=default: md.mean(r[key] for r in rows)  # noqa: E731
    d_ref = md.mean(r["default_dice"] - r["reference_dice"] for r in reference)
    passes = settings.steps * settings.members
    undefined = sum(1 for r in default if math.isnan(r["hd95_mm"]))
    targets = [
        {"target": "whole-tumour Dice ≥ 0.80 (mean, validation)", "measured": f"{mean('dice'):.3f}",
         "met": mean("dice") >= 0.80, "where": "§2"},
        {"target": "HD95 ≤ 10 mm (mean, validation)", "measured": f"{mean('hd95_mm'):.1f} mm"
         + (f" ({undefined} case(s) with an empty mask: HD95 undefined)" if undefined else ""),
         "met": not undefined and mean("hd95_mm") <= 10.0, "where": "§2"},
        {"target": f"{settings.members}-member ensemble beats the single sample (mean Dice)",
         "measured": f"{mean('dice'):.3f} vs {mean('dice', size_rows[1]):.3f}",
         "met": mean("dice") > mean("dice", size_rows[1]), "where": f"§2, [figure]({figure('ensemble')})"},
        {"target": "uncertainty AUROC for voxel error ≥ 0.90", "measured": f"{mean('auroc_uncertainty_error'):.3f}",
         "met": mean("auroc_uncertainty_error") >= 0.90 if not math.isnan(mean("auroc_uncertainty_error")) else None,
         "where": "§4"},
        {"target": f"default sampler within 0.01 Dice of {settings.reference_sampler.upper()}-{settings.reference_steps}"
                   " at ≤ 100 passes per slice (5 members)",
         "measured": f"Δ Dice (default − reference) {d_ref:+.3f} at {passes} passes/slice (met = not worse by more "
                     "than 0.01)", "met": d_ref >= -0.01 and passes <= 100,
         "where": f"§3, [figure]({figure('passes')})"},
    ]
    if baseline_rows:
        b, dd = md.mean(r["dice"] for r in baseline_rows), mean("dice")
        winner = "diffusion" if dd > b else "baseline" if b > dd else "tie"
        targets.append({"target": "diffusion vs deterministic baseline reported, whichever wins",
                        "measured": f"Dice {dd:.3f} (diffusion) vs {b:.3f} (baseline): **{winner}** wins",
                        "met": True, "where": "§6"})
    else:
        targets.append({"target": "diffusion vs deterministic baseline reported", "measured": "no --baseline given",
                        "met": None, "where": "§6"})
    return targets


def split_section(card: dict, roots: list[Path], cases: list[str]) -> str:
    data, training = card.get("data", {}), card.get("training", {})
    options = training.get("options", {})
    lines = ["## 1. Split and data\n",
             f"- Model `{card['name']}`{' — ' + card['title'] if card.get('title') else ''}; preset `{card.get('preset', '?')}`, "
             f"{card.get('parameters', 0) / 1e6:.2f} M parameters, inputs: {', '.join(card['modalities'])}; "
             "target: whole tumour (every label > 0).",
             f"- Training cases ({len(data.get('train', []))}): {', '.join(data.get('train', [])) or 'not recorded'}.",
             f"- Validation cases ({len(data.get('validation', []))}, split by case before training): "
             f"{', '.join(data.get('validation', [])) or 'not recorded'}.",
             f"- Evaluated here: {', '.join(cases)}" + ("" if set(cases) <= set(data.get("validation", cases))
                                                         else " — **includes cases outside the validation split**") + ".",
             f"- Data roots: {', '.join(f'`{r}`' for r in roots)}; excluded from training: "
             f"{', '.join(data.get('excluded', [])) or 'none'}."]
    for source, text in (card.get("data_sources") or {}).items():
        lines.append(f"- Source `{source}`: {text}.")
    if training:
        lines.append(f"- Training: {training.get('iteration', '?')} iterations × batch {options.get('batch_size', '?')}, "
                     f"crop {options.get('crop') or card['config']['preprocess']['train_crop']} px, lr {options.get('lr', '?')}, "
                     f"{training.get('seconds', 0) / 3600:.2f} h ({card.get('training_hardware', 'hardware not recorded')}).")
    lines.append("- The model saw only the training cases' slices (random crops, flips, intensity jitter); no "
                 "setting in this report was tuned on the validation cases by this script.\n")
    return "\n".join(lines) + "\n"


def msd4_section(m: dict | None, figure) -> str:
    if m is None:
        return ("## 7. Four-modality model (paper input configuration)\n\nNot run: give `--msd4 runs/msd4` "
                "(built by `scripts/build_msd4_model.py`).\n\n")
    card, training = m["card"], m["card"].get("training") or {}
    data = card.get("data") or {}
    header = ["case", "Dice", "HD95 (mm)", "AUROC unc./error", "UEO", "ECE", "truth (ml)", "predicted (ml)", "s"]
    body = [[r["case"], r["dice"], r["hd95_mm"], r["auroc_uncertainty_error"], r["ueo"], r["ece"], r["truth_ml"],
             r["predicted_ml"], r["seconds"]] for r in m["rows"]]
    o = m["options"]
    return ("## 7. Four-modality model (paper input configuration: T1, T1ce, T2, FLAIR)\n\n"
            "**Thin data — read as an end-to-end check, not as a quality figure.** The model was trained on the 20 "
            "overlapping MSD patches of ONE subject (MSD BRATS_009) and is validated on a DIFFERENT subject: the 6 "
            "labelled axial slices (080–085, 2D, min–max scaled, RAS identity affine) of BraTS20 subject 001 in the "
            "reference implementation's layout.\n\n"
            f"- Model `{m['model']}`: preset `{card.get('preset')}`, {(card.get('parameters') or 0) / 1e6:.2f} M "
            f"parameters, {training.get('iteration', '?')} iterations, {training.get('seconds', 0) / 3600:.2f} h; "
            f"training cases {len(data.get('train', []))}, validation {', '.join(data.get('validation', []))}.\n"
            f"- Sampling: {o['sampler']} {o['steps']} steps × {o['members']} members; data: "
            f"{', '.join(f'`{r}`' for r in m['roots'])}.\n\n"
            + md.table(header, body) +
            f"\nDice pooled over all slices: **{md.fmt(m['pooled_dice'])}**.\n\n![4-modality slices]({figure('msd4')})\n\n")


def reproduce_section(argv: list[str], settings: Settings) -> str:
    return f"""## 8. How to reproduce

1. Install the engine (`pip install -e .` in the repository, Python 3.10+, CPU PyTorch is enough) and put the
   data next to the repository (`../shared/data`, see its README).
2. Bundled model: `python scripts/build_brats_model.py` (trains and writes `Resources/Models/brats-flair`).
3. Baseline on the same split and budget: `python benchmarks/baseline_unet.py --split-from brats-flair --out runs/baseline`.
4. Four-modality model: `python scripts/build_msd4_model.py` (writes `runs/msd4`).
5. This report: `{shlex.join(['python', 'benchmarks/eval_report.py', *argv])}`.

Everything is seeded (sampling seed {settings.seed}: the noise of member m of slice s depends only on (seed, s, m)),
so the Dice values repeat exactly on the same machine; the seconds depend on the machine and its load.
`--quick` runs every section with tiny settings to check the machinery (minutes); its numbers mean nothing.
"""


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="brats-flair", help="model folder or bundled model name")
    p.add_argument("--data", type=Path, nargs="*", help="data roots (default: the model card's data.roots)")
    p.add_argument("--cases", nargs="*", help="case names (default: the model card's validation cases)")
    p.add_argument("--out", type=Path, default=REPO / "docs", help="folder for results.md, results.json, figures/")
    p.add_argument("--stride", type=int, default=8, help="quality/speed grid on every K-th brain slice")
    p.add_argument("--ddpm1000-slices", type=int, default=2, help="slices per case (most tumour) for the seed recipe")
    p.add_argument("--baseline", type=Path, help="deterministic baseline folder (benchmarks/baseline_unet.py)")
    p.add_argument("--msd4", type=Path, help="4-modality model folder (scripts/build_msd4_model.py)")
    p.add_argument("--msd4-data", type=Path, nargs="*", default=[SEED_SLICES], help="its validation cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="(slice, member) items per network pass (default: engine's)")
    add_threads_argument(p)
    p.add_argument("--quick", action="store_true", help="tiny settings: smoke test of every section")
    args = p.parse_args(argv)
    apply_threads(args)
    started = time.perf_counter()
    model = load_model(args.model)
    common = dict(seed=args.seed, device=args.device, batch_size=args.batch_size, reference_slices=args.ddpm1000_slices)
    if args.quick:
        settings = Settings.quick(sampler=model.inference_defaults["sampler"], stride=args.stride, **common)
    else:
        settings = with_defaults_from(model, Settings(stride=args.stride, **common))
    card = model.card
    roots = args.data or card_roots(card)
    names = args.cases or card.get("data", {}).get("validation") or []
    if not names:
        raise SystemExit("no cases: the model card has no validation cases; give --cases")
    cases = load_cases(roots, names, model.modalities)
    log = lambda text: print(text, flush=True)  # noqa: E731
    log(f"{model.name}: {len(cases)} cases, settings {settings}")

    runs = [run_full_volume(model, case, settings, log) for case in cases]
    size_rows = {k: [run.rows[k] for run in runs] for k in sorted(settings.sizes)}
    pooled = pooled_reliability(runs)
    grid = quality_speed_grid(model, [stride_slices(r, settings.stride) for r in runs], settings, log)
    reference = reference_comparison(model, [top_tumour_slices(r, settings.reference_slices) for r in runs], settings, log)
    baseline_rows, baseline_card = None, None
    if args.baseline:
        baseline = load_baseline(args.baseline)
        baseline_card = baseline.card
        baseline_rows = evaluate_baseline(baseline, cases, device=args.device)
    msd4 = evaluate_msd4(args.msd4, args.msd4_data, settings, args.quick, log) if args.msd4 else None

    fig_dir = args.out / "figures"
    rel = lambda name: f"figures/{name}.png"  # noqa: E731
    names_of = {"passes": "dice_vs_passes", "ensemble": "ensemble_size", "reliability": "reliability",
                "example": "example_case", "worst": "worst_case", "msd4": "msd4_slices"}
    figure = lambda key: rel(names_of[key])  # noqa: E731
    figures.dice_vs_passes(grid, reference, fig_dir / f"{names_of['passes']}.png")
    figures.ensemble_size(size_rows, fig_dir / f"{names_of['ensemble']}.png")
    figures.reliability_diagram(pooled, fig_dir / f"{names_of['reliability']}.png", settings.members)
    default_rows = size_rows[settings.members]
    order = sorted(range(len(runs)), key=lambda i: default_rows[i]["dice"])
    worst, typical = runs[order[0]], runs[order[len(order) // 2]]
    figures.case_figure(typical, settings.members, fig_dir / f"{names_of['example']}.png",
                        f"typical (median Dice) case {typical.case}: Dice {typical.rows[settings.members]['dice']:.3f}")
    figures.case_figure(worst, settings.members, fig_dir / f"{names_of['worst']}.png",
                        f"WORST case {worst.case}: Dice {worst.rows[settings.members]['dice']:.3f}", pick="error")
    if msd4:
        figures.slices_figure(msd4["items"], fig_dir / f"{names_of['msd4']}.png",
                              f"4-modality model on BraTS20 subject 001 slices (pooled Dice {msd4['pooled_dice']:.3f})")

    targets = build_targets(size_rows, settings, reference, baseline_rows, figure)
    label = f"{settings.sampler} {settings.steps} × {settings.members}"
    ref_label = f"{settings.reference_sampler.upper()} {settings.reference_steps} × {settings.members}"
    best = max(r["dice"] for r in grid)
    cheapest = min((r for r in grid if r["dice"] >= best - 0.01), key=lambda r: (r["passes_per_slice"], -r["dice"]))
    default_cell = [r for r in grid if (r["sampler"], r["steps"], r["members"]) == (settings.sampler, settings.steps,
                                                                                     settings.members)]
    one, ens = md.mean(r["dice"] for r in size_rows[1]), md.mean(r["dice"] for r in default_rows)
    wall = time.perf_counter() - started
    text = [f"# DiffSeg evaluation — model `{model.name}`\n",
            f"Command: `{shlex.join(['python', 'benchmarks/eval_report.py', *argv])}`\n",
            f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), device "
            f"`{args.device}`; the whole report took {wall / 60:.1f} min. Every number below was measured in this run.\n"]
    if args.quick:
        text.append("> **QUICK SMOKE RUN** (`--quick`): tiny settings to check the machinery. The numbers below "
                    "mean nothing about the model's quality.\n")
    text += ["## Targets of issue 4\n", md.target_rows(targets), "\n", split_section(card, roots, names),
             f"## 2. Full-volume validation — default {label} (model card)\n",
             "Every brain slice of each validation case; metrics on the whole volume against the whole-tumour label. "
             "AUROC, UEO and ECE are computed on the voxels inside the brain of the sampled slices. Seconds per "
             "volume = preparation + sampling + aggregation/restoring (not file reading/writing).\n",
             md.per_case_table(default_rows),
             f"\n### Ensemble size (first k members of one {settings.full_members}-member run)\n",
             "Members are keyed by (seed, slice, member), so the first k members of this run are exactly a k-member "
             "run; seconds of k = preparation + sampling of members 1…k (timed chunk by chunk) + aggregation.\n",
             md.ensemble_size_table(size_rows),
             f"\nSingle sample (member 1) vs the {settings.members}-member ensemble: mean Dice {md.fmt(one)} vs "
             f"{md.fmt(ens)} (**{'ensemble better' if ens > one else 'ensemble NOT better'}**).\n\n"
             f"![Dice and AUROC vs ensemble size]({figure('ensemble')})\n\n",
             f"## 3. Quality vs speed (every K-th brain slice per case, K = {settings.stride})\n",
             f"{grid[0]['slices']} slices in all ({', '.join(f'{s.case}' for s in runs)}); tumour slices appear in "
             "their natural share. Dice of the ensemble mask over each case's subset, then the mean over cases. "
             "Seconds per slice measured for each cell (engine `sample_ensemble`, batched slices × members); seconds "
             "per volume = that × the mean number of brain slices per case (computed, not a separate run).\n",
             md.grid_table(grid, md.mean(len(r.prepared) for r in runs)),
             (f"\nThe default cell reproduces the full-volume run's members on these slices bit for bit: "
              f"**{md.fmt(default_cell[0]['matches_full_volume'])}**.\n" if default_cell else ""),
             f"\nCheapest cell within 0.01 of the best grid Dice ({best:.3f}): **{cheapest['sampler']} {cheapest['steps']} "
             f"steps** ({cheapest['passes_per_slice']} passes/slice, Dice {cheapest['dice']:.3f}). This is measured on "
             "the validation cases, so use it as a pointer, not as a tuned-and-tested result.\n",
             f"\n### Seed recipe {ref_label} vs default {label}, on the {settings.reference_slices} slice(s) with the most "
             "tumour per case\n", md.reference_table(reference, ref_label, label),
             f"\n![Dice vs passes per slice]({figure('passes')})\n\n",
             "## 4. Uncertainty quality\n",
             f"Uncertainty = variance of the binary members (default {settings.members}-member ensemble). AUROC: how "
             "well the uncertainty ranks wrong voxels above right ones inside the brain (0.5 = chance). UEO: Dice "
             "between {uncertainty > 0} and the error map (UEO max: best threshold). Calibration: the ensemble's "
             "probability (fraction of members) vs the observed tumour fraction.\n",
             md.table(["case", "AUROC", "UEO", "UEO max", "ECE", "brain voxels"],
                      [[r["case"], r["auroc_uncertainty_error"], r["ueo"], r["ueo_max"], r["ece"], run.brain_voxels]
                       for r, run in zip(default_rows, runs)]),
             f"\nPooled over cases ({int(pooled['count'].sum())} brain voxels): ECE **{md.fmt(pooled['ece'])}**.\n\n",
             md.reliability_table(pooled), f"\n![reliability diagram]({figure('reliability')})\n\n",
             "## 5. Example and worst case\n",
             f"Typical case (median Dice), slice with the most tumour:\n\n![example]({figure('example')})\n\n"
             f"Worst case ({worst.case}, Dice {md.fmt(worst.rows[settings.members]['dice'])}), slice with the most "
             f"wrong voxels:\n\n![worst case]({figure('worst')})\n\n",
             "## 6. Diffusion model vs deterministic baseline\n"]
    if baseline_rows:
        o = baseline_card["training"]["options"]
        b, dd = md.mean(r["dice"] for r in baseline_rows), ens
        text += [f"Baseline `{args.baseline}`: {baseline_card['network']['class']} (2D, channels "
                 f"{baseline_card['network']['channels']}, {baseline_card['parameters'] / 1e6:.2f} M parameters), "
                 f"DiceCE loss, trained on the same {len(baseline_card['data']['train'])} cases, "
                 f"{baseline_card['training']['iteration']} iterations × batch {o['batch_size']}, crop {o['crop']} "
                 f"({baseline_card['training']['seconds'] / 3600:.2f} h). Its mask = sigmoid ≥ 0.5; one pass per slice.\n",
                 md.comparison_table(default_rows, baseline_rows, label),
                 f"\n**{'Diffusion model' if dd > b else 'Deterministic baseline' if b > dd else 'Neither'} wins** on "
                 f"mean Dice ({dd:.3f} diffusion vs {b:.3f} baseline).\n\n"]
    else:
        text.append("Not run: give `--baseline runs/baseline` (trained by `benchmarks/baseline_unet.py`).\n\n")
    text += [msd4_section(msd4, figure), reproduce_section(argv, settings)]

    results = {"command": argv, "settings": asdict(settings), "sizes": {str(k): v for k, v in size_rows.items()},
               "reliability": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in pooled.items()},
               "brain_voxels": {r.case: r.brain_voxels for r in runs}, "grid": grid, "reference": reference,
               "baseline": baseline_rows, "msd4": {k: v for k, v in msd4.items() if k != "items"} if msd4 else None,
               "targets": targets, "seconds": wall}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(text), encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=_json), encoding="utf-8")
    log(f"wrote {args.out / 'results.md'} in {wall / 60:.1f} min")
    return results


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    main()
