"""DiffSegLogic: check inputs, run the engine in a child process, put the results in the scene.

MRML only (no Qt): importable and testable under the PyPI package ``slicer-core``. The panel uses
the non-blocking pair :meth:`DiffSegLogic.start` / :meth:`DiffSegLogic.finish` (polling the
returned :class:`RunHandle` from a timer); scripts use the blocking :meth:`DiffSegLogic.segment`::

    from DiffSegLib.logic import DiffSegLogic
    seg, unc = DiffSegLogic().segment(flair=getNode("BraTS_flair"), t1=getNode("BraTS_t1"),
                                      t1ce=getNode("BraTS_t1ce"), t2=getNode("BraTS_t2"),
                                      model="phantom", members=5, steps=20, ensemble="adaptive")
    result = DiffSegLogic().segment(flair=getNode("BraTS_flair"), t2=getNode("BraTS_t2"))  # a region model
    result.uncertainties["et"], result.probabilities["tc"]  # per region: "wt", "tc", "et"
    DiffSegLogic().refine(seg, include=[(12.5, -30.0, 41.0)])  # see refinelogic; undo_refine(seg) goes back

Guarantees: the scene is only changed after the engine succeeded and all its outputs were read
and checked; a failed or cancelled run changes nothing; the temporary folder is removed in every
case; a second run on the same inputs updates the previous outputs instead of adding nodes.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import slicer

from . import geometry, refinerecord, results, review, suspicious, volumeio
from .guidance import RefineGuidance
from .regions import DEFAULT_THRESHOLD, threshold_attribute
from .inputs import DiffSegInputError, input_problems
from .models import (ModelCard, ModelCardError, find_model, list_bundled_models, preference, sampler_problem,
                     weights_problem)
from .refinelogic import RefineMixin
from .runner import EngineEvent, EngineRunner, Progress, segment_arguments

#: ``--ensemble``: ``adaptive`` samples the members only near the tumour a first screen (by default member 0) finds;
#: ``full`` samples every member on every slice.
ENSEMBLES = ("adaptive", "full")
DEVICES = ("auto", "cpu", "cuda")


class DiffSegRunError(RuntimeError):
    """The engine failed (the message explains how) or was cancelled."""


class DiffSegCancelled(DiffSegRunError):
    """The run was cancelled; nothing was added to the scene."""


@dataclass
class RunRequest:
    """Everything one run needs. ``volumes`` maps modality → volume node.

    ``slices`` (half-open, along the reference's slice axis) or ``roi`` (markups ROI) restrict the
    run; ``merge_into`` (a DiffSeg segmentation node) makes it a "re-run here" whose slices replace
    those of the existing outputs; ``new_outputs`` keeps previous outputs and adds new nodes;
    ``keep_engine_outputs`` is a folder where the engine's files (NIfTI, overview.png,
    summary.json) are written and kept, instead of the temporary folder; ``guidance`` makes it a
    refinement of ``guidance.segmentation`` (see :mod:`.refinelogic`).
    """

    model: ModelCard
    volumes: dict
    members: int = 5
    steps: int = 10
    sampler: str = "dpmpp"
    ensemble: str = "full"
    seed: int = 0
    device: str = "auto"
    slices: tuple[int, int] | None = None
    roi: object = None
    new_outputs: bool = False
    merge_into: object = None
    keep_engine_outputs: Path | None = None
    guidance: RefineGuidance | None = None

    @property
    def inputs(self) -> dict:
        """The given volumes the model uses, in the model's channel order (empty optional ones left out)."""
        return self.model.given(self.volumes)

    @property
    def reference(self):
        return self.volumes.get(self.model.reference_modality)


@dataclass
class RunHandle:
    """A started run: poll it from the main thread, then pass it to :meth:`DiffSegLogic.finish`."""

    request: RunRequest
    runner: EngineRunner
    temp_dir: Path
    slices: tuple[int, int] | None
    key: str
    started: float = field(default_factory=time.monotonic)

    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def progress(self) -> Progress | None:
        return self.runner.last_progress

    def poll(self) -> list[EngineEvent]:
        return self.runner.poll()


