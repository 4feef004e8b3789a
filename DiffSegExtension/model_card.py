"""Model folders: a JSON model card + safetensors weights. Loading never executes code.

A model folder holds ``model.json`` (the card) and ``weights.safetensors`` (tensors named
``ema.<param>`` and/or ``model.<param>``; inference prefers the EMA weights), and may hold
``student.safetensors``, a distilled few-step student of the same network (card key ``student``). The card records the
:class:`ModelConfig`, the modalities in channel order, inference defaults, what data the model saw,
its validation figures, its intended use, and the SHA-256 of the weights file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from DiffSegExtension.config import ModelConfig
from DiffSegExtension.errors import DiffSegInputError
from DiffSegExtension.network import DenoisingUNet

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
#: A distilled few-step student of the model (``training/distillation.py``), run by the ``student`` sampler.
STUDENT_FILE = "student.safetensors"
CARD_FORMAT = 1
DEFAULT_INFERENCE = {"sampler": "dpmpp", "steps": 10, "members": 5, "ensemble": "full", "min_component_probability": 0.0}
#: Files that unpickle on load (torch.save, pickle): refused, since unpickling can run arbitrary code.
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


def bundled_models_dir() -> Path:
    """``$DIFFSEG_MODELS_DIR`` or the ``Resources/Models`` folder beside the engine package."""
    env = os.environ.get("DIFFSEG_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "Resources" / "Models"


def list_bundled_models() -> list[Path]:
    root = bundled_models_dir()
    return sorted(p for p in root.iterdir() if (p / CARD_FILE).is_file()) if root.is_dir() else []


def choose_bundled_model(given: Iterable[str]) -> Path:
    """The bundled model made for the ``given`` modalities, as the Slicer module chooses
    (``DiffSegModule/DiffSegLib/models.py``, ``preference``): among those whose required modalities are all given,
    real-MRI models before the phantom demo model, then the one that uses most of the given modalities, then the
    one that lacks fewest of its own inputs (FLAIR alone: ``brats-flair``, made for it, rather than ``brats-regions``
    without its optional sequences: same whole-tumour Dice, docs/results.md §5), then region models."""
    given = set(given)
    ranked, needs = [], []
    for folder in list_bundled_models():
        card = read_model_card(folder)
        config = ModelConfig.from_dict(card["config"])
        required = config.network.required_modalities
        needs.append(f"{folder.name}: {', '.join(required)}")
        if given.issuperset(required):
            used = len(given.intersection(config.modalities))
            ranked.append(((card["name"] == "phantom", -used, len(config.modalities) - used,
                            -len(config.network.regions), card["name"]), folder))
    if not ranked:
        raise DiffSegInputError(f"no bundled model runs on {', '.join(sorted(given)) or 'no input'}: models and the "
                                f"sequences they need: {'; '.join(needs) or 'none installed'}; add a sequence or give --model")
    return min(ranked)[1]


def resolve_model(name_or_path: str | Path) -> Path:
    """A model folder from a path or the name of a bundled model."""
    path = Path(name_or_path).expanduser()
    if (path / CARD_FILE).is_file():
        return path
    bundled = bundled_models_dir() / str(name_or_path)
    if (bundled / CARD_FILE).is_file():
        return bundled
    names = [p.name for p in list_bundled_models()]
    raise DiffSegInputError(
        f"no model at '{name_or_path}': give a folder containing {CARD_FILE} and {WEIGHTS_FILE}, "
        f"or a bundled model name ({', '.join(names) or 'none installed'})"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_model_card(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DiffSegInputError(f"model card {path} is missing: a model folder needs {CARD_FILE}") from None
    except json.JSONDecodeError as err:
        raise DiffSegInputError(f"model card {path} is not valid JSON ({err}): restore it from the model's source") from None
    for key in ("name", "config", "modalities"):
        if key not in card:
            raise DiffSegInputError(f"model card {path} has no '{key}' field: re-export the model with `diffseg train`")
    return card


def check_not_pickle(path: Path) -> None:
    """Refuse files that would unpickle (torch.save zip or raw pickle) before anything reads them."""
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file starts with an 8-byte little-endian header length and then its JSON header; that
    # length's first byte can be 0x80 (the pickle opcode PROTO), so the '{' at byte 8 decides.
    is_safetensors = head[8:9] == b"{"
    if path.suffix in _PICKLE_SUFFIXES or (not is_safetensors and head[:1] in (b"P", b"\x80")):
        raise DiffSegInputError(
            f"weights file {path} is a pickle/torch.save file: DiffSeg never unpickles weights because loading "
            "them can execute code. Convert it once, in a trusted environment, with "
            "safetensors.torch.save_file(state_dict, 'weights.safetensors')"
        )


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (never unpickles)."""
    if not path.is_file():
        raise DiffSegInputError(f"weights file {path} is missing: a model folder needs {WEIGHTS_FILE}")
    check_not_pickle(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DiffSegInputError(f"weights file {path} is not a valid safetensors file ({err}): re-export the model") from None


@dataclass
class LoadedModel:
    """A ready network (eval mode, on ``device``) with its card and config."""

    folder: Path
    card: dict[str, Any]
    config: ModelConfig
    network: DenoisingUNet
    student: DenoisingUNet | None = None

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.config.modalities

    @property
    def optional_modalities(self) -> tuple[str, ...]:
        return self.config.network.optional_modalities

    @property
    def regions(self) -> tuple[str, ...]:
        return self.config.network.regions

    @property
    def inference_defaults(self) -> dict[str, Any]:
        return {**DEFAULT_INFERENCE, **self.card.get("inference_defaults", {})}

    def sampler_options(self, sampler: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """Options for ``sampler``: the model's own (its student's calibrated thresholds for ``student``), then
        ``given`` (the user's, e.g. DDIM's η), which win."""
        calibration = self.card.get("student", self.card).get("calibration")
        own = {"thresholds": calibration["thresholds"]} if sampler == "student" and calibration else {}
        return {**own, **(given or {})}

    def network_for(self, sampler: str) -> DenoisingUNet:
        """The network ``sampler`` runs: the distilled student for ``student`` (the folder's own network when the
        folder is a student run), the model's network for every other sampler."""
        distilled = "distilled_from" in self.card
        if sampler == "student":
            if self.student is not None:
                return self.student
            if distilled:
                return self.network
            raise DiffSegInputError(f"model {self.name} has no distilled student: choose --sampler dpmpp, ddim or ddpm "
                                    "(or distil one with `diffseg distil`)")
        if distilled:
            raise DiffSegInputError(f"model {self.name} is a distilled student: it runs only with --sampler student")
        return self.network


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu", prefer_ema: bool = True) -> LoadedModel:
    """Build the network the card describes and load its weights, checking that both agree."""
    folder = resolve_model(name_or_path)
    card = read_model_card(folder)
    config = ModelConfig.from_dict(card["config"])
    if tuple(card["modalities"]) != config.modalities:
        raise DiffSegInputError(f"model card {folder / CARD_FILE}: 'modalities' {card['modalities']} disagree with the "
                                f"network config {list(config.modalities)}; fix the card")
    network = _network_from(folder, WEIGHTS_FILE, card.get("weights_sha256"), config, prefer_ema).eval().to(device)
    student = None
    if "student" in card:
        student = _network_from(folder, STUDENT_FILE, card["student"].get("weights_sha256"), config, prefer_ema)
        student = student.eval().to(device)
    return LoadedModel(folder=folder, card=card, config=config, network=network, student=student)


def _network_from(folder: Path, file_name: str, expected_hash: str | None, config: ModelConfig,
                  prefer_ema: bool) -> DenoisingUNet:
    """The network of ``config`` with the weights of ``folder / file_name`` (checked against the card's hash)."""
    weights_path = folder / file_name
    tensors = read_weights(weights_path)
    if expected_hash and sha256_of(weights_path) != expected_hash:
        raise DiffSegInputError(f"weights file {weights_path} does not match the SHA-256 in its model card: the file was "
                                "changed or belongs to another model; restore the matching pair")
    prefix = "ema." if prefer_ema and any(k.startswith("ema.") for k in tensors) else "model."
    state = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
    network = DenoisingUNet(config.network)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)
        raise DiffSegInputError(f"model card and weights in {folder} disagree ({detail}): the weights belong to another "
                                "network configuration; use the card that was saved with them")
    network.load_state_dict(state)
    return network
