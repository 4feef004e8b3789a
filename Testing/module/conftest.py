"""Fixtures for the Slicer-module tests: a real MRML scene built from ``slicer-core``.

No Slicer application runs here. The scene is assembled the way Slicer assembles it (DESIGN.md §5):
an application logic with colour, volumes, segmentations and subject-hierarchy module logics
registered by name, plus one slice view (slice node + composite node) so display code has a
target. ``slicer.mrmlScene`` points at it for the duration of a test.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "DiffSegModule"
HERE = Path(__file__).resolve().parent

import slicer  # noqa: E402  (slicer-core)
import vtk  # noqa: E402

from DiffSegLib import geometry  # noqa: E402
from DiffSegLib.logic import DiffSegLogic, RunRequest  # noqa: E402
from DiffSegLib.models import ModelCard  # noqa: E402
from DiffSegLib.runner import EngineRunner  # noqa: E402

#: Small, oblique, non-isotropic test grid (voxels; mm).
SHAPE = (40, 44, 16)
SPACING = (1.2, 1.0, 2.5)


class SceneHarness:
    """A scene with Slicer's module logics, and helpers to load data the way Slicer does."""

    def __init__(self, home: Path):
        self.scene = slicer.vtkMRMLScene()
        # As the Slicer application does: a cache folder for unpacking .mrb bundles.
        cache = slicer.vtkCacheManager()
        (home / "cache").mkdir(exist_ok=True)
        cache.SetRemoteCacheDirectory(str(home / "cache"))
        self.io_manager = slicer.vtkDataIOManager()
        self.io_manager.SetCacheManager(cache)
        self.scene.SetCacheManager(cache)
        self.scene.SetDataIOManager(self.io_manager)
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        # slicer-core has no colour files: only the built-in tables are added (no Inferno/Viridis).
        self.app_logic.SetHomeDirectory(str(home))
        self.app_logic.SetShareDirectory("share")
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.app_logic.SetViewLogics(vtk.vtkCollection())
        colors = slicer.vtkSlicerColorLogic()
        colors.SetMRMLApplicationLogic(self.app_logic)
        colors.SetMRMLScene(self.scene)  # adds the default colour nodes
        self.app_logic.SetModuleLogic("Colors", colors)
        self.logics = {"Colors": colors}
        for name, cls in (("Volumes", slicer.vtkSlicerVolumesLogic),
                          ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                          ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
            logic = cls()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic(name, logic)
            self.logics[name] = logic
        slice_node = self.scene.AddNewNodeByClass("vtkMRMLSliceNode")
        slice_node.SetLayoutName("Red")
        slice_node.SetOrientationToAxial()
        composite = self.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName("Red")
        self.slice_node, self.composite = slice_node, composite
        hierarchy = self.scene.GetSubjectHierarchyNode()
        patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 1")
        self.study = hierarchy.CreateStudyItem(patient, "MR brain")

    def load_volume(self, path: Path, name: str, in_study: bool = True):
        """Load a NIfTI through the volumes logic (as File > Add Data does) and file it under the study."""
        node = self.logics["Volumes"].AddArchetypeVolume(str(path), name)
        assert node is not None, f"could not load {path}"
        if in_study:
            hierarchy = self.scene.GetSubjectHierarchyNode()
            item = hierarchy.GetItemByDataNode(node) or hierarchy.CreateItem(self.study, node)
            hierarchy.SetItemParent(item, self.study)
        return node

    def snapshot(self) -> list[tuple[str, int]]:
        """IDs and modification times of every node: equal snapshots = untouched scene."""
        nodes = [self.scene.GetNthNode(i) for i in range(self.scene.GetNumberOfNodes())]
        return sorted((n.GetID(), n.GetMTime()) for n in nodes)

    def node_ids(self) -> list[str]:
        return sorted(self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes()))

    @contextlib.contextmanager
    def reloaded_from_mrb(self, folder: Path):
        """Save this scene as an .mrb under ``folder`` and yield a fresh scene that read it back
        (``slicer.mrmlScene`` points at it meanwhile); cleared afterwards."""
        mrb = folder / "scene.mrb"
        assert self.scene.WriteToMRB(str(mrb))
        home = folder / "reloaded"
        home.mkdir()
        other = SceneHarness(home)
        previous, slicer.mrmlScene = slicer.mrmlScene, other.scene
        try:
            assert other.scene.ReadFromMRB(str(mrb))
            yield other.scene
        finally:
            other.scene.Clear(True)
            slicer.mrmlScene = previous

    def hierarchy_items(self) -> int:
        ids = vtk.vtkIdList()
        self.scene.GetSubjectHierarchyNode().GetItemChildren(
            self.scene.GetSubjectHierarchyNode().GetSceneItemID(), ids, True)
        return ids.GetNumberOfIds()


