"""The review half of the panel's behaviour (no Qt): the result and region under review, the live
threshold per region, the ranked slices, a click on one, and *Re-run here*.

:class:`ReviewMixin` is mixed into :class:`.panel.PanelController`, which provides ``params``, ``logic``,
``scene``, ``dialogs``, ``handle``, ``status``, ``render``, ``view`` and ``start``. The region under review
is the parameter ``region`` (``wt``, ``tc`` or ``et``; set by the region selector, saved with the scene).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from . import panelview, results, review
from .inputs import DiffSegInputError
from .regions import REGION_TITLES, regions_of


@dataclass
class RegionReview:
    """A result under review: its segmentation node ID, the region, and that region's slices ranked by uncertainty."""

    segmentation_id: str
    region: str
    ranked: list = field(default_factory=list)


class ReviewMixin:
    """Review of a finished result, per tumour region."""

    review: RegionReview | None = None

    def _follow_review(self) -> None:
        """Called on every parameter change: review again when the result or the region changed."""
        segmentation = self.params.outputSegmentation
        current = self.review
        shown = (current.segmentation_id, current.region) if current else (None, None)
        wanted = (segmentation.GetID(), self.params.region) if segmentation else (None, None)
        if shown != wanted:
            self._review(segmentation)

    def _review(self, segmentation) -> None:
        """Put ``segmentation`` under review in the chosen region (the whole tumour when it lacks that region):
        the region's stored threshold goes to the parameter (and so to the slider), its slices are ranked.
        The review is recorded before parameters are set, so their echo finds it current."""
        if segmentation is None:
            self.review = None
            return
        region = self.params.region if self.params.region in regions_of(segmentation) else "wt"
        self.review = RegionReview(segmentation.GetID(), region,
                                   review.rank_slices(segmentation, limit=panelview.RANKED_SLICES_SHOWN, region=region))
        if self.params.region != region:
            self.params.region = region
        self.params.threshold = review.threshold_of(segmentation, region)

    def region_chosen(self, region: str) -> None:
        """A region was picked in the selector: review it and show its uncertainty over the image."""
        self.params.region = region
        self.show_region_uncertainty()

    def show_region_uncertainty(self) -> None:
        """The reviewed region's uncertainty as the slice views' foreground (a run shows the whole tumour's)."""
        segmentation = self.params.outputSegmentation
        if segmentation is not None and self.review is not None:
            _, uncertainty = results.output_volumes(segmentation, self.review.region)
            results.show_in_slice_views(self.scene, review.reference_volume(segmentation), uncertainty)

    def threshold_settled(self) -> None:
        """The threshold slider came to rest: re-derive the segments if the value differs from the region's."""
        segmentation = self.params.outputSegmentation if self.params else None
        if segmentation is None or self.review is None:
            return
        region = self.review.region
        if abs(self.params.threshold - review.threshold_of(segmentation, region)) < 1e-9:
            return
        try:
            review.apply_threshold(segmentation, float(self.params.threshold), region)
        except (ValueError, RuntimeError) as err:
            logging.warning("DiffSeg threshold: %s", err)
            self.status = str(err)
            self.render(self.view())

    def slice_clicked(self, index: int) -> None:
        segmentation = self.params.outputSegmentation
        if segmentation is not None:
            review.jump_to_slice(segmentation, index)

    def rerun_clicked(self) -> None:
        """Sample the chosen range (ROI, slice range, else 5 slices around the red view) again and merge
        every region."""
        params = self.params
        segmentation = params.outputSegmentation
        if segmentation is None or self.handle is not None:
            return
        slices = None
        if params.roi is None:
            if params.restrictSlices:
                slices = (params.sliceStart, params.sliceStop)
            else:
                slices = review.slices_around(segmentation, review.red_view_center(self.scene))
        try:
            request = self.logic.rerun_request(segmentation, slices=slices, roi=params.roi,
                                               members=params.rerunMembers, steps=params.steps,
                                               sampler=params.sampler, device=params.device)
        except DiffSegInputError as err:
            self.dialogs.error(str(err))
            return
        self.start(request)
        self.render(self.view())

    def review_view(self) -> dict:
        """The :class:`.panelview.PanelView` fields of the review: ranking and the region selector."""
        segmentation = self.params.outputSegmentation if self.params else None
        current = self.review
        regions = regions_of(segmentation) if segmentation is not None else ("wt",)
        return {
            "ranking": panelview.ranking_rows(current.ranked) if current else (),
            "regions": tuple((REGION_TITLES[r], r) for r in regions),
            "region_index": regions.index(current.region) if current and current.region in regions else 0,
            "region_visible": len(regions) > 1,
        }
