"""Training checkpoints: safetensors weights (model + EMA) and optimiser state, plus the model card.

A run folder is also a model folder (``model.json`` + ``weights.safetensors``), so a checkpoint can
be used for segmentation as it is. ``optimizer.safetensors`` holds the AdamW state flattened to
tensors (``state.<param index>.<name>``) with the parameter groups as JSON metadata. Each file is
written atomically and the card, written last, records the SHA-256 of both tensor files, so a
resume never mixes files from two different iterations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel

from DiffSegExtension.atomic import atomic_path, write_text_atomic
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.model_card import (CARD_FILE, STUDENT_FILE, WEIGHTS_FILE, check_not_pickle, read_model_card,
                                         sha256_of)

OPTIMIZER_FILE = "optimizer.safetensors"


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return sha256_of(path)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    state = optimizer.state_dict()
    tensors = {f"state.{index}.{name}": value if torch.is_tensor(value) else torch.tensor(value)
               for index, entries in state["state"].items() for name, value in entries.items()}
    return tensors, {"param_groups": json.dumps(state["param_groups"])}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    check_not_pickle(path)
    with safe_open(str(path), framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(folder: Path, network: torch.nn.Module, ema: AveragedModel, optimizer: torch.optim.Optimizer,
                    card: dict[str, Any]) -> None:
    """Write weights, optimiser state, then the card (with both hashes) into ``folder``."""
    folder = Path(folder)
    weights = {f"model.{k}": v for k, v in network.state_dict().items()}
    weights.update({f"ema.{k}": v for k, v in ema.module.state_dict().items()})
    card = dict(card)
    card["weights_sha256"] = _save_tensors(folder / WEIGHTS_FILE, weights)
    tensors, metadata = optimizer_tensors(optimizer)
    card["optimizer_sha256"] = _save_tensors(folder / OPTIMIZER_FILE, tensors, metadata)
    card.setdefault("training", {})["ema_n_averaged"] = int(ema.n_averaged)
    write_text_atomic(folder / CARD_FILE, json.dumps(card, indent=2))


def load_checkpoint(folder: Path, network: torch.nn.Module, ema: AveragedModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore network, EMA and optimiser from ``folder``; returns the card."""
    folder = Path(folder)
    card = read_model_card(folder)
    for name, key in ((WEIGHTS_FILE, "weights_sha256"), (OPTIMIZER_FILE, "optimizer_sha256")):
        path = folder / name
        if not path.is_file() or sha256_of(path) != card.get(key):
            raise DiffSegInputError(f"checkpoint in {folder} is incomplete or inconsistent ({name} does not match its "
                                    "card): resume from an intact run folder or start a new run")
    check_not_pickle(folder / WEIGHTS_FILE)
    weights = load_file(str(folder / WEIGHTS_FILE))
    network.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
    ema.module.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("ema.")})
    ema.n_averaged.fill_(card["training"]["ema_n_averaged"])
    load_optimizer_tensors(optimizer, folder / OPTIMIZER_FILE)
    return card


def _ema_weights(run_folder: Path, half: bool) -> dict[str, torch.Tensor]:
    check_not_pickle(Path(run_folder) / WEIGHTS_FILE)
    weights = load_file(str(Path(run_folder) / WEIGHTS_FILE))
    return {k: (v.half() if half and v.is_floating_point() else v) for k, v in weights.items() if k.startswith("ema.")}


def export_model(run_folder: Path, out_folder: Path, half: bool = False, card_updates: dict[str, Any] | None = None) -> Path:
    """A slim inference model from a run: EMA weights only (optionally float16), card updated."""
    card = read_model_card(run_folder)
    ema = _ema_weights(run_folder, half)
    card.update(card_updates or {})
    card.pop("optimizer_sha256", None)
    out_folder = Path(out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    card["weights_sha256"] = _save_tensors(out_folder / WEIGHTS_FILE, ema)
    write_text_atomic(out_folder / CARD_FILE, json.dumps(card, indent=2))
    return out_folder


def attach_student(run_folder: Path, model_folder: Path, half: bool = False, make_default: bool = False) -> Path:
    """Put a distilled student run's EMA weights into its teacher's model folder (``student.safetensors``), and with
    ``make_default`` make it the folder's default sampler; the teacher's weights and its own recipes stay as they are."""
    run_card = read_model_card(run_folder)
    source = run_card.get("distilled_from")
    if not source:
        raise DiffSegInputError(f"{run_folder} is not a distilled student: `diffseg distil` writes one")
    card = read_model_card(model_folder)
    if source.get("weights_sha256") != card.get("weights_sha256"):
        raise DiffSegInputError(f"{run_folder} was distilled from other weights than {model_folder}'s: attach it to the "
                                "model it was distilled from")
    steps = int(run_card["inference_defaults"]["steps"])
    sha = _save_tensors(Path(model_folder) / STUDENT_FILE, _ema_weights(run_folder, half))
    card["student"] = {"weights_sha256": sha, "steps": steps,
                       "distilled_from": {"sampler": source["sampler"], "steps": source["steps"]},
                       "training": run_card["training"], **({"calibration": run_card["calibration"]}
                                                            if "calibration" in run_card else {})}
    if make_default:
        card["inference_defaults"] = {**card.get("inference_defaults", {}), "sampler": "student", "steps": steps}
    write_text_atomic(Path(model_folder) / CARD_FILE, json.dumps(card, indent=2))
    return Path(model_folder)
