"""``diffseg refine``: correct an earlier result with include / exclude points and painted strokes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from DiffSegExtension import session
from DiffSegExtension.commands.common import (add_modality_arguments, add_output_arguments, add_sampling_arguments,
                                              explicit_modality_files, modality_files_given, sampling_options)
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.modalities import list_cases
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.inference.outputs import check_output_folder, write_outputs
from DiffSegExtension.inference.progress import Progress
from DiffSegExtension.inference.segment import resolve_device
from DiffSegExtension.refinement.click_evidence import DEFAULT_REACH_MM
from DiffSegExtension.refinement.guidance import DEFAULT_RADIUS_MM, Guidance, Point, parse_point
from DiffSegExtension.refinement.previous import load_previous, previous_model
from DiffSegExtension.refinement.record import load_strokes, write_guidance
from DiffSegExtension.refinement.refine import DEFAULT_MARGIN, refine_case


class _AppendPoint(argparse.Action):
    """--include / --exclude append (kind, text) to one list, so clicks keep the order they were given in."""

    def __call__(self, parser, namespace, values, option_string=None):
        points = list(getattr(namespace, self.dest) or [])
        points.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, points)


def add_parser(sub) -> None:
    p = sub.add_parser("refine", help="refine an earlier result with include / exclude points or painted strokes",
                       description="Re-sample the slices the guidance touches, with the guidance imposed on every "
                                   "ensemble member, and merge them into the previous result (--previous). Points are "
                                   "RAS millimetres (nibabel's affine, Slicer's markups), written --include=X,Y,Z (the '=' keeps "
                                   "a negative X from reading as an option); guidance accumulates. Sampling settings "
                                   "not given are the previous run's.")
    p.add_argument("--model", help="model folder or bundled model name (default: the model that wrote --previous)")
    add_modality_arguments(p)
    p.add_argument("--input", type=Path, help="a case folder (<anything>_<modality>.nii.gz)")
    p.add_argument("--previous", type=Path, required=True, help="an earlier `segment` or `refine` output folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (may be --previous with --overwrite)")
    p.add_argument("--include", dest="points", action=_AppendPoint, metavar="X,Y,Z", default=[],
                   help="tumour here (RAS mm); repeatable")
    p.add_argument("--exclude", dest="points", action=_AppendPoint, metavar="X,Y,Z",
                   help="not tumour here, in any region (RAS mm); repeatable")
    p.add_argument("--strokes", type=Path, metavar="LABELS",
                   help="painted labels on the input grid: 1 = inside the region, 2 = not in it")
    p.add_argument("--region", default="wt", help="region of --include and --strokes (wt, tc or et; default wt)")
    p.add_argument("--radius", type=float, default=DEFAULT_RADIUS_MM, help="radius of a point's ball in mm (default 3)")
    p.add_argument("--reach", type=float, default=DEFAULT_REACH_MM,
                   help="how far (mm) a point's evidence re-weights the ensemble beyond its ball, falling linearly "
                        f"to nothing and only in tissue like the clicked one (default {DEFAULT_REACH_MM:g}; "
                        "0: the ball only)")
    p.add_argument("--margin", type=int, default=DEFAULT_MARGIN,
                   help="extra slices re-sampled on each side of the slices the guidance touches (default 0: "
                        "with the previous run's settings they would come out unchanged)")
    add_sampling_arguments(p, ensemble=False)  # refine re-samples every member on the slices it touches
    add_output_arguments(p)
    p.set_defaults(handler=run)


def _case_source(args, model):
    if modality_files_given(args):
        return explicit_modality_files(args, model.modalities, model.optional_modalities)
    if list_cases(args.input) != [Path(args.input)]:
        raise DiffSegInputError(f"--input {args.input} is not one case folder: refine takes one case at a time")
    return args.input


def _inherit_sampling(args: argparse.Namespace, used: dict) -> argparse.Namespace:
    """--members / --sampler / --steps / --min-component-probability (and DDIM's --eta) not given come from the
    previous run's ``used`` options, so the re-sampled slices match the rest (and the model card's defaults apply
    only after that)."""
    for name in ("members", "sampler", "steps", "min_component_probability"):
        if getattr(args, name) is None and used.get(name) is not None:
            setattr(args, name, used[name])
    if args.eta is None and args.sampler == "ddim" and used.get("sampler") == "ddim":
        args.eta = used.get("sampler_options", {}).get("eta")
    return args


def run(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    started = time.perf_counter()
    model = session.model(args.model or previous_model(args.previous))
    regions = tuple(model.config.network.regions)
    if args.region not in regions:
        raise DiffSegInputError(f"--region {args.region}: the model '{model.name}' has regions {', '.join(regions)}; "
                                "use one of them")
    if args.radius <= 0:
        raise DiffSegInputError(f"--radius must be > 0 mm, got {args.radius}")
    if args.reach < 0:
        raise DiffSegInputError(f"--reach must be >= 0 mm (0: no reach beyond the ball), got {args.reach}")
    check_output_folder(args.out, args.overwrite)
    case = load_case(_case_source(args, model), model.modalities, optional=model.optional_modalities)
    previous = load_previous(args.previous, case, regions)
    options = sampling_options(_inherit_sampling(args, previous.summary.get("options", {})), model)
    resolve_device(options.device)
    points = [Point(kind, parse_point(text, kind), args.region, args.radius, args.reach) for kind, text in args.points]
    strokes = {args.region: load_strokes(args.strokes, case)} if args.strokes is not None else {}
    new = Guidance(points, strokes)
    progress.log(f"refining {case.name} from {args.previous}: {len(points)} points"
                 f"{', strokes' if strokes else ''} with model '{model.name}'")
    result = refine_case(model, case, previous, new, options, margin=args.margin, progress=progress)
    outputs = write_outputs(result.seg, case, args.out, {"name": model.name, "folder": str(model.folder),
                                                         "modalities": list(model.modalities)},
                            overwrite=args.overwrite, qubrats=args.qubrats,
                            extra_summary={**result.summary(new), "previous": str(args.previous)},
                            write_extra=lambda folder: write_guidance(folder, result.guidance, case),
                            overview=args.overview, crop=args.crop_outputs)
    progress.log(f"{case.name}: re-sampled {len(result.resampled)} slices, {int(result.seg.mask[0].sum())} tumour "
                 f"voxels, {result.seg.seconds:.1f} s → {args.out}")
    progress.emit("done", outputs=outputs, seconds=round(time.perf_counter() - started, 3))
    return 0
