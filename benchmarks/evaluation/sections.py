"""Text sections of ``docs/results.md`` that describe the run (split, baseline, targets, how to reproduce)."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

from benchmarks.evaluation import markdown as md
from benchmarks.evaluation.cases import shown_path

#: Issue 8's Dice targets per region (mean over validation cases, default settings).
DICE_TARGETS = {"wt": 0.90, "tc": 0.80, "et": 0.75}
HD95_WT_TARGET_MM = 6.0
AUROC_WT_TARGET = 0.90
FLAIR_MARGIN = 0.02


def split_section(model, roots: list[Path], cases: list[str]) -> str:
    card = model.card
    data, training = card.get("data", {}), card.get("training", {})
    options = training.get("options", {})
    net = model.config.network
    validation = data.get("validation", cases)
    lines = ["## 1. Split and data\n",
             f"- Model `{card['name']}`{' — ' + card['title'] if card.get('title') else ''}; preset "
             f"`{card.get('preset', '?')}`, {card.get('parameters', 0) / 1e6:.2f} M parameters; inputs "
             f"{', '.join(net.required_modalities)} (required)"
             + (f", {', '.join(net.optional_modalities)} (optional)" if net.optional_modalities else "")
             + f"; regions {', '.join(r.upper() for r in net.regions)}.",
             f"- Training cases ({len(data.get('train', []))}): {', '.join(data.get('train', [])) or 'not recorded'}.",
             f"- Validation cases ({len(validation)}, split by subject before training): {', '.join(validation)}.",
             f"- Evaluated here: {', '.join(cases)}" + ("" if set(cases) <= set(validation)
                                                         else " — **includes cases outside the validation split**") + ".",
             f"- Data roots: {', '.join(f'`{shown_path(r)}`' for r in roots)}; excluded from training: "
             f"{', '.join(data.get('excluded', [])) or 'none'}."]
    for source, text in (card.get("data_sources") or {}).items():
        lines.append(f"- Source `{source}`: {text}.")
    if training:
        crop = options.get("crop") or model.config.preprocess.train_crop
        hardware = card.get("training_hardware", "hardware not recorded")
        lines.append(f"- Training: {training.get('iteration', '?')} of {options.get('iterations', '?')} iterations × "
                     f"batch {options.get('batch_size', '?')}, crop {crop} px, lr {options.get('lr', '?')}, sequence "
                     f"drop-out {options.get('modality_dropout', 0)}, {training.get('seconds', 0) / 3600:.2f} h ({hardware}).")
    lines.append("- No setting in this report was tuned on the validation cases by this script.\n")
    return "\n".join(lines) + "\n"


def baseline_section(baseline, passes: dict | None, baseline_rows: list[dict] | None, default_rows: list[dict], model,
                     settings) -> str:
    head = "## 6. Deterministic baseline\n\n"
    if baseline is None:
        return head + "Not run: give `--baseline runs/baseline-regions` (trained by `benchmarks/baseline_unet.py`).\n\n"
    card, data = baseline.card, baseline.card["data"]
    mine = model.card.get("data", {})
    same = data["train"] == mine.get("train") and data["validation"] == mine.get("validation")
    o, t = card["training"]["options"], card["training"]
    planned = model.card.get("training", {}).get("options", {})
    same_budget = (o["iterations"], o["batch_size"]) == (planned.get("iterations"), planned.get("batch_size"))
    net = card["network"]
    seconds_d = md.mean(r["seconds"] for r in default_rows if r["region"] == "wt")
    seconds_b = md.mean(r["seconds"] for r in baseline_rows if r["region"] == "wt")
    scores = [(region, md.region_mean(default_rows, region, "qu_score"), md.region_mean(baseline_rows, region, "qu_score"))
              for region in md.regions_of(default_rows)]
    winners = [f"{region.upper()}: **{'diffusion' if d > b else 'baseline' if b > d else 'tie'}** ({md.fmt(d)} vs "
               f"{md.fmt(b)})" for region, d, b in scores]
    return (head +
            f"Baseline `{shown_path(baseline.folder)}`: {net['class']} (2D, channels {net['channels']}, "
            f"{card['parameters'] / 1e6:.2f} M parameters, dropout {net['dropout']}), one sigmoid output per region, "
            f"MONAI DiceCE per region on the items whose label annotates it. Copied from `{card['split_from']}`: "
            f"split {'identical' if same else '**DIFFERENT from this model**'} ({len(data['train'])} training cases), "
            f"inputs and sequence drop-out {o['modality_dropout']} with presence planes, "
            f"{t['iteration']} of {o['iterations']} iterations × batch {o['batch_size']} (budget "
            f"{'identical' if same_budget else '**different**'}), crop {o['crop']}, lr {o['lr']}; "
            f"{t['seconds'] / 3600:.2f} h ({t.get('device', '?')}).\n\n"
            + compute_text(passes, settings, seconds_b, seconds_d)
            + md.per_case_tables(baseline_rows)
            + "\n**Diffusion (default ensemble) vs baseline**, means over cases:\n\n"
            + md.comparison_table(default_rows, baseline_rows)
            + "\nQU-BraTS score winner per region: " + "; ".join(winners) + ".\n\n")


def compute_text(passes: dict, settings, seconds_baseline: float, seconds_diffusion: float) -> str:
    """How the baseline's MC-dropout passes were matched to the ensemble's compute, and the measured seconds."""
    p = passes
    chosen = "" if p["passes"] == p["matched"] else f" (**{p['passes']} set by --baseline-passes instead**)"
    ratio = seconds_baseline / seconds_diffusion if seconds_diffusion else math.nan
    return (f"**Same compute as the ensemble.** Uncertainty from MC dropout: {p['passes']} stochastic passes per slice. "
            f"The {settings.members}-member × {settings.steps}-step ensemble makes {p['diffusion_passes_per_slice']} "
            f"passes of {p['diffusion_gflop_per_pass']:.3f} GFLOP per {p['flop_size'][0]}×{p['flop_size'][1]} slice; "
            f"a baseline pass costs {p['baseline_gflop_per_pass']:.3f} GFLOP, so P = {p['diffusion_passes_per_slice']} "
            f"× {p['diffusion_gflop_per_pass']:.3f} / {p['baseline_gflop_per_pass']:.3f} ≈ {p['matched']} passes match "
            f"its FLOPs{chosen}. Measured: {md.fmt(seconds_baseline)} s per volume (baseline) vs "
            f"{md.fmt(seconds_diffusion)} s (ensemble), ratio {md.fmt(ratio, 2)}. Probability = mean of the passes' "
            "sigmoids (nested per pass: WT ≥ TC ≥ ET), mask = probability ≥ 0.5, uncertainty = variance of the "
            "passes, QU-BraTS map = 100 × entropy of the probability; scored by the same code.\n\n")


def build_targets(rows: list[dict], regions: tuple[str, ...], baseline_rows: list[dict] | None, flair: dict | None,
                  settings) -> list[dict]:
    """Issue 8's targets, each with its measured figure and met / not met / not measured (``met`` None)."""
    targets = []
    for region, goal in DICE_TARGETS.items():
        if region in md.regions_of(rows):
            value = md.region_mean(rows, region, "dice")
            targets.append({"target": f"Dice {region.upper()} ≥ {goal:.2f}", "measured": md.fmt(value),
                            "met": value >= goal, "where": "§2"})
        else:
            targets.append({"target": f"Dice {region.upper()} ≥ {goal:.2f}", "met": None, "where": "§2",
                            "measured": "no such output" if region not in regions else "no case annotates it"})
    wt = [r for r in rows if r["region"] == "wt"]
    undefined = sum(1 for r in wt if math.isnan(r["hd95_mm"]))
    hd = md.mean(r["hd95_mm"] for r in wt)
    targets.append({"target": f"HD95 WT ≤ {HD95_WT_TARGET_MM:.0f} mm", "where": "§2",
                    "measured": f"{md.fmt(hd)} mm" + (f" ({undefined} case(s) with an empty mask: undefined)"
                                                       if undefined else ""),
                    "met": not undefined and hd <= HD95_WT_TARGET_MM})
    auroc = md.mean(r["auroc_uncertainty_error"] for r in wt)
    targets.append({"target": f"uncertainty AUROC for voxel error ≥ {AUROC_WT_TARGET:.2f} (WT)", "where": "§2",
                    "measured": md.fmt(auroc), "met": None if math.isnan(auroc) else auroc >= AUROC_WT_TARGET})
    if baseline_rows:
        pairs = [(g, md.region_mean(rows, g, "qu_score"), md.region_mean(baseline_rows, g, "qu_score"))
                 for g in md.regions_of(rows)]
        targets.append({"target": "QU-BraTS score higher than the baseline's for every region", "where": "§6",
                        "measured": "; ".join(f"{g.upper()} {md.fmt(d)} vs {md.fmt(b)}" for g, d, b in pairs),
                        "met": all(d > b for _, d, b in pairs)})
    else:
        targets.append({"target": "QU-BraTS score higher than the baseline's for every region", "where": "§6",
                        "measured": "no --baseline given", "met": None})
    if flair:
        ref, ours = (md.region_mean(flair[k], "wt", "dice") for k in ("rows", "region_rows"))
        targets.append({"target": f"FLAIR alone: WT Dice within {FLAIR_MARGIN} of `{flair['model']}`", "where": "§5",
                        "measured": f"{md.fmt(ours)} vs {md.fmt(ref)} (Δ {ours - ref:+.3f}; one brain "
                                    f"slice in {settings.subset_stride}; met = not worse by more than {FLAIR_MARGIN})",
                        "met": ours - ref >= -FLAIR_MARGIN})
    else:
        targets.append({"target": f"FLAIR alone: WT Dice within {FLAIR_MARGIN} of the FLAIR-only model", "where": "§5",
                        "measured": "no --flair-model given", "met": None})
    targets.append({"target": "whole volume on this CPU no slower than today's default", "met": None,
                    "measured": "not measured by this report", "where": "`benchmarks/bench_speed.py`"})
    return targets


