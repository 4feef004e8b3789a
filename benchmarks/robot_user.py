"""Robot-user evaluation of clinician-guided refinement (the CVPR 2025 interactive 3D protocol).

    python benchmarks/robot_user.py --model brats-flair --data DIR [DIR ...] [--cases A B ...] --out DIR
        [--clicks 5] [--members N] [--steps K] [--sampler S] [--seed 0] [--radius 3] [--sphere-radius MM]
        [--compare-model MODEL]

For each case with a label: the automatic run (``segment``), then up to ``--clicks`` clicks, each at the
centre of the largest 3D error component of the current whole-tumour mask (6-connected; include for a
missed part, exclude for a false one; centre = the component voxel farthest from its border in mm, by
``scipy.ndimage.distance_transform_edt``), applied with ``refine`` (the guidance imposed at every sampler
step; only the touched slices are re-sampled; beyond them each click re-weights the ensemble out to
``--reach`` mm, in tissue that looks like the clicked one). The comparison without the diffusion condition
follows the same protocol on its own mask, painting a sphere of ``--sphere-radius`` mm at each click
(include: into the whole tumour; exclude: out of every region). With a reach, the clicks' evidence alone
(the automatic ensemble re-weighted and the ball pinned, nothing re-sampled) follows it too, so the share of
the re-sampling is visible, and once more with the evidence falling with distance alone (no tissue
likeness), so the likeness's share is visible too.
``--compare-model`` runs the diffusion protocol once more with a second model (e.g. the unguided model a
guided one was fine-tuned from: inpainting only, no hint planes), from its own automatic run. Reported per
case: Dice per region after 0 … n clicks, seconds per interaction (load previous + refine + write, in
process, as the Slicer module's waiting engine runs it: the model, the case's preparation and the last
result's maps kept in memory, :mod:`DiffSegExtension.session`; outputs cropped, ``--crop-outputs``), and the
mean uncertainty (member variance) inside each corrected error component before and after the click.
Writes ``robot_user.json``, ``robot_user.md`` and ``robot_user.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from DiffSegExtension import session  # noqa: E402
from DiffSegExtension.allocator import keep_freed_memory  # noqa: E402
from DiffSegExtension.components import masks_from_probability  # noqa: E402
from DiffSegExtension.data.loading import Case, load_case  # noqa: E402
from DiffSegExtension.data.modalities import list_cases  # noqa: E402
from DiffSegExtension.evaluation.metrics import dice, spacing_from_affine  # noqa: E402
from DiffSegExtension.inference.outputs import MAP_KINDS, write_outputs  # noqa: E402
from DiffSegExtension.inference.segment import SegmentOptions, segment_case  # noqa: E402
from DiffSegExtension.model_card import LoadedModel, load_model  # noqa: E402
from DiffSegExtension.refinement.click_evidence import DEFAULT_REACH_MM, TissueLikeness, apply_click_evidence  # noqa: E402
from DiffSegExtension.refinement.guidance import Guidance, Point, point_ball  # noqa: E402
from DiffSegExtension.refinement.previous import load_previous  # noqa: E402
from DiffSegExtension.refinement.record import write_guidance  # noqa: E402
from DiffSegExtension.refinement.refine import pin_known, refine_case  # noqa: E402
from DiffSegExtension.regions import region_masks  # noqa: E402
from robot_user_report import write_report  # noqa: E402


@dataclass
class Click:
    """``kind`` include / exclude at ``voxel`` (i, j, k) = ``ras`` (mm); ``component`` the error it corrects."""

    kind: str
    voxel: tuple[int, int, int]
    ras: tuple[float, float, float]
    component: np.ndarray


def next_click(prediction: np.ndarray, truth: np.ndarray, affine: np.ndarray) -> Click | None:
    """The robot's click on the largest 6-connected error component of ``prediction`` vs ``truth`` ({0, 1},
    same shape), or ``None`` when there is no error."""
    error = prediction.astype(bool) != truth.astype(bool)
    labels, count = ndimage.label(error)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    component = labels == 1 + int(np.argmax(sizes))
    # Pad so the volume's edge counts as the component's border too.
    depth = ndimage.distance_transform_edt(np.pad(component, 1), sampling=spacing_from_affine(affine))[1:-1, 1:-1, 1:-1]
    voxel = tuple(int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape))
    kind = "include" if truth[voxel] else "exclude"
    ras = tuple(float(v) for v in (affine @ np.append(np.asarray(voxel, float), 1.0))[:3])
    return Click(kind, voxel, ras, component)


def region_dice(masks: np.ndarray, truth: np.ndarray, regions: tuple[str, ...]) -> dict[str, float]:
    return {r: dice(masks[i], truth[i]) for i, r in enumerate(regions)}


def _click_record(click: Click, **extra) -> dict:
    return {"kind": click.kind, "voxel": list(click.voxel), "ras_mm": [round(v, 3) for v in click.ras],
            "component_voxels": int(click.component.sum()), **extra}


def run_diffusion(model: LoadedModel, case: Case, truth: np.ndarray, options: SegmentOptions, clicks: int,
                  radius: float, reach: float, margin: int,
                  work: Path) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Automatic run then robot clicks through ``refine``; returns the record, the automatic maps
    (kind → (R, ...), :data:`MAP_KINDS`) and masks (R, ...)."""
    regions = tuple(model.regions)
    card = {"name": model.name, "folder": str(model.folder), "modalities": list(model.modalities)}
    seg = segment_case(model, case, options)
    folder = work / "click0"
    write_outputs(seg, case, folder, card, overwrite=True, crop=True)
    first, first_masks = {kind: getattr(seg, kind).copy() for kind in MAP_KINDS}, seg.mask.copy()
    masks = seg.mask
    record = {"dice": {r: [v] for r, v in region_dice(masks, truth, regions).items()}, "clicks": [],
              "segment_seconds": round(seg.seconds, 3)}
    for n in range(1, clicks + 1):
        click = next_click(masks[0], truth[0], case.affine)
        if click is None:
            break
        started = time.perf_counter()
        previous = load_previous(folder, case, regions)
        before = float(previous.maps["uncertainty"][0][click.component].mean())  # refine_case updates the maps
        new = Guidance([Point(click.kind, click.ras, "wt", radius, reach)])
        result = refine_case(model, case, previous, new, options, margin=margin)
        folder = work / f"click{n}"
        write_outputs(result.seg, case, folder, card, overwrite=True, extra_summary=result.summary(new),
                      write_extra=lambda tmp: write_guidance(tmp, result.guidance, case), crop=True)
        seconds = time.perf_counter() - started
        masks = result.seg.mask
        after = float(result.seg.uncertainty[0][click.component].mean())
        record["clicks"].append(_click_record(click, seconds=round(seconds, 3), uncertainty_before=before,
                                              uncertainty_after=after, resampled_slices=len(result.resampled)))
        for r, v in region_dice(masks, truth, regions).items():
            record["dice"][r].append(v)
    return record, first, first_masks


