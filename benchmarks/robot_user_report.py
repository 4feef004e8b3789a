"""Summary, targets, markdown table and curve figure of a robot-user run (see robot_user.py)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Callable

import numpy as np

COLOURS = {"diffusion": "tab:blue", "sphere": "tab:orange", "evidence": "tab:purple", "distance": "tab:gray",
           "compare": "tab:green"}


def methods(protocol: dict, results: dict) -> dict[str, str]:
    """The compared methods of a run, key → label (those its ``results`` hold: older runs lack some)."""
    labels = {"diffusion": f"refine with '{protocol['model']}' (guidance imposed, plus evidence)",
              "sphere": "sphere painted, no diffusion"}
    if protocol.get("reach_mm"):
        labels["evidence"] = "click evidence alone, nothing re-sampled"
        labels["distance"] = "click evidence by distance alone (no tissue likeness), nothing re-sampled"
    if protocol.get("compare_model"):
        labels["compare"] = f"refine with '{protocol['compare_model']}'"
    held = set().union(*(case.keys() for case in results.values())) if results else set(labels)
    return {key: label for key, label in labels.items() if key in held}


def mean_curves(results: dict) -> dict:
    """method → region → mean Dice after 0 … n clicks over the cases."""
    first = next(iter(results.values()))
    return {method: {region: [float(v) for v in np.mean([case[method]["dice"][region]
                                                                     for case in results.values()], axis=0)]
                     for region in first[method]["dice"]} for method in first}


def interaction_stats(results: dict) -> dict:
    """Seconds per refine interaction and the uncertainty inside the corrected error components."""
    clicks = [c for case in results.values() for c in case["diffusion"]["clicks"]]
    seconds = [c["seconds"] for c in clicks]
    before = [c["uncertainty_before"] for c in clicks]
    after = [c["uncertainty_after"] for c in clicks]
    mean_before = float(np.mean(before)) if clicks else 0.0
    return {"interactions": len(clicks),
            "seconds": {"mean": round(statistics.fmean(seconds), 3) if seconds else None,
                        "median": round(statistics.median(seconds), 3) if seconds else None,
                        "max": round(max(seconds), 3) if seconds else None},
            "uncertainty_in_component": {"mean_before": mean_before, "mean_after": float(np.mean(after)) if clicks else 0.0,
                                         "fall": (1 - float(np.mean(after)) / mean_before) if mean_before > 0 else None}}


def targets(protocol: dict, results: dict, curves: dict, stats: dict) -> list[dict]:
    """The issue's targets, each with its figure and whether it is met (plus, with a compare model, whether
    the model beats it)."""
    clicks = protocol["clicks"]
    k = min(3, clicks)
    wt = curves["diffusion"]["wt"]
    low = {name: case["diffusion"]["dice"]["wt"] for name, case in results.items() if case["diffusion"]["dice"]["wt"][0] < 0.85}
    gains = {name: max(d[1:k + 1]) - d[0] for name, d in low.items()} if k else {}
    fall = stats["uncertainty_in_component"]["fall"]
    median = stats["seconds"]["median"]
    rows = [
        (f"mean WT Dice after {k} clicks ≥ 0.93", f"{wt[k]:.3f}", wt[k] >= 0.93),
        ("… and ≥ +0.03 over no click", f"{wt[k] - wt[0]:+.3f}", wt[k] - wt[0] >= 0.03),
        (f"every case below 0.85 gains ≥ 0.08 within {k} clicks",
         ", ".join(f"{n} {g:+.3f}" for n, g in gains.items()) or "no case below 0.85", all(g >= 0.08 for g in gains.values())),
        (f"conditioning beats the sphere after {clicks} clicks",
         f"{wt[clicks]:.3f} vs {curves['sphere']['wt'][clicks]:.3f}", wt[clicks] > curves["sphere"]["wt"][clicks]),
        ("uncertainty inside a corrected component falls ≥ 50 %", "n/a" if fall is None else f"{100 * fall:.0f} %",
         fall is not None and fall >= 0.5),
        ("one interaction ≤ 5 s (median)", "n/a" if median is None else f"{median:.2f} s", median is not None and median <= 5),
    ]
    if "compare" in curves:
        rows.append((f"'{protocol['model']}' beats '{protocol['compare_model']}' after {k} clicks",
                     f"{wt[k]:.3f} vs {curves['compare']['wt'][k]:.3f}", wt[k] > curves["compare"]["wt"][k]))
    return [{"target": t, "value": v, "met": bool(m)} for t, v, m in rows]


def markdown(protocol: dict, results: dict, curves: dict, stats: dict, goals: list[dict],
             heading: str = "## Robot user") -> str:
    clicks = protocol["clicks"]
    options = protocol["options"]
    head = "| case | method | " + " | ".join(f"{n} click{'s' if n != 1 else ''}" for n in range(clicks + 1)) + " |"
    labels = methods(protocol, results)
    lines = [f"{heading}: model '{protocol['model']}', {len(results)} cases",
             "",
             "Protocol of interactive-segmentation benchmarks: after the automatic run, one click at a time at the "
             "centre of the largest 3D error component (include for a missed part, exclude for a false one), "
             "`diffseg refine` after each.",
             "",
             f"{options.get('ensemble', 'full')} ensemble, {options['sampler']} {options['steps']} steps × "
             f"{options['members']} members, seed {options['seed']}; "
             f"click ball {protocol['radius_mm']} mm, ± {protocol['margin_slices']} slices re-sampled, "
             f"evidence reach {protocol.get('reach_mm', 0):g} mm; "
             f"comparison sphere {protocol['sphere_radius_mm']} mm. Methods: "
             + "; ".join(f"{key} = {label}" for key, label in labels.items()) + ". Whole-tumour Dice after each click:",
             "", head, "|" + "---|" * (clicks + 3)]
    for name, case in results.items():
        for method in labels:
            lines.append(f"| {name} | {method} | " + " | ".join(f"{d:.3f}" for d in case[method]["dice"]["wt"]) + " |")
    for method in labels:
        lines.append(f"| **mean** | {method} | " + " | ".join(f"**{d:.3f}**" for d in curves[method]["wt"]) + " |")
    for region in [r for r in protocol["regions"] if r != "wt"]:
        lines.append(f"| mean {region.upper()} | diffusion | " + " | ".join(f"{d:.3f}" for d in curves["diffusion"][region]) + " |")
    s, u = stats["seconds"], stats["uncertainty_in_component"]
    lines += ["", f"Seconds per interaction ({stats['interactions']} interactions, in process): median {s['median']}, "
                  f"mean {s['mean']}, max {s['max']}. Mean uncertainty (member variance) inside the corrected error "
                  f"components: {u['mean_before']:.4f} before, {u['mean_after']:.4f} after the click.",
              "", "| target | value | met |", "|---|---|---|"]
    lines += [f"| {g['target']} | {g['value']} | {'yes' if g['met'] else 'no'} |" for g in goals]
    return "\n".join(lines) + "\n"


def figure(path: Path, protocol: dict, results: dict, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = methods(protocol, results)
    fig, ax = plt.subplots(figsize=(5, 3.6 + 0.2 * len(labels)))
    x = list(range(protocol["clicks"] + 1))
    for method, label in labels.items():
        for case in results.values():
            ax.plot(x, case[method]["dice"]["wt"], color=COLOURS[method], alpha=0.2, linewidth=0.8)
        ax.plot(x, curves[method]["wt"], color=COLOURS[method], marker="o", linewidth=2, label=label)
    ax.set_xlabel("robot clicks")
    ax.set_ylabel("whole-tumour Dice")
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)  # below: not over a curve
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, protocol: dict, results: dict) -> dict[str, str]:
    """Write robot_user.json / .md / .png into ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curves, stats = mean_curves(results), interaction_stats(results)
    goals = targets(protocol, results, curves, stats)
    paths = {"json": out / "robot_user.json", "markdown": out / "robot_user.md", "figure": out / "robot_user.png"}
    paths["json"].write_text(json.dumps({"protocol": protocol, "mean": curves, **stats, "targets": goals,
                                         "cases": results}, indent=2), encoding="utf-8")
    paths["markdown"].write_text(markdown(protocol, results, curves, stats, goals), encoding="utf-8")
    figure(paths["figure"], protocol, results, curves)
    return {k: str(v) for k, v in paths.items()}


def from_saved(data: dict, heading: str) -> tuple[str, Callable[[Path], None]]:
    """The markdown of a saved ``robot_user.json`` under ``heading`` and a function drawing its figure to a path."""
    stats = {key: data[key] for key in ("interactions", "seconds", "uncertainty_in_component")}
    text = markdown(data["protocol"], data["cases"], data["mean"], stats, data["targets"], heading)
    return text, lambda path: figure(path, data["protocol"], data["cases"], data["mean"])
