"""The tail every model-build script shares: export the trained run, score its validation cases, record both.

Used by ``build_phantom_model.py``, ``build_brats_model.py`` and ``build_msd4_model.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from DiffSegExtension.cli import main as diffseg

REPO = Path(__file__).resolve().parent.parent


def export_and_validate(run: Path, out: Path, card: dict, data: list[Path], cases: list[str], work: Path,
                        device: str = "auto") -> None:
    """Export ``run``'s EMA weights as float16 into ``out`` with ``card``'s fields added (files already in
    ``out`` are replaced, others kept), evaluate ``cases`` (found under ``data``) into ``work/validation``,
    and store that report and the split in the card.

    The card's data roots are written relative to the repository, not as this machine's absolute paths.
    """
    card_file = work / "card.json"
    card_file.write_text(json.dumps(card))
    assert diffseg(["export", "--run", str(run), "--out", str(out), "--half", "--card", str(card_file)]) == 0
    report = work / "validation"
    assert diffseg(["evaluate", "--model", str(out), "--data", *map(str, data), "--cases", *cases,
                    "--out", str(report), "--progress", "none", "--device", device]) == 0
    final = json.loads((out / "model.json").read_text())
    final["validation"] = {"cases": list(cases), "report": (report / "results.md").read_text()}
    final["data"]["roots"] = [os.path.relpath(r, REPO) for r in final["data"]["roots"]]
    (out / "model.json").write_text(json.dumps(final, indent=2))
