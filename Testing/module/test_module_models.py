"""Model cards as the panel reads them, and picking volumes by name."""

from __future__ import annotations

import json

import pytest

from DiffSegLib.models import (ModelCardError, auto_assign, find_model, list_bundled_models, read_model_card,
                              sampler_problem)


def _card(folder, **fields):
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(fields))
    return folder


def test_card_fields_and_defaults(tmp_path):
    card = read_model_card(_card(tmp_path / "m", name="brats-flair", title="BraTS FLAIR", modalities=["flair"],
                                 inference_defaults={"steps": 12}, intended_use="Research only."))
    assert (card.name, card.title, card.modalities, card.reference_modality) == ("brats-flair", "BraTS FLAIR", ("flair",), "flair")
    assert card.default("steps") == 12 and card.default("members") == 5 and card.default("sampler") == "dpmpp"
    untitled = read_model_card(_card(tmp_path / "run", name="run", title="", modalities=["t1", "flair"]))
    assert untitled.title == "run" and untitled.reference_modality == "t1"


@pytest.mark.parametrize("content, message", [(None, "no model.json"), ("{broken", "cannot be read"),
                                              ({"name": "x"}, "does not list its input"),
                                              ({"modalities": ["flair", "dwi"]}, "unknown modalities")])
def test_bad_cards_are_refused_with_a_reason(tmp_path, content, message):
    folder = tmp_path / "model"
    folder.mkdir()
    if content is not None:
        (folder / "model.json").write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ModelCardError, match=message):
        read_model_card(folder)


def test_the_student_sampler_needs_a_model_with_a_student(tmp_path):
    """As the engine's ``LoadedModel.network_for``: a model with an attached student runs every sampler, one without
    refuses ``student``, a distil run runs only ``student``."""
    plain = read_model_card(_card(tmp_path / "plain", name="plain", modalities=["flair"]))
    with_student = read_model_card(_card(tmp_path / "fast", name="fast", modalities=["flair"],
                                         student={"steps": 2}, inference_defaults={"sampler": "student", "steps": 2}))
    run = read_model_card(_card(tmp_path / "run", name="run", modalities=["flair"], distilled_from={"steps": 10}))
    assert with_student.has_student and not with_student.is_student and run.is_student and not plain.has_student
    assert [sampler_problem(with_student, s) for s in ("student", "dpmpp", "ddpm")] == [None, None, None]
    assert "has no distilled student" in sampler_problem(plain, "student")
    assert sampler_problem(plain, "dpmpp") is None and sampler_problem(run, "student") is None
    assert "runs only with the student sampler" in sampler_problem(run, "ddim")
    assert "Unknown sampler 'euler'" in sampler_problem(plain, "euler")


def test_find_model_by_name_or_folder(tmp_path):
    models = tmp_path / "Models"
    _card(models / "phantom", name="phantom", modalities=["t1", "t1ce", "t2", "flair"])
    _card(models / "brats", name="brats-flair", modalities=["flair"])
    (models / "not-a-model").mkdir()
    assert [c.name for c in list_bundled_models(models)] == ["brats-flair", "phantom"]
    assert find_model("phantom", models).modalities == ("t1", "t1ce", "t2", "flair")
    assert find_model(models / "brats", models).name == "brats-flair"
    with pytest.raises(ModelCardError, match="Bundled models: \\['brats-flair', 'phantom'\\]"):
        find_model("nnunet", models)


def test_auto_assign_by_name_pattern():
    names = {"v1": "BraTS20_001_t1", "v2": "BraTS20_001_t1ce", "v3": "BraTS20_001_t2", "v4": "BraTS20_001_flair",
             "v5": "BraTS20_001_seg"}
    assert auto_assign(names, ("t1", "t1ce", "t2", "flair")) == {"t1": "v1", "t1ce": "v2", "t2": "v3", "flair": "v4"}
    # Contrast T1 spelled differently; T2-FLAIR is FLAIR, not T2; nothing is used twice.
    names = {"a": "T2_FLAIR_axial", "b": "T1 post-Gd (t1gd)", "c": "3D T1 MPRAGE", "d": "T2 TSE"}
    assert auto_assign(names, ("flair", "t1ce", "t1", "t2")) == {"flair": "a", "t1ce": "b", "t1": "c", "t2": "d"}
    assert auto_assign({"x": "flair"}, ("flair", "t2")) == {"flair": "x"}
    assert auto_assign({"x": "case_flair"}, ("t1",)) == {}


def test_automatic_model_choice_prefers_real_mri_models(tmp_path, monkeypatch):
    """With all four modalities loaded the phantom demo model also fits, but it has never seen patient data."""
    from DiffSegLib import logic

    models = tmp_path / "Models"
    _card(models / "phantom", name="phantom", modalities=["t1", "t1ce", "t2", "flair"])
    monkeypatch.setattr(logic, "list_bundled_models", lambda: list_bundled_models(models))
    four = {m: object() for m in ("t1", "t1ce", "t2", "flair")}
    assert logic.DiffSegLogic.choose_model(None, four).name == "phantom", "the only model that fits"
    _card(models / "brats", name="brats-flair", modalities=["flair"])
    assert logic.DiffSegLogic.choose_model(None, four).name == "brats-flair"
    _card(models / "brats4", name="brats-4mod", modalities=["t1", "t1ce", "t2", "flair"])
    assert logic.DiffSegLogic.choose_model(None, four).name == "brats-4mod", "then the one using most inputs"
    assert logic.DiffSegLogic.choose_model(None, {"flair": object()}).name == "brats-flair"


