"""The panel's behaviour without Qt: every decision the DiffSeg panel shows or takes.

:class:`PanelController` owns the parameter node, the running engine and the review state; it
reacts to the events the widget forwards (enter, Apply, a poll tick, a threshold that settled, a
clicked slice, re-run, scene close, cleanup) and to changes of the parameter node and of the nodes it
references, and hands a :class:`PanelView` to ``render`` after each. The Qt widget
(:mod:`.widget`) only forwards events and renders views, so the whole behaviour runs and is tested
under ``slicer-core``. Dialogs go through a :class:`Dialogs` object (the widget's uses
``slicer.util``). The review (result and tumour region under review, threshold, ranked slices,
re-run) is :class:`.panelreview.ReviewMixin`; the Refine section is :class:`.panelrefine.RefineMixin`.

Leaving the module only unbinds the widgets: a run that ends meanwhile is still put under review.
"""

from __future__ import annotations

import subprocess
from typing import Callable, Protocol

import vtk

import slicer
from slicer.util import VTKObservationMixin

from . import dependencies, panelview, results
from .inputs import DiffSegInputError
from .logic import DiffSegLogic, RunHandle, RunRequest
from .models import MODALITY_LABELS, MODALITY_PARAMETERS, ModelCard, ModelCardError, auto_assign, find_model, \
    list_bundled_models, preference
from .panelrefine import RefineMixin
from .panelreview import ReviewMixin

MODULE_NAME = "DiffSeg"
#: Parameter → widget (``Resources/UI/DiffSeg.ui``) bound two-way by the parameter-node wrapper;
#: the .ui carries the same names as ``SlicerParameterName`` (checked by the static tests).
GUI_BINDINGS = {
    "flairVolume": "flairVolumeSelector", "t1Volume": "t1VolumeSelector", "t1ceVolume": "t1ceVolumeSelector",
    "t2Volume": "t2VolumeSelector", "members": "membersSpinBox", "sampler": "samplerComboBox",
    "steps": "stepsSpinBox", "ensemble": "ensembleComboBox", "device": "deviceComboBox", "seed": "seedSpinBox",
    "roi": "roiSelector", "restrictSlices": "restrictSlicesCheckBox", "sliceStart": "sliceStartSpinBox",
    "sliceStop": "sliceStopSpinBox",
    "outputSegmentation": "outputSegmentationSelector", "threshold": "thresholdSliderWidget",
    "rerunMembers": "rerunMembersSpinBox", "refineUseEdits": "refineUseEditsCheckBox",
}
#: Events of referenced nodes that can change whether Apply may run (node references are not observed
#: by the parameter node): renames, a parent transform set or edited, new voxels, a moved ROI.
INPUT_EVENTS = (vtk.vtkCommand.ModifiedEvent, slicer.vtkMRMLTransformableNode.TransformModifiedEvent,
                slicer.vtkMRMLVolumeNode.ImageDataModifiedEvent, slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
                slicer.vtkMRMLMarkupsNode.PointAddedEvent, slicer.vtkMRMLMarkupsNode.PointRemovedEvent)
#: What starting a run can raise: bad inputs, the engine not starting, a failed installation
#: (``pip_install``/``installTorch``: CalledProcessError; a broken PyTorch extension: ImportError).
START_ERRORS = (DiffSegInputError, RuntimeError, OSError, subprocess.CalledProcessError, ImportError)


class Dialogs(Protocol):
    """Modal questions and messages (inside Slicer: ``slicer.util`` dialogs and a folder chooser)."""

    def confirm(self, text: str) -> bool: ...

    def error(self, text: str) -> None: ...

    def choose_folder(self) -> str: ...


def singleton_parameter_node(scene):
    """The module's ``vtkMRMLScriptedModuleNode`` (created if absent), as Slicer's module logic does."""
    node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
    if node is None:
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(MODULE_NAME)
        node.SetName(scene.GenerateUniqueName(MODULE_NAME))
        node.SetAttribute("ModuleName", MODULE_NAME)
        node = scene.AddNode(node)
    return node