ROBOT_USER_HEADING = "## 8. Clinician-guided refinement (robot user)"


def robot_user_section(robot_text: str | None, figure_link: str) -> str:
    """§8: the robot user's table, targets and curve (issue 10): ``robot_text`` is a ``benchmarks/robot_user.py``
    run's markdown under :data:`ROBOT_USER_HEADING`."""
    if robot_text is None:
        return (f"{ROBOT_USER_HEADING}\n\nNot run: give `--robot-user DIR`, the output folder of "
                "`benchmarks/robot_user.py`.\n\n")
    return f"{robot_text}\n![Dice after each robot click]({figure_link})\n\n"


def reproduce_section(argv: list[str], settings) -> str:
    return f"""## 9. How to reproduce

1. Install the engine (`pip install -e .` in the repository, Python 3.10+, CPU PyTorch is enough) and put the
   data next to the repository (`../shared/data`, see its README).
2. The model: `python scripts/build_brats_regions_model.py` (trains, then writes `Resources/Models/brats-regions`).
3. The baseline on the same split and budget:
   `python benchmarks/baseline_unet.py --split-from brats-regions --out runs/baseline-regions`.
4. With `--robot-user DIR`: first `python benchmarks/robot_user.py --model MODEL --data ../shared/data/brats2018_4mod
   --out DIR` (add `--compare-model brats-regions` for a guided model).
5. This report: `{shlex.join(['python', 'benchmarks/eval_report.py', *argv])}`.

Everything is seeded (sampling seed {settings.seed}: the noise of member m of slice s depends only on (seed, s, m);
the baseline's dropout masks on the seed), so the numbers repeat on the same machine; the seconds depend on the
machine and its load. `--quick` runs every section with tiny settings (minutes); its numbers mean nothing.
"""
