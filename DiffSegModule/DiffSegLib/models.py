"""Model cards as the module sees them: which models exist and which inputs each one needs.

A model folder holds ``model.json`` (the card) and ``weights.safetensors``. The card is read with
:mod:`json` here, never through the engine: the Slicer process must not import torch. Only the
fields the panel needs are interpreted; the engine validates the rest when it runs.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

from .paths import bundled_models_dir
from .regions import check_regions

#: Canonical modality names (the engine's) → label shown in the panel.
MODALITY_LABELS = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce (contrast)", "t2": "T2"}

#: Parameter-node attribute holding the volume chosen for each modality.
MODALITY_PARAMETERS = {"flair": "flairVolume", "t1": "t1Volume", "t1ce": "t1ceVolume", "t2": "t2Volume"}

#: Name patterns (lower-case, fnmatch) used to pre-select a loaded volume for a modality. Checked
#: in order; ``t1`` excludes names that look like a contrast-enhanced T1.
NAME_PATTERNS = {
    "flair": ["*flair*"],
    "t1ce": ["*t1ce*", "*t1c*", "*t1gd*", "*t1-gd*", "*t1_gd*", "*t1post*", "*t1+c*", "*contrast*"],
    "t1": ["*t1*"],
    "t2": ["*t2*"],
}
_T1_EXCLUDE = NAME_PATTERNS["t1ce"]
_T2_EXCLUDE = ["*flair*"]

#: Inference defaults for cards that lack one; the engine's ``model_card.DEFAULT_INFERENCE`` (a static test keeps
#: the two equal). ``ensemble``: ``full`` samples every member on every slice, ``adaptive`` only near the tumour.
DEFAULT_INFERENCE = {"sampler": "dpmpp", "steps": 10, "members": 5, "ensemble": "full", "min_component_probability": 0.0}
#: The engine's samplers; ``student`` runs a model's distilled few-step student (``student.safetensors``).
SAMPLERS = ("dpmpp", "ddim", "ddpm", "student")
WEIGHTS_FILE = "weights.safetensors"


class ModelCardError(ValueError):
    """A model folder without a readable, complete ``model.json``."""


@dataclass(frozen=True)
class ModelCard:
    """What the panel needs to know about a model.

    ``path`` is the model folder, passed to the engine as ``--model``.
    ``modalities`` are canonical names in channel order; the first is the reference volume whose
    grid the outputs share.
    """

    name: str
    title: str
    path: Path
    modalities: tuple[str, ...]
    inference_defaults: dict = field(default_factory=dict)
    intended_use: str = ""
    #: Modalities that may stay empty (the engine gets only the given ones); never the reference.
    optional_modalities: tuple[str, ...] = ()
    #: Tumour regions the model outputs, in nesting order: ``("wt",)`` or e.g. ``("wt", "tc", "et")``.
    regions: tuple[str, ...] = ("wt",)
    #: The folder carries a distilled student (card key ``student``), or is one (``distilled_from``: a distil run).
    has_student: bool = False
    is_student: bool = False

    @property
    def reference_modality(self) -> str:
        return self.modalities[0]

    @property
    def required_modalities(self) -> tuple[str, ...]:
        return tuple(m for m in self.modalities if m not in self.optional_modalities)

    def given(self, volumes) -> dict:
        """The volumes of ``volumes`` (modality → node or None) this model uses, in channel order."""
        return {m: volumes[m] for m in self.modalities if volumes.get(m) is not None}

    def default(self, key: str):
        """An inference default from the card, else DiffSeg's (sampler/steps/members/ensemble)."""
        return self.inference_defaults.get(key, DEFAULT_INFERENCE.get(key))


