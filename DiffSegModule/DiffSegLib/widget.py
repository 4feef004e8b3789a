"""The DiffSeg panel's Qt side: ``Resources/UI/DiffSeg.ui`` wired to a :class:`.panel.PanelController`.

Inside Slicer only (imports ``qt``). This file decides nothing: it forwards Qt signals and scene
events to the controller, binds the parameter node to the .ui (``connectParametersToGui``, which
returns its tag on every Slicer version, unlike ``connectGui`` before 5.10), polls a running engine
from a ``qt.QTimer`` on the main thread, and copies each :class:`.panelview.PanelView` into the
widgets.

Only calls that mean the same in PythonQt (Slicer) and in PyQt5 (the tests) are used: setters and
methods, never Qt properties as Python attributes (``button.enabled = ...``), and no getter whose
name is also a property (``count()``, ``value()``, ``text()``).
"""

from __future__ import annotations

import qt

import slicer
from slicer.util import VTKObservationMixin

from . import paths, results
from .logic import DiffSegLogic
from .panel import GUI_BINDINGS, PanelController
from .parameters import DiffSegParameterNode
from .warmengines import WARM_ENGINES

POLL_INTERVAL_MS = 100
THRESHOLD_SETTLE_MS = 30


class SlicerDialogs:
    """The controller's dialogs, as Slicer shows them."""

    def __init__(self, parent):
        self.parent = parent

    def confirm(self, text: str) -> bool:
        return slicer.util.confirmOkCancelDisplay(text, "DiffSeg")

    def error(self, text: str) -> None:
        slicer.util.errorDisplay(text, windowTitle="DiffSeg")

    def choose_folder(self) -> str:
        return qt.QFileDialog.getExistingDirectory(self.parent, "DiffSeg model folder (with model.json)")