class DiffSegLogic(RefineMixin):
    """Runs DiffSeg on volume nodes of a scene.

    :param scene: the MRML scene (default ``slicer.mrmlScene``).
    :param runner_factory: makes the :class:`EngineRunner` for each run (inject another Python or
        engine location here). The default runs the engine warm: started ahead of time, see :meth:`warm_up`.
    :param temp_root: where temporary folders are made (default: the system temp folder).
    :param results_root: where results keep their run records and undo folders (default:
        ``DiffSeg-results`` in the system temp folder).
    """

    def __init__(self, scene=None, runner_factory: Callable[[], EngineRunner] | None = None,
                 temp_root: str | Path | None = None, results_root: str | Path | None = None):
        self._scene = scene
        self.runner_factory = runner_factory or (lambda: EngineRunner(warm=True))
        self.temp_root = Path(temp_root) if temp_root else None
        self.results_root = Path(results_root or Path(tempfile.gettempdir()) / "DiffSeg-results")

    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    def warm_up(self) -> None:
        """Start an engine ahead of time for the next Apply or Refine (see :mod:`.warmengines`)."""
        self.runner_factory().warm_up()

    # -- checking -----------------------------------------------------------------------------
    def resolve_slices(self, request: RunRequest) -> tuple[int, int] | None:
        """The run's slice range: explicit ``slices``, else the ROI's, else None (whole volume)."""
        if request.slices is not None:
            return int(request.slices[0]), int(request.slices[1])
        if request.roi is not None and request.reference is not None:
            reference = request.reference
            return geometry.roi_slice_range(request.roi, reference, geometry.slice_axis(reference))
        return None

    def problems(self, request: RunRequest) -> list[str]:
        """Every reason the request cannot run (empty list: it can). Changes nothing."""
        found = []
        sampler = sampler_problem(request.model, request.sampler)
        if sampler:
            found.append(sampler)
        if request.ensemble not in ENSEMBLES:
            found.append(f"Unknown ensemble '{request.ensemble}'; choose one of {', '.join(ENSEMBLES)}.")
        if request.device not in DEVICES:
            found.append(f"Unknown device '{request.device}'; choose one of {', '.join(DEVICES)}.")
        if int(request.members) < 1 or int(request.steps) < 1:
            found.append("Ensemble members and sampler steps must both be at least 1.")
        weights = weights_problem(request.model)
        if weights:
            found.append(weights)
        slices = None
        try:
            slices = self.resolve_slices(request)
        except ValueError as err:
            found.append(str(err))
        found += input_problems(request.model, request.volumes, slices)
        if request.merge_into is not None and slices is None:
            found.append("A re-run into existing outputs needs a slice range or an ROI.")
        if request.guidance is not None:
            found += self.refine_problems(request)
        return found

    def warnings(self, request: RunRequest) -> list[str]:
        """Suspicious but runnable inputs (not skull-stripped, not co-registered); call when
        :meth:`problems` is empty. The user decides whether to run anyway."""
        return suspicious.input_warnings(request.model, request.volumes)

    def check(self, request: RunRequest) -> None:
        """:raises DiffSegInputError: with the first problem of :meth:`problems`."""
        found = self.problems(request)
        if found:
            raise DiffSegInputError(found[0])

    # -- running ------------------------------------------------------------------------------
    def start(self, request: RunRequest) -> RunHandle:
        """Check, write the inputs to a temporary folder and start the engine; returns at once."""
        self.check(request)
        slices = self.resolve_slices(request)
        temp_dir = Path(tempfile.mkdtemp(prefix="DiffSeg-", dir=str(self.temp_root) if self.temp_root else None))
        try:
            files = self._write_inputs(request, temp_dir / "inputs")
            if request.guidance is not None:
                args = self._refine_arguments(request, files, temp_dir)
            else:
                out_dir = Path(request.keep_engine_outputs) if request.keep_engine_outputs else temp_dir / "outputs"
                args = segment_arguments(request.model.path, files, out_dir,
                                         members=request.members, sampler=request.sampler, steps=request.steps,
                                         ensemble=request.ensemble, seed=request.seed, device=request.device,
                                         slices=slices, kept=request.keep_engine_outputs is not None)
            runner = self.runner_factory()
            runner.start(args, cwd=temp_dir)
        except BaseException:
            remove_folder(temp_dir)
            raise
        logging.info("DiffSeg started: %s", " ".join(runner.command(args)))
        return RunHandle(request, runner, temp_dir, slices, results.input_key(request.inputs))

    def _write_inputs(self, request: RunRequest, folder: Path) -> dict:
        """Each input on the reference grid (physical space, parent transforms applied) as plain NIfTI (``.nii``: the
        engine reads it once and the folder is removed after the run, so compressing would only cost time)."""
        folder.mkdir(parents=True)
        reference = request.reference
        matrix = geometry.ijk_to_ras(reference)
        files = {}
        for modality, node in request.inputs.items():
            image = geometry.resample_to_reference(node, reference)
            files[modality] = volumeio.write_nifti(image, matrix, folder / f"{modality}.nii")
        return files

    def cancel(self, handle: RunHandle) -> None:
        """Kill the engine's process tree and remove the temporary folder; the scene is untouched."""
        try:
            handle.runner.cancel()
        finally:
            remove_folder(handle.temp_dir)

    def finish(self, handle: RunHandle):
        """Read a finished run's outputs into the scene; always removes the temporary folder.

        :return: a :class:`results.SegmentationResult`: ``(segmentationNode, uncertaintyNode)`` with
            every region's volumes as attributes.
        :raises DiffSegCancelled: if the run was cancelled.
        :raises DiffSegRunError: if the engine failed or its outputs are unusable.
        """
        try:
            if handle.running:
                raise DiffSegRunError("The DiffSeg engine is still running.")
            outcome = handle.runner.result()
            if outcome.cancelled:
                raise DiffSegCancelled(outcome.failure_message())
            if not outcome.ok:
                raise DiffSegRunError(outcome.failure_message())
            try:
                loaded = results.load_engine_outputs(outcome.outputs, handle.request.reference)
            except (OSError, ValueError) as err:
                raise DiffSegRunError(f"The engine's outputs could not be loaded: {err}") from err
            if handle.request.guidance is not None:
                return self._store_refined(handle, loaded, outcome.seconds, outcome.outputs)
            return self._store(handle, loaded, outcome.seconds, outcome.outputs)
        finally:
            remove_folder(handle.temp_dir)

    def _store(self, handle: RunHandle, loaded: results.EngineOutputs, seconds, outputs: dict):
        request, scene = handle.request, self.scene
        reference = request.reference
        summary = loaded.summary
        axis = int(summary.get("slice_axis", geometry.slice_axis(reference)))
        if request.merge_into is not None:
            merged = review.merge_outputs(request.merge_into, loaded, handle.slices, axis)
            info = {"LastRefinement": f"slices {handle.slices[0]}:{handle.slices[1]} with {request.members} members "
                                      f"({request.ensemble}), {request.sampler} {request.steps} steps",
                    "Seconds": _seconds(seconds)}
            stored = results.store_outputs(scene, reference, handle.key, merged, info, segmentation=request.merge_into)
            # A re-run is a step of its own: the refinement before it can no longer be undone alone.
            self._set_folders(request.merge_into, refinerecord.record_of(request.merge_into), None, maps_in_run=False)
            return stored
        slice_range = summary.get("slice_range") or list(handle.slices or (0, geometry.dimensions(reference)[axis]))
        info = {"Model": request.model.name, "ModelPath": str(request.model.path), "Members": request.members,
                "Sampler": request.sampler, "Steps": request.steps, "Ensemble": request.ensemble, "Seed": request.seed,
                "Device": request.device, "SliceAxis": axis, "SliceRange": f"{slice_range[0]}:{slice_range[1]}",
                "Seconds": _seconds(seconds), "LastRefinement": "",
                "MinComponentProbability": summary.get("options", {}).get("min_component_probability", 0.0),
                **{threshold_attribute(r)[len("DiffSeg."):]: DEFAULT_THRESHOLD for r in loaded.regions}}
        previous = None if request.new_outputs else results.find_outputs(scene, handle.key)
        record = refinerecord.keep_record(outputs, self._new_folder())
        stored = results.store_outputs(scene, reference, handle.key, loaded, info, segmentation=previous)
        self._set_folders(stored.segmentation, record, None)
        return stored

    def run(self, request: RunRequest, on_progress: Callable[[Progress], None] | None = None,
            should_cancel: Callable[[], bool] | None = None, timeout: float | None = None):
        """Blocking run: start, wait (reporting progress), finish. Returns what :meth:`finish` returns."""
        handle = self.start(request)

        def on_event(event: EngineEvent) -> None:
            if event.kind == "progress" and on_progress is not None:
                on_progress(event.progress)
            elif event.kind == "log":
                logging.info("DiffSeg: %s", event.data.get("message", ""))

        try:
            handle.runner.wait(on_event=on_event, should_cancel=should_cancel, timeout=timeout)
        except BaseException:
            self.cancel(handle)
            raise
        return self.finish(handle)

    # -- console API --------------------------------------------------------------------------
    def segment(self, flair=None, t1=None, t1ce=None, t2=None, *, model: str | Path | None = None,
                members: int | None = None, steps: int | None = None, sampler: str | None = None,
                ensemble: str | None = None, seed: int = 0, device: str = "auto",
                slices: tuple[int, int] | None = None, roi=None, new_outputs: bool = False,
                on_progress: Callable[[Progress], None] | None = None, timeout: float | None = None):
        """Segment the tumour in the given volume nodes; blocks until done.

        Volumes the model lists as optional may be left out; only the given ones go to the engine.

        :param model: bundled model name (e.g. ``"phantom"``) or model folder; default: see :meth:`choose_model`.
        :param members: ensemble members (default: the model card's).
        :param steps: sampler steps (default: the model card's).
        :param ensemble: ``"adaptive"`` or ``"full"`` (default: the model card's, else ``"full"``); stored on the
            result as ``DiffSeg.Ensemble``.
        :return: a :class:`results.SegmentationResult`, which unpacks as ``(segmentationNode, uncertaintyNode)``
            (the whole tumour's uncertainty, as before regions) and has ``.segmentation``, ``.regions``
            (``("wt",)`` or ``("wt", "tc", "et")``), ``.probabilities`` and ``.uncertainties`` (region → volume
            node). A whole-tumour model's segmentation has one "Tumor" segment; a region model's has "Edema",
            "Necrotic / non-enhancing core" and "Enhancing tumor". The segmentation node references the
            volumes (roles ``DiffSegProbability``, ``DiffSegUncertainty``, with ``_tc`` / ``_et`` for the inner regions).
        """
        volumes = {m: v for m, v in (("flair", flair), ("t1", t1), ("t1ce", t1ce), ("t2", t2)) if v is not None}
        card = self.choose_model(model, volumes)
        request = RunRequest(card, volumes, members=members or card.default("members"),
                             steps=steps or card.default("steps"), sampler=sampler or card.default("sampler"),
                             ensemble=ensemble or card.default("ensemble"), seed=seed, device=device, slices=slices,
                             roi=roi, new_outputs=new_outputs)
        self.check(request)
        for warning in self.warnings(request):
            logging.warning("DiffSeg: %s", warning)
        return self.run(request, on_progress=on_progress, timeout=timeout)

    @staticmethod
    def choose_model(model: str | Path | None, volumes: Mapping[str, object]) -> ModelCard:
        """The model card for ``model``; if None, the bundled model made for the given volumes among those whose
        required modalities were all given (:func:`.models.preference`)."""
        try:
            if model is not None:
                return find_model(model)
        except ModelCardError as err:
            raise DiffSegInputError(str(err)) from None
        fitting = [c for c in list_bundled_models() if all(m in volumes for m in c.required_modalities)]
        if not fitting:
            needs = "; ".join(f"{c.name}: {', '.join(c.required_modalities)}" for c in list_bundled_models()) or "none bundled"
            raise DiffSegInputError(f"No bundled model can run with the given volumes ({', '.join(volumes) or 'none'}). "
                                    f"Models and the inputs they need: {needs}.")
        return min(fitting, key=lambda c: preference(c, volumes))

    # -- review -------------------------------------------------------------------------------
    def rerun_request(self, segmentation, *, slices: tuple[int, int] | None = None, roi=None,
                      members: int | None = None, steps: int | None = None, sampler: str | None = None,
                      seed: int | None = None, device: str | None = None) -> RunRequest:
        """A "re-run here" request on the inputs of existing outputs; its result merges into them.

        Its ensemble is always ``full``, whatever the run's: the user asks for more members (by default twice the
        run's) everywhere in the range, and an adaptive ensemble would sample them only near the tumour its first
        screen finds, leaving the rest of the range to that screen alone."""
        attr = lambda name: segmentation.GetAttribute(f"DiffSeg.{name}")  # noqa: E731
        volumes = {}
        for pair in (segmentation.GetAttribute(results.KEY_ATTRIBUTE) or "").split(";"):
            if "=" in pair:
                modality, node_id = pair.split("=", 1)
                volumes[modality] = self.scene.GetNodeByID(node_id)
        card = self.choose_model(attr("ModelPath") if attr("ModelPath") and Path(attr("ModelPath")).is_dir()
                                 else attr("Model"), volumes)
        return RunRequest(card, volumes, members=members or 2 * int(attr("Members") or card.default("members")),
                          steps=steps or int(attr("Steps") or card.default("steps")),
                          sampler=sampler or attr("Sampler") or card.default("sampler"), ensemble="full",
                          seed=int(attr("Seed") or 0) + 1 if seed is None else seed,
                          device=device or attr("Device") or "auto", slices=slices, roi=roi,
                          merge_into=segmentation)

    apply_threshold = staticmethod(review.apply_threshold)
    rank_slices = staticmethod(review.rank_slices)
    jump_to_slice = staticmethod(review.jump_to_slice)

    def remove_outputs(self, segmentation) -> None:
        """Remove a DiffSeg segmentation and its probability/uncertainty volumes (with display nodes), and its
        run record and undo folder."""
        self._set_folders(segmentation, None, None)
        results.remove_outputs(self.scene, segmentation)


def _seconds(seconds) -> str:
    """The engine's run time as stored in the ``DiffSeg.Seconds`` attribute ("" when not reported)."""
    return f"{seconds:.1f}" if seconds is not None else ""


def remove_folder(folder: Path, attempts: int = 20) -> None:
    """Delete a temporary folder, retrying briefly (Windows keeps files locked for a moment)."""
    for _ in range(attempts):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.1)
    logging.warning("DiffSeg could not remove the temporary folder %s", folder)
