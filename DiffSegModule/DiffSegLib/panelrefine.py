"""The Refine section of the panel (no Qt): include / exclude points, Segment Editor edits as strokes,
Refine (which becomes Cancel while it runs) and Undo.

:class:`RefineMixin` is mixed into :class:`.panel.PanelController`, which provides ``params``, ``logic``,
``scene``, ``dialogs``, ``handle``, ``status``, ``review``, ``render``, ``view``, ``start``, ``cancel`` and
``_review``. The points live in two markups point lists (parameters ``includePoints`` / ``excludePoints``),
made on demand with distinct colours; placing one puts Slicer's mouse mode into persistent point placement
on that list. A refinement is started, polled, cancelled and finished like Apply; after it succeeded the
lists are emptied (the run record keeps the guidance, so the next refinement adds to it).
"""

from __future__ import annotations

from . import panelview
from .guidance import markups_points
from .inputs import DiffSegInputError

#: kind → (list name, colour of the points, parameter holding the list).
POINT_LISTS = {
    "include": ("DiffSeg include", (0.2, 0.85, 0.3), "includePoints"),
    "exclude": ("DiffSeg exclude", (0.95, 0.2, 0.2), "excludePoints"),
}


class RefineMixin:
    """Guidance, Refine and Undo of the result under review."""

    def point_list(self, kind: str, create: bool = False):
        """The ``kind`` (include / exclude) point list; with ``create``, made (named, coloured) when absent."""
        name, colour, parameter = POINT_LISTS[kind]
        node = getattr(self.params, parameter)
        if node is None and create:
            node = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
            node.CreateDefaultDisplayNodes()
            node.GetDisplayNode().SetSelectedColor(*colour)
            node.GetDisplayNode().SetActiveColor(*colour)
            setattr(self.params, parameter, node)
        return node

    def place_clicked(self, kind: str) -> None:
        """Place include / exclude points with the mouse (persistent placement on that list)."""
        node = self.point_list(kind, create=True)
        selection = self.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        interaction = self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(1)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self.status = panelview.placing_status(kind)
        self.render(self.view())

    def refine_request(self):
        """The refinement the panel would start: the reviewed result, both lists' points, its edits when chosen."""
        segmentation = self.params.outputSegmentation
        return self.logic.refine_request(
            segmentation, include=markups_points(self.point_list("include")),
            exclude=markups_points(self.point_list("exclude")),
            strokes=segmentation if self.params.refineUseEdits else None,
            region=self.review.region if self.review else "wt", device=self.params.device)

    def refine_clicked(self) -> None:
        """Refine the result under review or, while it runs, Cancel."""
        if self.handle is not None:
            self.cancel()
        elif self.params.outputSegmentation is not None:
            self.start(self.refine_request())
        self.render(self.view())

    def refined(self) -> None:
        """A refinement succeeded: its points are in the result's run record now, so the lists are emptied."""
        for kind in POINT_LISTS:
            node = self.point_list(kind)
            if node is not None:
                node.RemoveAllControlPoints()

    def undo_clicked(self) -> None:
        """Back to the result before its last refinement."""
        segmentation = self.params.outputSegmentation
        try:
            self.logic.undo_refine(segmentation)
        except (DiffSegInputError, OSError) as err:
            self.dialogs.error(str(err))
        else:
            self._review(segmentation)
            self.show_region_uncertainty()
            self.status = panelview.STATUS_UNDONE
        self.render(self.view())

    def refine_view(self) -> dict:
        """The :class:`.panelview.PanelView` fields of the Refine section."""
        params = self.params
        segmentation = params.outputSegmentation if params else None
        refining = self.handle is not None and self.handle.request.guidance is not None
        counts = {kind: len(markups_points(self.point_list(kind))) if params else 0 for kind in POINT_LISTS}
        problem = None
        if self.handle is not None:
            problem = None if refining else panelview.BUSY
        elif segmentation is None:
            problem = panelview.NO_RESULT
        elif not any(counts.values()) and not params.refineUseEdits:
            problem = panelview.NO_GUIDANCE
        return {
            "guidance_text": panelview.guidance_text(counts["include"], counts["exclude"], bool(params and params.refineUseEdits)),
            "refine_text": "Cancel" if refining else "Refine",
            "refine_enabled": problem is None,
            "refine_tooltip": panelview.CANCEL_TOOLTIP if refining else problem or panelview.REFINE_TOOLTIP,
            "undo_enabled": self.handle is None and self.logic.can_undo_refine(segmentation),
        }