@pytest.fixture
def harness(tmp_path):
    home = tmp_path / "slicer-home"
    home.mkdir()
    h = SceneHarness(home)
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = h.scene
    yield h
    h.scene.Clear(True)
    slicer.mrmlScene = previous


def write_case(folder: Path, seed: int = 0, shape=SHAPE, spacing=SPACING, oblique: bool = True) -> dict:
    """The engine's phantom (4 modalities + label) written as NIfTI; returns modality → path."""
    from DiffSegExtension.data.phantom import make_phantom, write_phantom_case

    phantom = make_phantom(seed, shape=shape, spacing=spacing, oblique=oblique)
    case = write_phantom_case(folder, f"case{seed}", phantom)
    return {m: case / f"case{seed}_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2", "seg")}


@pytest.fixture
def case_files(tmp_path) -> dict:
    """Phantom NIfTI files with an oblique, non-isotropic affine."""
    return write_case(tmp_path / "data")


@pytest.fixture
def volumes(harness, case_files) -> dict:
    """The four phantom modalities loaded into the scene (names like BraTS: case0_flair, ...)."""
    return {m: harness.load_volume(case_files[m], f"case0_{m}") for m in ("flair", "t1", "t1ce", "t2")}


def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


@pytest.fixture
def adaptive_phantom(tmp_path) -> Path:
    """A copy of the bundled phantom model whose card's default ensemble is ``adaptive`` (the weights' sha256,
    which the engine checks, is over ``weights.safetensors`` only, so the edited card still loads)."""
    folder = tmp_path / "phantom-adaptive"
    shutil.copytree(REPO / "Resources" / "Models" / "phantom", folder)
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    card["inference_defaults"]["ensemble"] = "adaptive"
    (folder / "model.json").write_text(json.dumps(card), encoding="utf-8")
    return folder


@pytest.fixture
def parameter_class(monkeypatch):
    """The module's real ``DiffSegParameterNode``, built by the ``slicer.parameterNodeWrapper`` stand-in."""
    import sys

    from standins import parameter_node_wrapper

    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", parameter_node_wrapper)
    monkeypatch.delitem(sys.modules, "DiffSegLib.parameters", raising=False)
    from DiffSegLib.parameters import DiffSegParameterNode

    yield DiffSegParameterNode
    sys.modules.pop("DiffSegLib.parameters", None)


#: The smallest valid safetensors file: an 8-byte header length and an empty JSON header (the stub
#: engine never reads it; the module checks that it is not a pickle).
SAFETENSORS_HEADER = (2).to_bytes(8, "little") + b"{}"


@pytest.fixture
def stub(harness, tmp_path, volumes):
    """Builds a logic whose engine is the stub (``stub_engine.py``, a real child process) in a given mode;
    exposes the card and temp root."""
    model_dir = tmp_path / "stub-model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text('{"name": "stub", "title": "Stub", "modalities": ["flair", "t1", "t1ce", "t2"]}')
    (model_dir / "weights.safetensors").write_bytes(SAFETENSORS_HEADER)
    card = ModelCard("stub", "Stub", model_dir, ("flair", "t1", "t1ce", "t2"))
    temp_root = tmp_path / "temp-root"
    temp_root.mkdir()
    axis = geometry.slice_axis(volumes["flair"])

    class Stub:
        def logic(self, mode: str = "ok") -> DiffSegLogic:
            factory = lambda: EngineRunner(python=sys.executable, engine_path=HERE, module="stub_engine",  # noqa: E731
                                           extra_env={"DIFFSEG_STUB_MODE": mode, "DIFFSEG_STUB_AXIS": str(axis)})
            return DiffSegLogic(scene=harness.scene, runner_factory=factory, temp_root=temp_root)

        def request(self, **kw) -> RunRequest:
            kw.setdefault("members", 4)
            kw.setdefault("steps", 3)
            return RunRequest(card, dict(volumes), **kw)

    s = Stub()
    s.card, s.temp_root, s.axis, s.tmp = card, temp_root, axis, tmp_path
    return s
