"""What the panel shows, as plain data: the Qt widget only copies a :class:`PanelView` into its widgets.

Every text the user reads (Apply's tooltip, the status line, the sampler hint, the ranked slices)
is made here, so tests under ``slicer-core`` check exactly what a user would see. No Qt, no MRML.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .runner import Progress

LOAD_FROM_FOLDER = "Load from folder..."
RANKED_SLICES_SHOWN = 20
# Measured with whole volumes on validation subjects: brats-flair gave whole-tumour Dice 0.904-0.910 at 5 to 50
# steps x 5 members for every sampler (docs/brats-flair/results.md, section 3); brats-regions lost 0.05 enhancing-
# tumour Dice and 0.02-0.06 uncertainty AUROC per region at 5 steps against 10; its distilled one-pass student with 8
# members matched or beat its 10 steps x 5 members in Dice and uncertainty AUROC per region (README, Models). Time
# grows linearly with steps.
SAMPLER_HINTS = {
    "dpmpp": "DPM-Solver++: 10 steps; the FLAIR model was as accurate at 5 (its default), the region model was not.",
    "ddim": "DDIM: deterministic given the seed; as accurate as DPM-Solver++ at 5-50 steps with the FLAIR model.",
    "ddpm": "DDPM: the paper's sampler (1000 steps there); at 5-50 steps as accurate as the others here, and as fast.",
    "student": "Student (the region model's default): its distilled student gives each member the 10-step result in 1 "
               "pass; with 8 members as accurate as DPM-Solver++ 10 steps x 5.",
}
NO_MODEL = "Choose a DiffSeg model (or load one from a folder)."
NO_MODEL_INFO = "No DiffSeg model found: load one from a folder."
CANCEL_TOOLTIP = "Stop the engine; nothing is added to the scene."

STATUS_STARTING = "Starting the engine..."
STATUS_CANCELLED = "Cancelled; nothing was added to the scene."
STATUS_FAILED = "Failed; the scene was not changed."
STATUS_NOT_INSTALLED = "Not started: the engine's Python packages are not installed."
STATUS_DECLINED = "Not started: the inputs look unusual (see the warning); nothing was changed."
STATUS_CLOSED = "The scene was closed; a running segmentation was cancelled."
STATUS_UNDONE = "Refinement undone: the result is back as it was before it."
REFINE_TOOLTIP = ("Sample the slices the guidance touches again with the guidance imposed on every member; each "
                  "point also re-weights the ensemble within 40 mm, where its members disagree. The segmentation, "
                  "probability and uncertainty update in place.")
NO_RESULT = "Run Apply first: Refine corrects the result under review."
NO_GUIDANCE = "Place an include or exclude point, or paint on the result and tick 'Use my edits'."
BUSY = "DiffSeg is running; wait for it or cancel it."


@dataclass(frozen=True)
class ModalityRow:
    """One modality selector row: shown when the model uses it, labelled (reference) for the first and
    (optional) for those the model can do without."""

    modality: str
    shown: bool
    label: str


@dataclass(frozen=True)
class PanelView:
    """Everything the widget renders that the parameter-node binding does not.

    ``models``: (title, model folder) per combo entry, the last one ``(LOAD_FROM_FOLDER, "")``;
    ``progress_maximum`` 0 means busy (no total yet); ``ranking``: (text, slice index) per list row;
    ``regions``: (title, region code) per entry of the region selector, shown only for a region result;
    ``guidance_text`` … ``undo_enabled``: the Refine section.
    """

    models: tuple[tuple[str, str], ...]
    model_index: int
    model_info: str
    rows: tuple[ModalityRow, ...]
    quality_hint: str
    slice_range_enabled: bool
    apply_text: str
    apply_enabled: bool
    apply_tooltip: str
    rerun_enabled: bool
    status: str
    progress_visible: bool
    progress_maximum: int
    progress_value: int
    ranking: tuple[tuple[str, int], ...]
    regions: tuple[tuple[str, str], ...]
    region_index: int
    region_visible: bool
    guidance_text: str
    refine_text: str
    refine_enabled: bool
    refine_tooltip: str
    undo_enabled: bool


def duration(seconds: float) -> str:
    """``"42 s"`` below 90 s, else ``"2.5 min"``."""
    seconds = max(0.0, float(seconds))
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def quality_hint(sampler: str, members: int, steps: int, ensemble: str = "full") -> str:
    """The sampler's hint and the work per slice; with the adaptive ensemble, fewer passes away from the tumour."""
    passes = f"{members} members x {steps} steps = {members * steps} network passes per slice"
    if ensemble == "adaptive":
        passes += " near the tumour; adaptive ensemble: fewer away from it, where only a first screening sample runs"
    return f"{SAMPLER_HINTS.get(sampler, '')} {passes}."


def progress_status(progress: Progress) -> str:
    eta = f", about {duration(progress.eta_s)} left" if progress.eta_s is not None else ""
    return f"{progress.message or 'Sampling'}: step {progress.done} of {progress.total}{eta}"


def done_status(seconds: str) -> str:
    """Status after a run, from the segmentation's ``DiffSeg.Seconds`` attribute ("" if unknown)."""
    return f"Done{f' in {duration(float(seconds))}' if seconds else ''}."


def placing_status(kind: str) -> str:
    return (f"Click in a slice view to place {kind} points ({'tumour' if kind == 'include' else 'not tumour'} "
            "here); press Escape or pick another mouse mode to stop.")


def guidance_text(include: int, exclude: int, edits: bool) -> str:
    """What Refine will send: ``"2 include, 1 exclude points, and your edits of the result."``"""
    return f"{include} include, {exclude} exclude points{', and your edits of the result' if edits else ''}."


def modality_label(label: str, role: str) -> str:
    """A selector's label: ``"FLAIR (reference):"``, ``"T1 (optional):"`` or ``"T2:"`` (role ``""``)."""
    return f"{label}{f' ({role})' if role else ''}:"


def ready_tooltip(model_title: str, left_out: tuple[str, ...] = ()) -> str:
    """Apply's tooltip when it can run; ``left_out``: labels of optional sequences left empty."""
    without = f" (without {', '.join(left_out)}: optional)" if left_out else ""
    return f"Segment the tumour with '{model_title}'{without} and compute its uncertainty."


def warnings_question(warnings: list[str]) -> str:
    """The confirmation shown before a run whose inputs look suspicious."""
    listed = "\n\n".join(f"- {warning}" for warning in warnings)
    return f"DiffSeg can run, but the inputs look unusual:\n\n{listed}\n\nRun anyway?"


def ranking_rows(ranked) -> tuple[tuple[str, int], ...]:
    """List rows for :func:`review.rank_slices` results."""
    return tuple((f"Slice {r.index}: mean uncertainty {r.mean_uncertainty:.3f} ({r.voxels} voxels)", r.index)
                 for r in ranked)


def start_error_message(err: BaseException) -> str:
    """One sentence for an error that kept a run from starting, naming what to do."""
    if isinstance(err, subprocess.CalledProcessError):
        command = err.cmd if isinstance(err.cmd, str) else " ".join(map(str, err.cmd))
        return (f"installing the engine's Python packages failed ({command[:200]} exited with "
                f"{err.returncode}); check the network connection and the Python console's log, then press Apply again.")
    if isinstance(err, ImportError):
        return (f"PyTorch could not be installed or imported ({err}); reinstall the PyTorch extension from the "
                "Extensions Manager, restart Slicer and press Apply again.")
    return str(err)