def read_model_card(folder: Path | str) -> ModelCard:
    """Read ``<folder>/model.json``.

    Cards written before regions existed lack ``regions`` and ``optional_modalities``: they mean a
    whole-tumour model that needs every modality it lists.

    :raises ModelCardError: if the file is missing, not JSON, lacks ``modalities``, or declares
        invalid regions or optional modalities.
    """
    folder = Path(folder)
    card_file = folder / "model.json"
    try:
        data = json.loads(card_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelCardError(f"'{folder}' is not a DiffSeg model folder: it has no model.json.") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ModelCardError(f"The model card {card_file} cannot be read: {err}") from None
    modalities = data.get("modalities")
    if not modalities or not isinstance(modalities, list):
        raise ModelCardError(f"The model card {card_file} does not list its input 'modalities'.")
    unknown = [m for m in modalities if m not in MODALITY_LABELS]
    if unknown:
        raise ModelCardError(f"The model card {card_file} lists unknown modalities {unknown}; "
                             f"known ones are {list(MODALITY_LABELS)}.")
    optional = tuple(data.get("optional_modalities") or ())
    if not set(optional) <= set(modalities[1:]):
        raise ModelCardError(f"The model card {card_file} lists optional modalities {list(optional)} that are not "
                             f"among its modalities after the first (reference) one, {modalities[1:]}.")
    try:
        model_regions = check_regions(data.get("regions") or ("wt",))
    except ValueError as err:
        raise ModelCardError(f"The model card {card_file}: {err}") from None
    name = str(data.get("name") or folder.name)
    return ModelCard(
        name=name,
        title=str(data.get("title") or name),
        path=folder,
        modalities=tuple(modalities),
        inference_defaults=dict(data.get("inference_defaults", {})),
        intended_use=str(data.get("intended_use", "")),
        optional_modalities=optional,
        regions=model_regions,
        has_student="student" in data,
        is_student="distilled_from" in data,
    )


def sampler_problem(card: ModelCard, sampler: str) -> str | None:
    """Why ``sampler`` cannot run ``card``'s model (the engine refuses the same), else None."""
    if sampler not in SAMPLERS:
        return f"Unknown sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}."
    if sampler == "student" and not (card.has_student or card.is_student):
        return f"The model {card.name} has no distilled student; choose the dpmpp, ddim or ddpm sampler."
    if sampler != "student" and card.is_student:
        return f"The model {card.name} is a distilled student; it runs only with the student sampler."
    return None


def weights_problem(card: ModelCard) -> str | None:
    """Why the card's weights cannot be used (missing, or a pickle), else None; reads 9 bytes.

    Same rule as the engine's ``check_not_pickle``: a safetensors file has its JSON header's ``{``
    at byte 8; a file starting with ``P`` (zip: torch.save) or ``0x80`` (pickle) without it is refused,
    because unpickling can execute code.
    """
    path = Path(card.path) / WEIGHTS_FILE
    if not path.is_file():
        return f"The model folder {card.path} has no {WEIGHTS_FILE}; copy the model's weights next to its model.json."
    with open(path, "rb") as stream:
        head = stream.read(9)
    if head[8:9] != b"{" and head[:1] in (b"P", b"\x80"):
        return (f"The weights {path} are a pickle/torch.save file, which DiffSeg never loads because loading it can "
                "execute code; convert them once with safetensors.torch.save_file(state_dict, 'weights.safetensors').")
    return None


def list_bundled_models(models_dir: Path | None = None) -> list[ModelCard]:
    """Readable model cards under ``Resources/Models`` (sorted by name; unreadable ones skipped)."""
    models_dir = Path(models_dir) if models_dir else bundled_models_dir()
    cards = []
    if models_dir.is_dir():
        for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            try:
                cards.append(read_model_card(folder))
            except ModelCardError:
                continue
    return cards


def preference(card: ModelCard, volumes=None) -> tuple:
    """Sort key of the automatic model choice (smallest first): real-MRI models before the phantom demo model
    (it has never seen patient data); given ``volumes`` (modality → node or None), the model that uses most of
    them, then the one that lacks fewest of its own inputs (FLAIR alone: ``brats-flair``, made for it, rather than
    ``brats-regions`` without its optional sequences: same whole-tumour Dice, docs/results.md §5);
    then region models (they also give the core and enhancing tumour) before whole-tumour ones. The engine's
    ``choose_bundled_model`` (``diffseg segment`` without ``--model``) ranks the same way."""
    used = len(card.given(volumes)) if volumes is not None else 0
    lacking = len(card.modalities) - used if volumes is not None else 0
    return card.name == "phantom", -used, lacking, -len(card.regions), card.name


def find_model(name_or_path: str | Path, models_dir: Path | None = None) -> ModelCard:
    """A model by bundled name (e.g. ``"phantom"``) or by folder path.

    :raises ModelCardError: if neither a bundled model nor a model folder matches.
    """
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return read_model_card(candidate)
    for card in list_bundled_models(models_dir):
        if card.name == str(name_or_path) or card.path.name == str(name_or_path):
            return card
    available = [c.name for c in list_bundled_models(models_dir)]
    raise ModelCardError(f"No DiffSeg model named '{name_or_path}'. Bundled models: {available or 'none'}; "
                         "or give the path of a model folder.")


def matches_modality(volume_name: str, modality: str) -> bool:
    """Whether a volume name looks like the given modality (see :data:`NAME_PATTERNS`)."""
    name = volume_name.lower()
    if not any(fnmatch.fnmatch(name, p) for p in NAME_PATTERNS[modality]):
        return False
    if modality == "t1" and any(fnmatch.fnmatch(name, p) for p in _T1_EXCLUDE):
        return False
    if modality == "t2" and any(fnmatch.fnmatch(name, p) for p in _T2_EXCLUDE):
        return False
    return True


def auto_assign(volume_names: dict[str, str], modalities: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Pick a volume for each modality by name pattern.

    :param volume_names: node ID → node name of the candidate volumes, in scene order.
    :return: modality → node ID, only for modalities with a match; never one volume twice.
    """
    assigned: dict[str, str] = {}
    used: set[str] = set()
    # Most specific first, so that "t1ce" is not taken by the "t1" pattern.
    for modality in sorted(modalities, key=["t1ce", "flair", "t2", "t1"].index):
        for node_id, name in volume_names.items():
            if node_id not in used and matches_modality(name, modality):
                assigned[modality] = node_id
                used.add(node_id)
                break
    return assigned
