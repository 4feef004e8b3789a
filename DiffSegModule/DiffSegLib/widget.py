"""The DiffSeg panel: Qt widgets from ``Resources/UI/DiffSeg.ui`` wired to :class:`DiffSegLogic`.

Inside Slicer only (imports ``qt``). The panel never blocks: Apply starts the engine through
:meth:`DiffSegLogic.start`, a ``qt.QTimer`` on the main thread polls the run (the runner's reader
thread only queues lines) and drives a determinate progress bar; Apply turns into Cancel while a
run is going. Parameters live in a :class:`DiffSegParameterNode` bound to the .ui.
"""

from __future__ import annotations

import logging

import qt
import vtk

import slicer
from slicer.util import VTKObservationMixin

from . import dependencies, paths, results, review
from .inputs import DiffSegInputError
from .logic import DiffSegCancelled, DiffSegLogic, DiffSegRunError, RunRequest
from .models import MODALITY_LABELS, MODALITY_PARAMETERS, ModelCardError, auto_assign, find_model, list_bundled_models
from .parameters import DiffSegParameterNode

MODULE_NAME = "DiffSeg"
LOAD_FROM_FOLDER = "Load from folder..."
POLL_INTERVAL_MS = 100
RANKED_SLICES_SHOWN = 20
# Measured on the brats-flair validation cases (docs/results.md, section 3): 5 to 50 steps x 5 members
# gave whole-tumour Dice 0.904-0.910 for every sampler; time grows linearly with steps.
SAMPLER_HINTS = {
    "dpmpp": "DPM-Solver++ (default): 5-50 steps gave the same Dice on the BraTS validation cases; 10 keeps a margin.",
    "ddim": "DDIM: deterministic given the seed; as accurate as DPM-Solver++ at 5-50 steps on the BraTS validation cases.",
    "ddpm": "DDPM: the paper's sampler (1000 steps there); at 5-50 steps as accurate as the others here, and as fast.",
}


def _raw_parameter_node():
    """The module's singleton ``vtkMRMLScriptedModuleNode`` (created if absent), as Slicer's logic does."""
    node = slicer.mrmlScene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
    if node is None:
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(MODULE_NAME)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(MODULE_NAME))
        node.SetAttribute("ModuleName", MODULE_NAME)
        node = slicer.mrmlScene.AddNode(node)
    return node


