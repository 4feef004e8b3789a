"""``diffseg models``: list the bundled models with their inputs and intended use."""

from __future__ import annotations

import argparse

from DiffSegExtension.model_card import bundled_models_dir, list_bundled_models, read_model_card


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list bundled models")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    folders = list_bundled_models()
    if not folders:
        print(f"no bundled models in {bundled_models_dir()}")
    for folder in folders:
        card = read_model_card(folder)
        defaults = card.get("inference_defaults", {})
        optional = set(card.get("optional_modalities", []))
        inputs = ", ".join(m + (" (optional)" if m in optional else "") for m in card["modalities"])
        regions = ", ".join(r.upper() for r in card.get("regions", ["wt"]))
        print(f"{folder.name:16s} inputs: {inputs}  regions: {regions}  {card.get('title', '')}")
        student = card.get("student")
        extra = (f"  distilled student: {student['steps']} passes (--sampler student --steps {student['steps']})"
                 if student else "")
        print(f"{'':16s} defaults: {defaults}{extra}  use: {card.get('intended_use', '')}")
    return 0
