"""A stand-in engine that speaks the engine's command line and stdout protocol, for logic tests.

``python -m stub_engine segment --model M --flair F ... --out D --members N --steps K --ensemble E
--slices a:b --progress json --overwrite [--crop-outputs]`` writes the six outputs of the real engine in the first
input's exact geometry (with ``--crop-outputs`` only the box of the non-zero voxels, on that box of the grid): a deterministic "tumour" (the brightest FLAIR voxels), N binary members
that disagree near its border, their mean (probability), variance (uncertainty) and entropy.

It exists so the logic's behaviour (replacing outputs, failure and cancel leaving the scene alone,
temporary files, merging a re-run) is tested in seconds and with failures on demand
(``DIFFSEG_STUB_MODE`` = ``ok`` | ``hang`` | ``crash`` | ``error`` | ``bad-output``). The end-to-end
tests run the real engine through the same code path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="stub_engine")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("segment")
    p.add_argument("--model", required=True)
    for modality in ("flair", "t1", "t1ce", "t2"):
        p.add_argument(f"--{modality}")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--sampler", default="dpmpp")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--ensemble", choices=("adaptive", "full"), default="full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--slices")
    p.add_argument("--progress", default="json")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-overview", dest="overview", action="store_false")
    p.add_argument("--crop-outputs", action="store_true")
    args = parser.parse_args(argv)
    mode = os.environ.get("DIFFSEG_STUB_MODE", "ok")
    print("stub engine starting (a non-JSON line)", flush=True)
    if mode == "error":
        emit(event="error", message="the model needs t2: add --t2 <file>")
        return 2
    if mode == "crash":
        raise RuntimeError("stub engine crashed on purpose")

    inputs = [getattr(args, m) for m in ("flair", "t1", "t1ce", "t2") if getattr(args, m)]
    reference = nib.load(inputs[0])
    flair = np.asarray(reference.dataobj, dtype=np.float32)
    axis = int(os.environ.get("DIFFSEG_STUB_AXIS", "2"))
    n = flair.shape[axis]
    a, b = (int(v) for v in args.slices.split(":")) if args.slices else (0, n)
    emit(event="log", message=f"stub: {len(inputs)} inputs, slices {a}:{b}")
    started = time.perf_counter()
    for done in range(args.steps + 1):
        emit(event="progress", done=done, total=args.steps, elapsed_s=time.perf_counter() - started,
             eta_s=None if done == 0 else 0.01 * (args.steps - done), message="sampling")
        if mode == "hang" and done == 1:
            time.sleep(600)
        time.sleep(0.01)

    rng = np.random.default_rng(args.seed)
    level = np.percentile(flair[flair > 0], 97) if (flair > 0).any() else 1.0
    members = [(flair * rng.uniform(0.9, 1.1, size=flair.shape) > level) for _ in range(args.members)]
    members = np.stack(members).astype(np.float32)
    keep = np.zeros(flair.shape, dtype=bool)
    index = [slice(None)] * 3
    index[axis] = slice(a, b)
    keep[tuple(index)] = True
    probability = np.where(keep, members.mean(axis=0), 0).astype(np.float32)
    uncertainty = np.where(keep, members.var(axis=0), 0).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = probability
        entropy = np.nan_to_num(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).astype(np.float32)
    mask = (probability >= 0.5).astype(np.uint8)
    # The box of the non-zero voxels, as the engine's --crop-outputs (the whole grid without it).
    nonzero = np.argwhere(probability > 0) if args.crop_outputs and (probability > 0).any() else np.array([[0, 0, 0]])
    box = tuple(slice(lo, hi + 1) if args.crop_outputs else slice(None)
                for lo, hi in zip(nonzero.min(axis=0), nonzero.max(axis=0)))
    affine = reference.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ [s.start or 0 for s in box]

    args.out.mkdir(parents=True, exist_ok=True)
    outputs = {}
    for name, data in (("segmentation", mask), ("probability", probability), ("uncertainty", uncertainty),
                       ("entropy", entropy)):
        path = args.out / f"{name}.nii.gz"
        header = reference.header.copy()
        header.set_data_dtype(data.dtype)
        moved = affine.copy()
        if mode == "bad-output" and name == "segmentation":
            moved[:3, 3] += 0.5 * affine[:3, 0]  # half a voxel off the input's grid
        image = nib.Nifti1Image(data[box], moved, header)
        image.header.set_slope_inter(1.0, 0.0)
        nib.save(image, str(path))
        outputs[name] = str(path)
    if args.overview:
        (args.out / "overview.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        outputs["overview"] = str(args.out / "overview.png")
    summary = {"slice_axis": axis, "slice_range": [a, b], "model": {"name": Path(args.model).name},
               "members": args.members, "sampler": args.sampler, "steps": args.steps, "ensemble": args.ensemble,
               "seed": args.seed,
               "seconds": time.perf_counter() - started}
    (args.out / "summary.json").write_text(json.dumps(summary))
    outputs["summary"] = str(args.out / "summary.json")
    emit(event="done", outputs=outputs, seconds=summary["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