class DiffSegPanel(VTKObservationMixin):
    """Builds the panel into ``layout`` and reacts to the user; owns one :class:`DiffSegLogic`."""

    def __init__(self, layout):
        VTKObservationMixin.__init__(self)
        self.uiWidget = slicer.util.loadUI(str(paths.resource_path("UI/DiffSeg.ui")))
        layout.addWidget(self.uiWidget)
        self.ui = slicer.util.childWidgetVariables(self.uiWidget)
        self.uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DiffSegLogic(temp_root=slicer.app.temporaryPath)
        self._parameterNode = None
        self._guiTag = None
        self._handle = None
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._onPoll)
        self._thresholdTimer = qt.QTimer()
        self._thresholdTimer.setSingleShot(True)
        self._thresholdTimer.setInterval(30)
        self._thresholdTimer.connect("timeout()", self._applyThreshold)

        self.ui.outputSegmentationSelector.addAttribute("vtkMRMLSegmentationNode", results.ROLE_ATTRIBUTE, "segmentation")
        self.ui.progressBar.setVisible(False)
        # Explicit signatures: several of these signals are overloaded in Qt 5 (e.g. currentNodeChanged(bool)).
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self._onModelChosen)
        self.ui.applyButton.connect("clicked(bool)", self._onApplyOrCancel)
        self.ui.rerunButton.connect("clicked(bool)", self._onRerun)
        self.ui.uncertainSlicesListWidget.connect("itemClicked(QListWidgetItem*)", self._onSliceClicked)
        self.ui.thresholdSliderWidget.connect("valueChanged(double)", lambda _value: self._thresholdTimer.start())
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onResultChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self._onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self._onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self._onNodeAdded)
        self._populateModels()
        self.initializeParameterNode()

    # -- lifecycle (called by DiffSegWidget) --------------------------------------------------------
    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        """Stop syncing the GUI; a running engine keeps running and is still polled."""
        self.setParameterNode(None)

    def cleanup(self) -> None:
        if self._handle is not None:
            self._cancel()
        self._pollTimer.stop()
        self._thresholdTimer.stop()
        self.setParameterNode(None)
        self.removeObservers()

    def _onSceneStartClose(self, caller, event) -> None:
        if self._handle is not None:
            self._cancel()
        self.setParameterNode(None)

    def _onSceneEndClose(self, caller, event) -> None:
        if self.uiWidget.isVisible():
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(DiffSegParameterNode(_raw_parameter_node()))
        if not self._parameterNode.model:
            cards = list_bundled_models()
            preferred = sorted(cards, key=lambda c: (c.name == "phantom", c.name))
            if preferred:
                self._parameterNode.model = str(preferred[0].path)
        self._syncModelCombo()
        self._autoAssign()

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._guiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
        self._parameterNode, self._guiTag = parameterNode, None
        if parameterNode is not None:
            self._guiTag = parameterNode.connectGui(self.ui)
            self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
            self._updateState()

    # -- model and inputs -------------------------------------------------------------------------
    def _populateModels(self) -> None:
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        for card in list_bundled_models():
            combo.addItem(card.title, str(card.path))
        combo.addItem(LOAD_FROM_FOLDER, "")
        combo.blockSignals(False)

    def _syncModelCombo(self) -> None:
        card = self._card()
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        if card is not None:
            index = combo.findData(str(card.path))
            if index < 0:
                combo.insertItem(combo.count - 1, card.title, str(card.path))
                index = combo.findData(str(card.path))
            combo.setCurrentIndex(index)
        combo.blockSignals(False)
        self._updateModalityRows()

    def _card(self):
        if self._parameterNode is None or not self._parameterNode.model:
            return None
        try:
            return find_model(self._parameterNode.model)
        except ModelCardError:
            return None

    def _onModelChosen(self, index: int) -> None:
        if self._parameterNode is None:
            return
        path = self.ui.modelComboBox.itemData(index)
        if not path:  # "Load from folder..."
            folder = qt.QFileDialog.getExistingDirectory(self.uiWidget, "DiffSeg model folder (with model.json)")
            if not folder:
                self._syncModelCombo()
                return
            try:
                path = str(find_model(folder).path)
            except ModelCardError as err:
                slicer.util.errorDisplay(str(err), windowTitle="DiffSeg")
                self._syncModelCombo()
                return
        self._parameterNode.model = path
        card = self._card()
        if card is not None:
            self._parameterNode.members = int(card.default("members"))
            self._parameterNode.steps = int(card.default("steps"))
            self._parameterNode.sampler = str(card.default("sampler"))
        self._syncModelCombo()
        self._autoAssign()

    def _updateModalityRows(self) -> None:
        card = self._card()
        used = card.modalities if card else ()
        for modality in MODALITY_PARAMETERS:
            label, selector = getattr(self.ui, f"{modality}Label"), getattr(self.ui, f"{modality}VolumeSelector")
            label.setVisible(modality in used)
            selector.setVisible(modality in used)
            reference = card is not None and modality == card.reference_modality
            label.setText(f"{MODALITY_LABELS[modality]}{' (reference)' if reference else ''}:")
        self.ui.modelInfoLabel.setText(card.intended_use if card else "No DiffSeg model found: load one from a folder.")

    def _onNodeAdded(self, caller, event) -> None:
        qt.QTimer.singleShot(0, self._autoAssign)  # after the node got its name

    def _autoAssign(self) -> None:
        """Fill empty modality selectors from volume names (``*flair*``, ``*t1ce*``, ...)."""
        card, node = self._card(), self._parameterNode
        if card is None or node is None:
            return
        taken = {getattr(node, MODALITY_PARAMETERS[m]).GetID() for m in card.modalities
                 if getattr(node, MODALITY_PARAMETERS[m]) is not None}
        candidates = {}
        for volume in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            if volume.IsA("vtkMRMLLabelMapVolumeNode") or volume.GetAttribute(results.ROLE_ATTRIBUTE):
                continue
            if volume.GetID() not in taken:
                candidates[volume.GetID()] = volume.GetName()
        empty = [m for m in card.modalities if getattr(node, MODALITY_PARAMETERS[m]) is None]
        for modality, node_id in auto_assign(candidates, empty).items():
            setattr(node, MODALITY_PARAMETERS[modality], slicer.mrmlScene.GetNodeByID(node_id))

    # -- state --------------------------------------------------------------------------------
    def _request(self) -> RunRequest | None:
        node, card = self._parameterNode, self._card()
        if node is None or card is None:
            return None
        volumes = {m: getattr(node, MODALITY_PARAMETERS[m]) for m in card.modalities}
        slices = (node.sliceStart, node.sliceStop) if node.restrictSlices and node.roi is None else None
        return RunRequest(card, volumes, members=node.members, steps=node.steps, sampler=node.sampler,
                          seed=node.seed, device=node.device, slices=slices, roi=node.roi)

    def _updateState(self, *_args) -> None:
        node = self._parameterNode
        if node is None:
            return
        self.ui.sliceStartSpinBox.setEnabled(node.restrictSlices)
        self.ui.sliceStopSpinBox.setEnabled(node.restrictSlices)
        self.ui.qualityHintLabel.setText(f"{SAMPLER_HINTS.get(node.sampler, '')} {node.members} members x "
                                         f"{node.steps} steps = {node.members * node.steps} network passes per slice.")
        if self._handle is not None:
            self.ui.applyButton.text, self.ui.applyButton.enabled = "Cancel", True
            self.ui.applyButton.toolTip = "Stop the engine; nothing is added to the scene."
            self.ui.rerunButton.enabled = False
            return
        request = self._request()
        problems = self.logic.problems(request) if request else ["Choose a DiffSeg model (or load one from a folder)."]
        self.ui.applyButton.text = "Apply"
        self.ui.applyButton.enabled = not problems
        self.ui.applyButton.toolTip = problems[0] if problems else (
            f"Segment the tumour with '{request.model.title}' and compute its uncertainty.")
        self.ui.rerunButton.enabled = node.outputSegmentation is not None

    # -- running ------------------------------------------------------------------------------
    def _onApplyOrCancel(self, _checked: bool = False) -> None:
        if self._handle is not None:
            self._cancel()
            return
        self._start(self._request())

    def _start(self, request: RunRequest) -> None:
        try:
            if not dependencies.ensure_engine_dependencies(
                    confirm=lambda message: slicer.util.confirmOkCancelDisplay(message, "DiffSeg")):
                self.ui.statusLabel.text = "Not started: the engine's Python packages are not installed."
                return
            self._handle = self.logic.start(request)
        except (DiffSegInputError, RuntimeError, OSError) as err:
            slicer.util.errorDisplay(str(err), windowTitle="DiffSeg")
            return
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setRange(0, 0)  # busy until the first progress line gives the total
        self.ui.statusLabel.text = "Starting the engine..."
        self._pollTimer.start()
        self._updateState()

    def _onPoll(self) -> None:
        handle = self._handle
        if handle is None:
            self._pollTimer.stop()
            return
        for event in handle.poll():
            if event.kind == "log":
                self.ui.statusLabel.text = str(event.data.get("message", ""))
            elif event.kind == "progress":
                p = event.progress
                self.ui.progressBar.setRange(0, max(p.total, 1))
                self.ui.progressBar.setValue(p.done)
                eta = f", about {_duration(p.eta_s)} left" if p.eta_s is not None else ""
                self.ui.statusLabel.text = f"{p.message or 'Sampling'}: step {p.done} of {p.total}{eta}"
        if not handle.running:
            self._pollTimer.stop()
            self._finish()

    def _finish(self) -> None:
        handle, self._handle = self._handle, None
        self.ui.progressBar.setVisible(False)
        try:
            segmentation, _uncertainty = self.logic.finish(handle)
        except DiffSegCancelled:
            self.ui.statusLabel.text = "Cancelled; nothing was added to the scene."
        except (DiffSegRunError, OSError, ValueError) as err:
            self.ui.statusLabel.text = "Failed; the scene was not changed."
            slicer.util.errorDisplay(str(err), windowTitle="DiffSeg")
        else:
            seconds = segmentation.GetAttribute("DiffSeg.Seconds")
            self.ui.statusLabel.text = f"Done{f' in {_duration(float(seconds))}' if seconds else ''}."
            if self._parameterNode is not None:
                self._parameterNode.outputSegmentation = segmentation
            self._onResultChanged(segmentation)
        finally:
            self._updateState()

    def _cancel(self) -> None:
        handle, self._handle = self._handle, None
        self._pollTimer.stop()
        self.logic.cancel(handle)
        self.ui.progressBar.setVisible(False)
        self.ui.statusLabel.text = "Cancelled; nothing was added to the scene."
        self._updateState()

    # -- review -------------------------------------------------------------------------------
    def _onResultChanged(self, segmentation) -> None:
        slider = self.ui.thresholdSliderWidget
        slider.blockSignals(True)
        slider.value = review.threshold_of(segmentation) if segmentation else review.DEFAULT_THRESHOLD
        slider.blockSignals(False)
        self._refreshRanking()

    def _applyThreshold(self) -> None:
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        if segmentation is None:
            return
        try:
            review.apply_threshold(segmentation, float(self.ui.thresholdSliderWidget.value))
        except ValueError as err:
            logging.warning("DiffSeg threshold: %s", err)

    def _refreshRanking(self) -> None:
        listWidget = self.ui.uncertainSlicesListWidget
        listWidget.clear()
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        if segmentation is None:
            return
        for ranked in review.rank_slices(segmentation, limit=RANKED_SLICES_SHOWN):
            item = qt.QListWidgetItem(f"Slice {ranked.index}: mean uncertainty {ranked.mean_uncertainty:.3f} "
                                      f"({ranked.voxels} voxels)")
            item.setData(qt.Qt.UserRole, ranked.index)
            listWidget.addItem(item)

    def _onSliceClicked(self, item) -> None:
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        if segmentation is not None:
            review.jump_to_slice(segmentation, int(item.data(qt.Qt.UserRole)))

    def _onRerun(self, _checked: bool = False) -> None:
        node = self._parameterNode
        segmentation = node.outputSegmentation if node else None
        if segmentation is None or self._handle is not None:
            return
        slices = None
        if node.roi is None:
            if node.restrictSlices:
                slices = (node.sliceStart, node.sliceStop)
            else:
                red = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed")
                matrix = red.GetSliceToRAS() if red else None
                position = [matrix.GetElement(r, 3) for r in range(3)] if matrix else [0.0, 0.0, 0.0]
                slices = review.slices_around(segmentation, position)
        try:
            request = self.logic.rerun_request(segmentation, slices=slices, roi=node.roi, members=node.rerunMembers,
                                               steps=node.steps, sampler=node.sampler, device=node.device)
        except DiffSegInputError as err:
            slicer.util.errorDisplay(str(err), windowTitle="DiffSeg")
            return
        self._start(request)


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
