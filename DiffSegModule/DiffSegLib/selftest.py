"""The self-test case, shared by ``DiffSegTest`` (inside Slicer) and the pytest suite (slicer-core).

One phantom made by the engine, one run of the bundled ``phantom`` model with few members and
steps, one Dice threshold. Keeping them here means the threshold the Slicer self-test uses is the
one measured and checked in CI.
"""

from __future__ import annotations

import numpy as np

#: ``DiffSegExtension.data.phantom.make_phantom`` arguments: oblique, non-isotropic, small.
PHANTOM = {"seed": 3, "shape": (64, 64, 24), "spacing": (1.0, 1.1, 2.0), "oblique": True}
CASE_NAME = "selftest"
MODEL = "phantom"
RUN = {"members": 3, "steps": 6, "seed": 0}
#: The bundled phantom model reaches Dice 0.81 on this case with these settings; the same mask
#: against the truth moved by half the field of view along any axis scores below 0.01. The bar
#: leaves room for platform differences; voxel-exact geometry is checked separately (labelmap =
#: engine NIfTI).
MIN_DICE = 0.6

#: Python source run by the engine's interpreter to write the case (argv[1] = output folder).
WRITE_CASE_CODE = (
    "import sys; from DiffSegExtension.data.phantom import make_phantom, write_phantom_case; "
    f"write_phantom_case(sys.argv[1], {CASE_NAME!r}, make_phantom({PHANTOM['seed']}, shape={PHANTOM['shape']}, "
    f"spacing={PHANTOM['spacing']}, oblique={PHANTOM['oblique']}))")


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean arrays (1.0 when both are empty)."""
    mask, truth = np.asarray(mask, bool), np.asarray(truth, bool)
    total = mask.sum() + truth.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(mask, truth).sum() / total)
