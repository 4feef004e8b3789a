"""``diffseg segment``: segmentation, probability, uncertainty and an overview for one case or many."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from DiffSegExtension import session
from DiffSegExtension.commands.common import (add_modality_arguments, add_output_arguments, add_sampling_arguments,
                                              distributed_share, explicit_modality_files, modality_files_given,
                                              parse_slice_range, sampling_options)
from DiffSegExtension.config import KNOWN_MODALITIES
from DiffSegExtension.data.input_checks import input_warnings
from DiffSegExtension.data.loading import load_case
from DiffSegExtension.data.modalities import find_case_files, list_cases
from DiffSegExtension.inference.outputs import check_output_folder, write_outputs
from DiffSegExtension.inference.progress import Progress
from DiffSegExtension.inference.segment import resolve_device, segment_case
from DiffSegExtension.model_card import LoadedModel, choose_bundled_model, resolve_model


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="segment a case (modality files) or a folder of cases",
                       description="Segment brain tumour with an implicit diffusion ensemble. Give each modality "
                                   "the model needs (--flair ... ) or --input with a case folder or a folder of cases.")
    p.add_argument("--model", help="model folder or bundled model name (see `diffseg models`); default: the bundled "
                                   "model made for the given sequences (brats-flair for FLAIR alone, else brats-regions)")
    add_modality_arguments(p)
    p.add_argument("--input", type=Path, help="a case folder (<anything>_<modality>.nii.gz) or a folder of case folders")
    p.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per case with --input)")
    p.add_argument("--slices", help="only these input slices along the superior–inferior axis, start:stop (half-open)")
    add_sampling_arguments(p)
    add_output_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    slice_range = parse_slice_range(args.slices)
    if modality_files_given(args):
        given = {m: getattr(args, m) for m in KNOWN_MODALITIES if getattr(args, m) is not None}
        sources = [(given, given.keys(), args.out)]
    else:
        cases = list_cases(args.input)
        single = cases == [Path(args.input)]
        sources = [(case, find_case_files(case).keys(), args.out if single else args.out / case.name)
                   for case in distributed_share(cases)]
    models: dict[Path, LoadedModel] = {}
    jobs = []
    for source, modalities, out in sources:
        folder = resolve_model(args.model) if args.model else choose_bundled_model(modalities)
        model = models[folder] = models.get(folder) or session.model(folder)
        if isinstance(source, dict):
            source = explicit_modality_files(args, model.modalities, model.optional_modalities)
        jobs.append((folder, source, out))
    for _, _, out in jobs:
        check_output_folder(out, args.overwrite)
    options = {folder: sampling_options(args, model, slice_range) for folder, model in models.items()}
    resolve_device(args.device)
    started = time.perf_counter()
    outputs = {}
    for folder, source, out in jobs:
        model = models[folder]
        case = load_case(source, model.modalities, optional=model.optional_modalities)
        for warning in input_warnings(case.images, case.affine):
            progress.warn(f"{case.name}: {warning}")
        progress.log(f"segmenting {case.name} ({' × '.join(map(str, case.shape))} voxels) with model '{model.name}'")
        seg = segment_case(model, case, options[folder], progress)
        outputs = write_outputs(seg, case, out, {"name": model.name, "folder": str(model.folder),
                                                 "modalities": list(model.modalities)}, overwrite=args.overwrite,
                                qubrats=args.qubrats, overview=args.overview, crop=args.crop_outputs)
        progress.log(f"{case.name}: {int(seg.mask[0].sum())} tumour voxels, {seg.seconds:.1f} s → {out}")
    progress.emit("done", outputs=outputs, seconds=round(time.perf_counter() - started, 3))
    return 0