def test_region_fields_and_what_older_cards_mean(tmp_path):
    card = read_model_card(_card(tmp_path / "r", name="regions", modalities=["flair", "t1", "t1ce", "t2"],
                                 required_modalities=["flair"], optional_modalities=["t1", "t1ce", "t2"],
                                 regions=["wt", "tc", "et"], output_labels={"2": "edema", "1": "core", "4": "enh"}))
    assert card.regions == ("wt", "tc", "et") and card.required_modalities == ("flair",)
    assert card.optional_modalities == ("t1", "t1ce", "t2")
    assert card.given({"flair": 1, "t1": None, "t2": 2, "dwi": 3}) == {"flair": 1, "t2": 2}
    older = read_model_card(_card(tmp_path / "old", name="old", modalities=["flair", "t2"]))
    assert older.regions == ("wt",) and older.optional_modalities == () and older.required_modalities == ("flair", "t2")


@pytest.mark.parametrize("fields, message", [({"optional_modalities": ["flair"]}, "optional modalities"),
                                             ({"optional_modalities": ["t1"]}, "optional modalities"),
                                             ({"regions": ["tc", "et"]}, "regions"),
                                             ({"regions": ["wt", "et"]}, "regions")])
def test_bad_regions_or_optional_modalities_are_refused(tmp_path, fields, message):
    with pytest.raises(ModelCardError, match=message):
        read_model_card(_card(tmp_path / "m", name="m", modalities=["flair", "t2"], **fields))


def test_automatic_choice_prefers_real_mri_region_models(tmp_path, monkeypatch):
    """Among bundled models whose required inputs are given: not the phantom, then regions, then more inputs."""
    from DiffSegLib import logic
    from DiffSegLib.inputs import DiffSegInputError

    cards = [read_model_card(_card(tmp_path / name, name=name, **fields)) for name, fields in (
        ("phantom", {"modalities": ["flair", "t1", "t1ce", "t2"], "optional_modalities": ["t1", "t1ce", "t2"],
                     "regions": ["wt", "tc", "et"]}),
        ("brats-flair", {"modalities": ["flair"]}),
        ("brats-regions", {"modalities": ["flair", "t1", "t1ce", "t2"], "optional_modalities": ["t1", "t1ce", "t2"],
                           "regions": ["wt", "tc", "et"]}),
        ("four", {"modalities": ["flair", "t1", "t1ce", "t2"]}))]
    monkeypatch.setattr(logic, "list_bundled_models", lambda: cards)
    choose = logic.DiffSegLogic.choose_model
    assert choose(None, {"flair": 1}).name == "brats-flair", "made for FLAIR alone (docs/results.md §5)"
    assert choose(None, {"flair": 1, "t2": 4}).name == "brats-regions", "uses more of the given volumes"
    assert choose(None, {"flair": 1, "t1": 2, "t1ce": 3, "t2": 4}).name == "brats-regions"
    monkeypatch.setattr(logic, "list_bundled_models", lambda: [c for c in cards if c.name != "brats-regions"])
    assert choose(None, {"flair": 1}).name == "brats-flair"
    assert choose(None, {"flair": 1, "t1": 2, "t1ce": 3, "t2": 4}).name == "four"
    with pytest.raises(DiffSegInputError, match="brats-flair: flair; four: flair, t1, t1ce, t2"):
        choose(None, {"t2": 4})


def test_every_bundled_card_is_read_as_the_engine_declares_it():
    """An unreadable card would silently drop out of the model list: every bundled one must read, with the
    regions and optional inputs it declares (absent: whole tumour, every input required)."""
    from DiffSegLib.paths import bundled_models_dir

    folders = sorted(p for p in bundled_models_dir().iterdir() if (p / "model.json").is_file())
    assert {"phantom", "brats-flair"} <= {p.name for p in folders}
    assert [c.path for c in list_bundled_models()] == folders
    for folder in folders:
        declared = json.loads((folder / "model.json").read_text())
        card = read_model_card(folder)
        assert card.modalities == tuple(declared["modalities"])
        assert card.regions == tuple(declared.get("regions", ["wt"]))
        assert card.optional_modalities == tuple(declared.get("optional_modalities", []))
        assert card.required_modalities == tuple(declared.get("required_modalities", declared["modalities"]))


def test_engine_and_module_choose_the_same_bundled_model_for_every_set_of_sequences():
    """`diffseg segment` without --model and the module's automatic choice rank the bundled models alike."""
    from itertools import combinations

    from DiffSegExtension.errors import DiffSegInputError as EngineInputError
    from DiffSegExtension.model_card import choose_bundled_model
    from DiffSegLib import logic
    from DiffSegLib.inputs import DiffSegInputError

    sequences = ("flair", "t1", "t1ce", "t2")
    chosen = {}
    for k in range(len(sequences) + 1):
        for given in combinations(sequences, k):
            try:
                module = logic.DiffSegLogic.choose_model(None, {m: object() for m in given}).name
            except DiffSegInputError:
                with pytest.raises(EngineInputError, match="no bundled model runs on"):
                    choose_bundled_model(given)
                continue
            chosen[given] = choose_bundled_model(given).name
            assert chosen[given] == module, given
    assert chosen[("flair",)] == "brats-flair" and chosen[("flair", "t1ce")] == "brats-regions"
    assert chosen[sequences] == "brats-regions", "the phantom demo model never wins on its own inputs"