def replay_clicks(masks: np.ndarray, case: Case, truth: np.ndarray, regions: tuple[str, ...], clicks: int,
                  correct: Callable[[Click], np.ndarray]) -> dict:
    """The robot's protocol from ``masks`` (R, ...) without refine: ``correct(click)`` returns the masks after
    each click."""
    record = {"dice": {r: [v] for r, v in region_dice(masks, truth, regions).items()}, "clicks": []}
    for _ in range(clicks):
        click = next_click(masks[0], truth[0], case.affine)
        if click is None:
            break
        masks = correct(click)
        record["clicks"].append(_click_record(click))
        for r, v in region_dice(masks, truth, regions).items():
            record["dice"][r].append(v)
    return record


def run_evidence(first: dict[str, np.ndarray], first_masks: np.ndarray, case: Case, truth: np.ndarray,
                 regions: tuple[str, ...], clicks: int, radius: float, reach: float, options: SegmentOptions,
                 follow_tissue: bool = True) -> dict:
    """The same protocol with the clicks' evidence alone: the automatic maps re-weighted by each click and its
    ball pinned, as refine does off the re-sampled slices, without sampling anything; the masks follow as
    refine derives them (the component rule keeping what an include point marks). Without ``follow_tissue`` the
    evidence falls with distance alone (no :class:`TissueLikeness`), as before the likeness."""
    maps = {kind: values.copy() for kind, values in first.items()}
    marked = np.zeros(case.shape, dtype=bool)
    likeness = TissueLikeness(case.images) if follow_tissue else None

    def correct(click: Click) -> np.ndarray:
        point = Point(click.kind, click.ras, "wt", radius, reach)
        apply_click_evidence(maps, [point], case.affine, regions, options.members, likeness=likeness)
        known = Guidance([point]).known(case.affine, case.shape, regions)
        pin_known(maps, known)
        marked[known[0] > 0] = True
        return masks_from_probability(maps["probability"], options.min_component_probability, keep=marked)

    return replay_clicks(first_masks.copy(), case, truth, regions, clicks, correct)


def run_sphere(first: np.ndarray, case: Case, truth: np.ndarray, regions: tuple[str, ...], clicks: int,
               radius: float) -> dict:
    """The same protocol without the diffusion condition: a sphere painted into the previous masks per click."""
    masks = first.copy()

    def correct(click: Click) -> np.ndarray:
        sphere = point_ball(Point(click.kind, click.ras, radius_mm=radius), case.affine, case.shape)
        if click.kind == "include":
            masks[0][sphere] = 1
        else:
            masks[:, sphere] = 0
        return masks

    return replay_clicks(masks, case, truth, regions, clicks, correct)