def scalar_volumes(scene) -> list:
    """Volumes a modality selector lists: exactly ``vtkMRMLScalarVolumeNode`` (its ``showChildNodeTypes``
    is off, so label maps, vector, tensor and DWI volumes are hidden) and no DiffSeg output."""
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    found = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
    return [v for v in found if v.GetClassName() == "vtkMRMLScalarVolumeNode"
            and not v.GetAttribute(results.ROLE_ATTRIBUTE)]


class PanelController(ReviewMixin, RefineMixin, VTKObservationMixin):
    """The panel without Qt.

    :param parameter_class: the ``@parameterNodeWrapper`` class (:class:`.parameters.DiffSegParameterNode`).
    :param render: called with a fresh :class:`PanelView` after every change.
    :param ensure_dependencies: installs the engine's packages (after ``confirm``); True when present.
    """

    def __init__(self, logic: DiffSegLogic, parameter_class, dialogs: Dialogs,
                 render: Callable[[panelview.PanelView], None],
                 ensure_dependencies: Callable = dependencies.ensure_engine_dependencies):
        VTKObservationMixin.__init__(self)
        self.logic = logic
        self.parameter_class = parameter_class
        self.dialogs = dialogs
        self.render = render
        self.ensure_dependencies = ensure_dependencies
        self.params = None
        self.handle: RunHandle | None = None
        self.status = ""
        self.review = None
        self.loaded_models: list[ModelCard] = []
        self._inputs: list = []

    @property
    def scene(self):
        return self.logic.scene

    # -- lifecycle ----------------------------------------------------------------------------
    def enter(self) -> None:
        """The module is shown: make sure a parameter node exists, pick a model (first by
        :func:`.models.preference` for the volumes loaded, with its card's sampling defaults) and volumes, render."""
        if self.params is None:
            self.params = self.parameter_class(singleton_parameter_node(self.scene))
            self.addObserver(self.params.parameterNode, vtk.vtkCommand.ModifiedEvent, self.parameters_modified)
        if not self.params.model:
            loaded = auto_assign({v.GetID(): v.GetName() for v in scalar_volumes(self.scene)}, list(MODALITY_LABELS))
            preferred = sorted(list_bundled_models(), key=lambda c: preference(c, loaded or None))
            if preferred:
                self.params.model = str(preferred[0].path)
                self.use_card_defaults()
        self.auto_assign()
        self.parameters_modified()

    def scene_start_close(self) -> None:
        """The scene is closing: stop a run, forget the parameter node and the review."""
        if self.handle is not None:
            self.cancel()
            self.status = panelview.STATUS_CLOSED
        if self.params is not None:
            self.removeObserver(self.params.parameterNode, vtk.vtkCommand.ModifiedEvent, self.parameters_modified)
        self.params = None
        self.review = None
        self._observe_inputs([])

    def scene_end_close(self, visible: bool) -> None:
        """A new, empty scene: a shown module gets its new parameter node at once, a hidden one on enter."""
        if visible:
            self.enter()

    def cleanup(self) -> None:
        """The module is destroyed (Slicer exits or reloads the module)."""
        self.scene_start_close()
        self.removeObservers()

    # -- parameter node and referenced nodes --------------------------------------------------
    def parameters_modified(self, *_args) -> None:
        """The parameter node changed (GUI binding or code): follow the reviewed result and region, observe inputs."""
        params = self.params
        self._follow_review()
        chosen = [getattr(params, MODALITY_PARAMETERS[m]) for m in MODALITY_PARAMETERS] + [
            params.roi, params.includePoints, params.excludePoints]
        self._observe_inputs(list({node.GetID(): node for node in chosen if node is not None}.values()))
        self.render(self.view())

    def _observe_inputs(self, nodes: list) -> None:
        for node in self._inputs:
            for event in INPUT_EVENTS:
                self.removeObserver(node, event, self.inputs_modified)
        self._inputs = nodes
        for node in nodes:
            for event in INPUT_EVENTS:
                self.addObserver(node, event, self.inputs_modified)

    def inputs_modified(self, *_args) -> None:
        self.render(self.view())

    # -- model and inputs ---------------------------------------------------------------------
    def models(self) -> list[ModelCard]:
        """Bundled models, then model folders loaded this session (without duplicates)."""
        bundled = list_bundled_models()
        known = {str(c.path) for c in bundled}
        return bundled + [c for c in self.loaded_models if str(c.path) not in known]

    def card(self) -> ModelCard | None:
        if self.params is None or not self.params.model:
            return None
        try:
            return find_model(self.params.model)
        except ModelCardError:
            return None

    def model_chosen(self, path: str) -> None:
        """A model combo entry was picked (``""``: *Load from folder...*)."""
        if not path:
            folder = self.dialogs.choose_folder()
            if not folder:
                self.render(self.view())
                return
            try:
                card = find_model(folder)
            except ModelCardError as err:
                self.dialogs.error(str(err))
                self.render(self.view())
                return
            self.loaded_models.append(card)
            path = str(card.path)
        self.params.model = path
        self.use_card_defaults()
        self.auto_assign()

    def use_card_defaults(self) -> None:
        """Set the sampling settings (members, steps, sampler, ensemble) to the chosen model card's defaults."""
        card = self.card()
        self.params.members = int(card.default("members"))
        self.params.steps = int(card.default("steps"))
        self.params.sampler = str(card.default("sampler"))
        self.params.ensemble = str(card.default("ensemble"))

    def auto_assign(self, *_args) -> None:
        """Fill empty modality selectors from volume names (``*flair*``, ``*t1ce*``, ...)."""
        card, params = self.card(), self.params
        if card is None:
            return
        chosen = {m: getattr(params, MODALITY_PARAMETERS[m]) for m in card.modalities}
        taken = {node.GetID() for node in chosen.values() if node is not None}
        candidates = {v.GetID(): v.GetName() for v in scalar_volumes(self.scene) if v.GetID() not in taken}
        empty = [m for m, node in chosen.items() if node is None]
        for modality, node_id in auto_assign(candidates, empty).items():
            setattr(params, MODALITY_PARAMETERS[modality], self.scene.GetNodeByID(node_id))

    def request(self) -> RunRequest | None:
        params, card = self.params, self.card()
        if card is None:
            return None
        volumes = {m: getattr(params, MODALITY_PARAMETERS[m]) for m in card.modalities}
        slices = (params.sliceStart, params.sliceStop) if params.restrictSlices and params.roi is None else None
        return RunRequest(card, volumes, members=params.members, steps=params.steps, sampler=params.sampler,
                          ensemble=params.ensemble, seed=params.seed, device=params.device, slices=slices,
                          roi=params.roi)

    def problems(self, request: RunRequest | None) -> list[str]:
        """Why Apply cannot run (first one = its tooltip)."""
        too_old = dependencies.python_problem()
        if too_old:
            return [too_old]
        return self.logic.problems(request) if request else [panelview.NO_MODEL]

    # -- running ------------------------------------------------------------------------------
    def apply_clicked(self) -> None:
        """Apply (start a run) or, while one runs, Cancel."""
        if self.handle is not None:
            self.cancel()
        else:
            self.start(self.request())
        self.render(self.view())

    def start(self, request: RunRequest) -> bool:
        """Warn about suspicious inputs, install what is missing, start the engine. True when started."""
        problems = self.problems(request)
        if problems:
            self.status = f"Not started: {problems[0]}"
            self.dialogs.error(problems[0])
            return False
        warnings = self.logic.warnings(request)
        if warnings and not self.dialogs.confirm(panelview.warnings_question(warnings)):
            self.status = panelview.STATUS_DECLINED
            return False
        try:
            if not self.ensure_dependencies(confirm=self.dialogs.confirm):
                self.status = panelview.STATUS_NOT_INSTALLED
                return False
            self.handle = self.logic.start(request)
        except START_ERRORS as err:
            message = panelview.start_error_message(err)
            self.status = f"Not started: {message}"
            self.dialogs.error(message)
            return False
        self.status = panelview.STATUS_STARTING
        return True

    def poll(self) -> bool:
        """Process the engine's queued output (call from the main thread); False once the run ended."""
        handle = self.handle
        if handle is None:
            return False
        for event in handle.poll():
            if event.kind == "log":
                self.status = str(event.data.get("message", ""))
            elif event.kind == "progress":
                self.status = panelview.progress_status(event.progress)
        if handle.running:
            self.render(self.view())
            return True
        self.finish()
        return False

    def finish(self) -> None:
        """Read a finished run into the scene and put it under review (also while the module is hidden).

        A cancelled run never gets here: :meth:`cancel` drops its handle first.
        """
        handle, self.handle = self.handle, None
        try:
            segmentation, _uncertainty = self.logic.finish(handle)
            if handle.request.guidance is not None:
                self.refined()
        except (RuntimeError, OSError, ValueError) as err:  # DiffSegRunError, and write_label_map's
            self.status = panelview.STATUS_FAILED
            self.dialogs.error(str(err))
        else:
            self.status = panelview.done_status(segmentation.GetAttribute("DiffSeg.Seconds"))
            reviewed = self.params.outputSegmentation
            if reviewed is not None and reviewed.GetID() == segmentation.GetID():
                self._review(segmentation)  # a re-run merged into the reviewed result
            self.params.outputSegmentation = segmentation
            self.show_region_uncertainty()
        self.render(self.view())

    def cancel(self) -> None:
        """Kill the engine; the scene stays as it was."""
        handle, self.handle = self.handle, None
        self.logic.cancel(handle)
        self.status = panelview.STATUS_CANCELLED

    # -- what the panel shows -----------------------------------------------------------------
    def view(self) -> panelview.PanelView:
        params, card = self.params, self.card()
        models = tuple((c.title, str(c.path)) for c in self.models()) + ((panelview.LOAD_FROM_FOLDER, ""),)
        paths = [path for _, path in models]
        used = card.modalities if card else ()
        rows = tuple(panelview.ModalityRow(m, m in used, panelview.modality_label(label, (
            "reference" if m == card.reference_modality else "optional" if m in card.optional_modalities else ""
        ) if card else "")) for m, label in MODALITY_LABELS.items())
        running = self.handle is not None
        progress = self.handle.progress if running else None
        if running:
            apply = ("Cancel", True, panelview.CANCEL_TOOLTIP)
        else:
            request = self.request() if params is not None else None
            problems = self.problems(request) if params is not None else [panelview.NO_MODEL]
            apply = ("Apply", not problems, problems[0] if problems else panelview.ready_tooltip(
                card.title, tuple(MODALITY_LABELS[m] for m in card.optional_modalities if m not in request.inputs)))
        return panelview.PanelView(
            models=models,
            model_index=paths.index(str(card.path)) if card and str(card.path) in paths else len(models) - 1,
            model_info=card.intended_use if card else panelview.NO_MODEL_INFO,
            rows=rows,
            quality_hint=panelview.quality_hint(params.sampler, params.members, params.steps,
                                                params.ensemble) if params else "",
            slice_range_enabled=bool(params and params.restrictSlices),
            apply_text=apply[0], apply_enabled=apply[1], apply_tooltip=apply[2],
            rerun_enabled=bool(not running and params and params.outputSegmentation is not None),
            status=self.status,
            progress_visible=running,
            progress_maximum=max(progress.total, 1) if progress else 0,
            progress_value=progress.done if progress else 0,
            **self.review_view(), **self.refine_view())

