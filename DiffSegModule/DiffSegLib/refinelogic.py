"""Refinement in the logic: ``diffseg refine`` on an existing result, and one step of undo.

:class:`RefineMixin` is mixed into :class:`.logic.DiffSegLogic`, which provides ``scene``, ``results_root``,
``choose_model``, ``check``, ``warnings``, ``run`` and the start / finish pair; a refinement is a
:class:`.logic.RunRequest` with ``guidance`` set (see :meth:`RefineMixin.refine_request`), so the panel starts,
polls, cancels and finishes it exactly like Apply. Console use::

    result = DiffSegLogic().refine(getNode("case DiffSeg"), include=[(12.5, -30.0, 41.0)], exclude=[(0, -20, 38)])
    DiffSegLogic().undo_refine(getNode("case DiffSeg"))   # back to the result before the refinement

On success the same segmentation, probability and uncertainty nodes are updated; the result before it is kept
in an undo folder (see :mod:`.refinerecord`). A failed or cancelled refinement leaves the scene as it was.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Callable, Sequence

from . import guidance as guidance_mod
from . import geometry, refinerecord, results, review, volumeio
from .guidance import Point, RefineGuidance
from .inputs import DiffSegInputError
from .runner import Progress, refine_arguments


class RefineMixin:
    """``refine_request`` / ``refine`` / ``undo_refine`` and the refinement halves of start and finish."""

    # -- requests -----------------------------------------------------------------------------
    def refine_request(self, segmentation, *, include: Sequence[Point] = (), exclude: Sequence[Point] = (),
                       strokes=None, region: str = "wt", reach_mm: float | None = None, device: str | None = None):
        """A refinement of ``segmentation`` on the inputs of its run (model, seed and sampling settings as
        that run's). Points are world RAS mm (markups' world positions); ``strokes`` see :mod:`.guidance`."""
        request = self.rerun_request(segmentation, device=device)
        request.merge_into = None
        request.seed = int(segmentation.GetAttribute("DiffSeg.Seed") or 0)
        request.members = int(segmentation.GetAttribute("DiffSeg.Members") or request.members)
        request.guidance = RefineGuidance(segmentation, [tuple(map(float, p)) for p in include],
                                          [tuple(map(float, p)) for p in exclude], strokes, region, reach_mm)
        return request

    def refine_problems(self, request) -> list[str]:
        """Why a refinement cannot run (part of :meth:`problems`)."""
        found = [] if request.guidance.problem() is None else [request.guidance.problem()]
        if refinerecord.record_of(request.guidance.segmentation) is None:
            found.append(f"'{request.guidance.segmentation.GetName()}' has no run record to refine from (it was "
                         "made in an earlier session or before refinement existed): press Apply to segment again.")
        return found

    # -- start and finish ---------------------------------------------------------------------
    def _refine_arguments(self, request, files: dict, temp_dir: Path) -> list[str]:
        """Stage the previous result and the strokes in ``temp_dir``; the engine's arguments."""
        wanted = request.guidance
        segmentation = wanted.segmentation
        reference = request.reference
        previous = refinerecord.stage_previous(segmentation, refinerecord.record_of(segmentation), temp_dir / "previous")
        strokes = guidance_mod.stroke_labels(wanted)
        strokes_file = None
        if strokes is not None:
            strokes_file = volumeio.write_nifti(volumeio.image_from_array(strokes),
                                                geometry.ijk_to_ras(reference), temp_dir / "strokes.nii.gz")
        if not wanted.include and not wanted.exclude and strokes_file is None:
            raise DiffSegInputError("Refine needs guidance: the result's segments were not edited and no point "
                                    "was placed.")
        return refine_arguments(request.model.path, files, previous, temp_dir / "outputs",
                                include=guidance_mod.to_reference_frame(wanted.include, reference),
                                exclude=guidance_mod.to_reference_frame(wanted.exclude, reference),
                                strokes=strokes_file, region=wanted.region, reach_mm=wanted.reach_mm, seed=request.seed,
                                device=request.device)

    def _store_refined(self, handle, loaded: results.EngineOutputs, seconds, outputs: dict):
        """Put a refinement into its result's nodes (segments at the result's thresholds) and keep the undo folder."""
        segmentation = handle.request.guidance.segmentation
        record = refinerecord.keep_record(outputs, self._new_folder())
        labels = review.segment_labels(segmentation, {r: volumeio.array_kji(n) for r, n in loaded.probability.items()},
                                       review.thresholds_of(segmentation), record)
        label_node = volumeio.detached_volume(volumeio.image_from_array(labels),
                                              geometry.ijk_to_ras(handle.request.reference), "segmentation")
        refined = results.EngineOutputs(label_node, loaded.probability, loaded.uncertainty, loaded.summary)
        wanted = handle.request.guidance
        undo = self._new_folder()
        shutil.move(str(handle.temp_dir / "previous"), str(undo))
        info = {"LastRefinement": f"{len(wanted.include)} include, {len(wanted.exclude)} exclude points"
                                  f"{', strokes' if wanted.strokes is not None else ''} ({wanted.region})",
                "Seconds": "" if seconds is None else f"{seconds:.1f}"}
        stored = results.store_outputs(self.scene, handle.request.reference, handle.key, refined, info,
                                       segmentation=segmentation)
        self._set_folders(segmentation, record, undo)
        return stored

    # -- folders --------------------------------------------------------------------------------
    def _new_folder(self) -> Path:
        """A fresh, not yet existing folder under :attr:`results_root`."""
        self.results_root.mkdir(parents=True, exist_ok=True)
        return self.results_root / uuid.uuid4().hex

    def _set_folders(self, segmentation, run: Path | None, undo: Path | None, maps_in_run: bool = True) -> None:
        """Point the result at its run record and undo folder; folders of ours it no longer uses are removed.
        ``maps_in_run``: the result's volumes are the run record's maps (not after a re-run merged in)."""
        from .logic import remove_folder

        for attribute, folder in ((refinerecord.RUN_FOLDER_ATTRIBUTE, run), (refinerecord.UNDO_FOLDER_ATTRIBUTE, undo)):
            old = segmentation.GetAttribute(attribute)
            if old and Path(old) not in (run, undo) and Path(old).parent == self.results_root:
                remove_folder(Path(old))
            segmentation.SetAttribute(attribute, str(folder) if folder else "")
        refinerecord.note_record_maps(segmentation, maps_in_run and run is not None)

    # -- console API --------------------------------------------------------------------------
    def refine(self, segmentation, include: Sequence[Point] = (), exclude: Sequence[Point] = (), strokes=None,
               region: str = "wt", *, reach_mm: float | None = None, device: str | None = None,
               on_progress: Callable[[Progress], None] | None = None, timeout: float | None = None):
        """Refine a DiffSeg result with the clinician's guidance; blocks until done.

        :param include: points (world RAS mm, e.g. markups' world positions) that are tumour (inside ``region``).
        :param exclude: points that are not tumour (in any region).
        :param strokes: a label map volume (1 = tumour, 2 = not tumour), the result itself (its Segment Editor
            edits), another segmentation (first segment tumour, second not) or None; see :mod:`.guidance`.
        :param region: ``"wt"``, ``"tc"`` or ``"et"``: the region include points and strokes mean.
        :param reach_mm: how far (mm) each point's evidence re-weights the ensemble beyond its ball (None: the
            engine's default, 40 mm; 0: the ball only).
        :return: a :class:`.results.SegmentationResult` of the same (updated) nodes.
        """
        request = self.refine_request(segmentation, include=include, exclude=exclude, strokes=strokes, region=region,
                                      reach_mm=reach_mm, device=device)
        self.check(request)
        for warning in self.warnings(request):
            logging.warning("DiffSeg: %s", warning)
        return self.run(request, on_progress=on_progress, timeout=timeout)

    def can_undo_refine(self, segmentation) -> bool:
        return segmentation is not None and refinerecord.undo_of(segmentation) is not None

    def undo_refine(self, segmentation):
        """Put back the result as it was before its last refinement (maps, segments and attributes, exactly);
        one step only.

        :raises DiffSegInputError: when there is nothing to undo.
        """
        folder = refinerecord.undo_of(segmentation)
        if folder is None:
            raise DiffSegInputError(f"'{segmentation.GetName()}' has no refinement to undo.")
        reference = review.reference_volume(segmentation)
        loaded, attributes = refinerecord.load_undo(folder, reference)
        info = {name[len("DiffSeg."):]: value for name, value in attributes.items()
                if name not in (refinerecord.RUN_FOLDER_ATTRIBUTE, refinerecord.UNDO_FOLDER_ATTRIBUTE,
                                refinerecord.MAPS_ATTRIBUTE)}
        stored = results.store_outputs(self.scene, reference, segmentation.GetAttribute(results.KEY_ATTRIBUTE), loaded,
                                       info, segmentation=segmentation)
        self._set_folders(segmentation, folder, None)
        return stored