def pad_curves(record: dict, clicks: int) -> None:
    """A case that ran out of errors keeps its last Dice for the remaining clicks."""
    for values in record["dice"].values():
        values.extend([values[-1]] * (clicks + 1 - len(values)))


def select_cases(data: list[Path], names: list[str] | None, model: LoadedModel, limit: int | None) -> list[Path]:
    """``names`` under the ``data`` roots; by default the model card's validation cases found there, else every case."""
    cases = sorted((c for root in data for c in list_cases(root)), key=lambda c: c.name)
    wanted = names or [c for c in model.card.get("data", {}).get("validation", []) if any(p.name == c for p in cases)]
    if wanted:
        missing = sorted(set(wanted) - {p.name for p in cases})
        if missing:
            raise SystemExit(f"robot_user: cases {missing} are not under {', '.join(map(str, data))}: "
                             "give names of case folders there")
        cases = [p for p in cases if p.name in wanted]
    return cases[:limit] if limit else cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="brats-flair")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="folders of labelled case folders")
    parser.add_argument("--cases", nargs="+", help="case folder names (default: the model's validation cases)")
    parser.add_argument("--max-cases", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--members", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--sampler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (as diffseg's --device)")
    parser.add_argument("--radius", type=float, default=3.0, help="refine's ball radius per click (mm)")
    parser.add_argument("--reach", type=float, default=DEFAULT_REACH_MM,
                        help="refine's reach of a click's evidence (mm; 0: the ball only)")
    parser.add_argument("--margin", type=int, default=0, help="refine's slice margin")
    parser.add_argument("--sphere-radius", type=float, default=None,
                        help="the no-diffusion comparison's sphere (mm; default: --radius, the ball refine pins)")
    parser.add_argument("--compare-model", help="a second model run through the same clicks (same sampling options)")
    args = parser.parse_args(argv)
    args.sphere_radius = args.sphere_radius or args.radius
    keep_freed_memory()  # as the diffseg command line does: the interaction times are the product's
    session.enable()  # as the Slicer module's engine, which stays between runs

    model = load_model(args.model)
    compare = load_model(args.compare_model) if args.compare_model else None
    if compare is not None and tuple(compare.regions) != tuple(model.regions):
        raise SystemExit(f"robot_user: --compare-model has regions {list(compare.regions)}, --model "
                         f"{list(model.regions)}: compare models with the same regions")
    defaults = model.inference_defaults
    options = SegmentOptions(members=args.members or defaults["members"], steps=args.steps or defaults["steps"],
                             sampler=args.sampler or defaults["sampler"], seed=args.seed, device=args.device,
                             ensemble=defaults["ensemble"], screen_steps=defaults.get("screen_steps"),
                             min_component_probability=defaults["min_component_probability"])
    regions = tuple(model.regions)
    results = {}
    for folder in select_cases(args.data, args.cases, model, args.max_cases):
        case = load_case(folder, model.modalities, with_label=True, optional=model.optional_modalities)
        truth = region_masks(case.label_map, regions)
        diffusion, first, first_masks = run_diffusion(model, case, truth, options, args.clicks, args.radius,
                                                      args.reach, args.margin, args.out / "work" / case.name)
        results[case.name] = {"diffusion": diffusion,
                              "sphere": run_sphere(first_masks, case, truth, regions, args.clicks, args.sphere_radius)}
        if args.reach > 0:
            results[case.name]["evidence"] = run_evidence(first, first_masks, case, truth, regions, args.clicks,
                                                          args.radius, args.reach, options)
            results[case.name]["distance"] = run_evidence(first, first_masks, case, truth, regions, args.clicks,
                                                          args.radius, args.reach, options, follow_tissue=False)
        if compare is not None:
            results[case.name]["compare"] = run_diffusion(compare, case, truth, options, args.clicks, args.radius,
                                                          args.reach, args.margin,
                                                          args.out / "work" / case.name / "compare")[0]
        for record in results[case.name].values():
            pad_curves(record, args.clicks)
        print(f"{case.name}: WT Dice " + "; ".join(f"{method} {' '.join(f'{d:.3f}' for d in record['dice']['wt'])}"
                                                   for method, record in results[case.name].items()), flush=True)
    protocol = {"model": model.name, "compare_model": compare.name if compare else None,
                "regions": list(regions), "clicks": args.clicks, "radius_mm": args.radius, "reach_mm": args.reach,
                "margin_slices": args.margin, "sphere_radius_mm": args.sphere_radius,
                "options": {"members": options.members, "steps": options.steps, "sampler": options.sampler,
                            "seed": options.seed, "ensemble": options.ensemble,
                            "device": options.device}}
    paths = write_report(args.out, protocol, results)
    print("\n".join(f"  {name:8s} {path}" for name, path in paths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
