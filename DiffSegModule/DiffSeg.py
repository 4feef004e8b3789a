"""DiffSeg: brain-tumour segmentation in MRI with a diffusion model, and where it is unsure.

Thin module file: metadata, a widget that embeds :class:`DiffSegLib.widget.DiffSegPanel`, and the
self-test. The work is in ``DiffSegLib`` (logic importable without Qt) and in the engine package
``DiffSegExtension``, which runs in a child process.
"""

import os
import subprocess
import sys
from pathlib import Path

import qt

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget

from DiffSegLib import paths


class DiffSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DiffSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["DiffSeg contributors"]
        self.parent.helpText = (
            "Segments brain tumour in MRI (FLAIR, T1, T1ce, T2 as the model needs; some may be optional) with a "
            "diffusion model: the whole tumour, or with a region model edema, necrotic / non-enhancing core and "
            "enhancing tumour. "
            "Several masks are sampled per slice: their mean is the tumour probability, their variance the "
            "uncertainty map shown over the image. Review with the live threshold, jump to the most uncertain "
            "slices and re-run them with more samples. Research use only: not for diagnosis.")
        self.parent.acknowledgementText = (
            "Method after Wolleb et al., 'Diffusion Models for Implicit Image Segmentation Ensembles' (MIDL 2022). "
            "Built with MONAI and PyTorch.")
        # Slicer has already set a default icon (never null): replace it whenever ours exists, as in a
        # source checkout Slicer looks for it next to this file, not in <repo>/Resources.
        icon = paths.module_icon()
        if icon is not None:
            self.parent.icon = qt.QIcon(str(icon))


class DiffSegWidget(ScriptedLoadableModuleWidget):
    """Hosts the panel; everything else is in ``DiffSegLib.widget``."""

    def __init__(self, parent=None):
        # Before the base class: without a parent it calls setup() itself, which sets these.
        self.panel = None
        self.logic = None
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from DiffSegLib.widget import DiffSegPanel

        self.panel = DiffSegPanel(self.layout)
        self.logic = self.panel.logic

    def enter(self):
        if self.panel:
            self.panel.enter()

    def exit(self):
        if self.panel:
            self.panel.exit()

    def cleanup(self):
        if self.panel:
            self.panel.cleanup()

    def onReload(self):
        """Reload also the library (Slicer only reloads this file)."""
        for name in [n for n in sys.modules if n == "DiffSegLib" or n.startswith("DiffSegLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)


class DiffSegTest(ScriptedLoadableModuleTest):
    """End to end inside Slicer on a phantom made by the engine, with the bundled phantom model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_end_to_end()

    def _phantom_case(self) -> Path:
        from DiffSegLib import selftest

        folder = Path(slicer.util.tempDirectory("DiffSegSelfTest"))
        env = dict(os.environ)
        env["PYTHONPATH"] = str(paths.engine_root()) + os.pathsep + env.get("PYTHONPATH", "")
        subprocess.run([paths.engine_python(), "-c", selftest.WRITE_CASE_CODE, str(folder)], env=env, check=True)
        return folder / selftest.CASE_NAME

    def test_phantom_end_to_end(self):
        import numpy as np

        from DiffSegLib import dependencies, geometry, regions, results, selftest
        from DiffSegLib.logic import DiffSegLogic
        from DiffSegLib.models import find_model

        self.delayDisplay("Checking the engine's Python packages")
        self.assertTrue(dependencies.ensure_engine_dependencies(confirm=lambda message: True),
                        f"missing: {dependencies.missing_summary()}")
        self.delayDisplay("Making a phantom case with the engine")
        case = self._phantom_case()
        name = selftest.CASE_NAME
        volumes = {m: slicer.util.loadVolume(str(case / f"{name}_{m}.nii.gz"), {"name": f"{name}_{m}"})
                   for m in ("flair", "t1", "t1ce", "t2")}
        truth = slicer.util.loadLabelVolume(str(case / f"{name}_seg.nii.gz"), {"name": f"{name}_truth"})

        self.delayDisplay("Panel: inputs are picked by name and Apply is enabled")
        slicer.util.selectModule("DiffSeg")  # enter(): the module may never have been shown, or been left
        controller = slicer.util.getModuleWidget("DiffSeg").panel.controller
        controller.model_chosen(str(find_model(selftest.MODEL).path))
        for modality, node in volumes.items():
            self.assertEqual(getattr(controller.params, f"{modality}Volume"), node)
        view = controller.view()
        self.assertTrue(view.apply_enabled, view.apply_tooltip)

        self.delayDisplay("Segmenting (engine in a child process)")
        logic = DiffSegLogic()
        seg, unc = logic.segment(**volumes, model=selftest.MODEL, **selftest.RUN)
        reference = seg.GetNodeReference(results.INPUT_REFERENCE)
        self.assertTrue(seg.IsA("vtkMRMLSegmentationNode"))
        self.assertTrue(unc.IsA("vtkMRMLScalarVolumeNode"))
        self.assertIsNotNone(seg.GetSegmentation().GetSegment(regions.TUMOR.segment_id))
        np.testing.assert_array_equal(geometry.ijk_to_ras(unc), geometry.ijk_to_ras(reference))
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg, regions.TUMOR.segment_id, reference) > 0
        dice = selftest.dice(mask, slicer.util.arrayFromVolume(truth) > 0)
        self.delayDisplay(f"Dice against the phantom's truth: {dice:.3f}")
        self.assertGreater(dice, selftest.MIN_DICE)

        self.delayDisplay("A second run replaces the outputs")
        seg2, unc2 = logic.segment(**volumes, model=selftest.MODEL, members=2, steps=4, seed=1)
        self.assertEqual((seg2.GetID(), unc2.GetID()), (seg.GetID(), unc.GetID()))
        self.delayDisplay("Test passed")