class DiffSegPanel(VTKObservationMixin):
    """Builds the panel into ``layout``; ``controller`` holds all behaviour."""

    def __init__(self, layout):
        VTKObservationMixin.__init__(self)
        self.uiWidget = slicer.util.loadUI(str(paths.resource_path("UI/DiffSeg.ui")))
        layout.addWidget(self.uiWidget)
        self.ui = slicer.util.childWidgetVariables(self.uiWidget)
        self.uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DiffSegLogic(temp_root=slicer.app.temporaryPath,
                                  results_root=f"{slicer.app.temporaryPath}/DiffSeg-results")
        self.controller = PanelController(self.logic, DiffSegParameterNode, SlicerDialogs(self.uiWidget), self.render)
        self._guiTag = None
        self._rendered = {}
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._onPoll)
        self._thresholdTimer = qt.QTimer()
        self._thresholdTimer.setSingleShot(True)
        self._thresholdTimer.setInterval(THRESHOLD_SETTLE_MS)
        self._thresholdTimer.connect("timeout()", self.controller.threshold_settled)

        self.ui.outputSegmentationSelector.addAttribute("vtkMRMLSegmentationNode", results.ROLE_ATTRIBUTE, "segmentation")
        # Explicit signatures: several of these signals are overloaded in Qt 5 (e.g. currentNodeChanged(bool)).
        self.ui.modelComboBox.connect("activated(int)", self._onModelChosen)
        self.ui.tumorRegionComboBox.connect("activated(int)", self._onRegionChosen)
        self.ui.applyButton.connect("clicked(bool)", self._onApply)
        self.ui.rerunButton.connect("clicked(bool)", self._onRerun)
        self.ui.placeIncludeButton.connect("clicked(bool)", lambda _checked=False: self.controller.place_clicked("include"))
        self.ui.placeExcludeButton.connect("clicked(bool)", lambda _checked=False: self.controller.place_clicked("exclude"))
        self.ui.refineButton.connect("clicked(bool)", self._onRefine)
        self.ui.undoRefineButton.connect("clicked(bool)", lambda _checked=False: self.controller.undo_clicked())
        self.ui.uncertainSlicesListWidget.connect("itemClicked(QListWidgetItem*)", self._onSliceClicked)
        self.ui.thresholdSliderWidget.connect("valueChanged(double)", self._onThresholdMoved)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self._onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self._onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self._onNodeAdded)

    # -- lifecycle (called by DiffSegWidget) --------------------------------------------------------
    def enter(self) -> None:
        """Shown: bind the parameter node to the widgets (once) and render; start an engine for the next run."""
        self.controller.enter()
        self._connectGui()
        self.logic.warm_up()

    def exit(self) -> None:
        """Hidden: unbind the widgets; the parameter node, a running engine and its polling stay."""
        self._disconnectGui()

    def cleanup(self) -> None:
        WARM_ENGINES.stop_all()
        self._pollTimer.stop()
        self._thresholdTimer.stop()
        self._disconnectGui()
        self.controller.cleanup()
        self.removeObservers()

    def _connectGui(self) -> None:
        if self._guiTag is None:
            widgets = {name: getattr(self.ui, widget) for name, widget in GUI_BINDINGS.items()}
            self._guiTag = self.controller.params.connectParametersToGui(widgets)

    def _disconnectGui(self) -> None:
        if self._guiTag is not None:
            self.controller.params.disconnectGui(self._guiTag)
            self._guiTag = None

    def _onSceneStartClose(self, caller, event) -> None:
        self._disconnectGui()
        self._pollTimer.stop()
        self.controller.scene_start_close()

    def _onSceneEndClose(self, caller, event) -> None:
        visible = self.uiWidget.isVisible()
        self.controller.scene_end_close(visible)
        if visible:
            self._connectGui()

    def _onNodeAdded(self, caller, event) -> None:
        qt.QTimer.singleShot(0, self.controller.auto_assign)  # after the node got its name

    # -- forwarded events ---------------------------------------------------------------------
    def _onModelChosen(self, index: int) -> None:
        self.controller.model_chosen(self.ui.modelComboBox.itemData(index))

    def _onRegionChosen(self, index: int) -> None:
        self.controller.region_chosen(self.ui.tumorRegionComboBox.itemData(index))

    def _onApply(self, _checked: bool = False) -> None:
        self.controller.apply_clicked()
        self._followRun()

    def _onRerun(self, _checked: bool = False) -> None:
        self.controller.rerun_clicked()
        self._followRun()

    def _onRefine(self, _checked: bool = False) -> None:
        self.controller.refine_clicked()
        self._followRun()

    def _followRun(self) -> None:
        if self.controller.handle is not None:
            self._pollTimer.start()

    def _onPoll(self) -> None:
        if not self.controller.poll():
            self._pollTimer.stop()

    def _onThresholdMoved(self, _value: float) -> None:
        self._thresholdTimer.start()

    def _onSliceClicked(self, item) -> None:
        self.controller.slice_clicked(int(item.data(qt.Qt.UserRole)))

    # -- rendering ----------------------------------------------------------------------------
    def render(self, view) -> None:
        """Copy a :class:`PanelView` into the widgets (lists only when they changed)."""
        ui = self.ui
        self._renderCombo(ui.modelComboBox, "models", view.models, view.model_index)
        ui.modelInfoLabel.setText(view.model_info)
        for row in view.rows:
            getattr(ui, f"{row.modality}Label").setVisible(row.shown)
            getattr(ui, f"{row.modality}Label").setText(row.label)
            getattr(ui, f"{row.modality}VolumeSelector").setVisible(row.shown)
        ui.qualityHintLabel.setText(view.quality_hint)
        ui.sliceStartSpinBox.setEnabled(view.slice_range_enabled)
        ui.sliceStopSpinBox.setEnabled(view.slice_range_enabled)
        ui.applyButton.setText(view.apply_text)
        ui.applyButton.setEnabled(view.apply_enabled)
        ui.applyButton.setToolTip(view.apply_tooltip)
        ui.rerunButton.setEnabled(view.rerun_enabled)
        ui.statusLabel.setText(view.status)
        ui.progressBar.setVisible(view.progress_visible)
        ui.progressBar.setRange(0, view.progress_maximum)
        ui.progressBar.setValue(view.progress_value)
        ui.tumorRegionLabel.setVisible(view.region_visible)
        ui.tumorRegionComboBox.setVisible(view.region_visible)
        self._renderCombo(ui.tumorRegionComboBox, "regions", view.regions, view.region_index)
        ui.guidanceLabel.setText(view.guidance_text)
        ui.refineButton.setText(view.refine_text)
        ui.refineButton.setEnabled(view.refine_enabled)
        ui.refineButton.setToolTip(view.refine_tooltip)
        ui.undoRefineButton.setEnabled(view.undo_enabled)
        if self._rendered.get("ranking") != view.ranking:
            ui.uncertainSlicesListWidget.clear()
            for text, index in view.ranking:
                item = qt.QListWidgetItem(text)
                item.setData(qt.Qt.UserRole, index)
                ui.uncertainSlicesListWidget.addItem(item)
            self._rendered["ranking"] = view.ranking

    def _renderCombo(self, combo, key: str, entries, index: int) -> None:
        """Fill ``combo`` with (title, data) ``entries`` when they changed, and select ``index``."""
        if self._rendered.get(key) != entries:
            combo.blockSignals(True)
            combo.clear()
            for title, data in entries:
                combo.addItem(title, data)
            combo.blockSignals(False)
            self._rendered[key] = entries
        combo.setCurrentIndex(index)
