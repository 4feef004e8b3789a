"""The panel's parameters, saved with the scene, bound to ``Resources/UI/DiffSeg.ui``.

Each attribute but ``model``, ``region`` and the two point lists is bound two-way to the widget :data:`.panel.GUI_BINDINGS` names (the
.ui marks the same widgets with a ``SlicerParameterName`` dynamic property), through
``connectParametersToGui``. ``model`` and ``region`` are set by code: their combo boxes list what is
found at run time (the models; the regions of the result under review), which a bound ``Choice`` cannot express;
the point lists are made when the user first places a point.

Imported only inside Slicer (``slicer.parameterNodeWrapper`` is not part of ``slicer-core``); the
logic never depends on this file.
"""

from typing import Annotated

from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from .logic import DEVICES, ENSEMBLES
from .models import SAMPLERS
from .regions import REGIONS


@parameterNodeWrapper
class DiffSegParameterNode:
    """Parameters of the DiffSeg panel.

    model: bundled model name or model folder path.
    flairVolume, t1Volume, t1ceVolume, t2Volume: input volumes (only those the model lists are used).
    members, sampler, steps, ensemble, device, seed: sampling settings (members × steps network passes per slice;
    fewer away from the tumour with the ``adaptive`` ensemble).
    roi, restrictSlices, sliceStart, sliceStop: optional region; ROI wins over the slice range.
    outputSegmentation, region, threshold, rerunMembers: review of a result; ``threshold`` is that of
    ``region`` (wt, tc or et), each region's is stored on the result.
    includePoints, excludePoints, refineUseEdits: guidance of Refine (point lists made on demand; whether the
    Segment Editor edits of the result are sent as strokes).
    """

    model: str = ""
    flairVolume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    t1ceVolume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    members: Annotated[int, WithinRange(1, 100)] = 5
    sampler: Annotated[str, Choice(list(SAMPLERS))] = "dpmpp"
    steps: Annotated[int, WithinRange(1, 1000)] = 10
    ensemble: Annotated[str, Choice(list(ENSEMBLES))] = "full"
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    seed: Annotated[int, WithinRange(0, 999999)] = 0
    roi: vtkMRMLMarkupsROINode
    restrictSlices: bool = False
    sliceStart: Annotated[int, WithinRange(0, 9999)] = 0
    sliceStop: Annotated[int, WithinRange(0, 9999)] = 0
    outputSegmentation: vtkMRMLSegmentationNode
    region: Annotated[str, Choice(list(REGIONS))] = "wt"
    threshold: Annotated[float, WithinRange(0.01, 1.0)] = 0.5
    rerunMembers: Annotated[int, WithinRange(1, 100)] = 10
    includePoints: vtkMRMLMarkupsFiducialNode
    excludePoints: vtkMRMLMarkupsFiducialNode
    refineUseEdits: bool = False
