"""Config schema: defaults, presets, spellcheck of keys, types, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segkit.config import Config, apply_override, load_config, validate_config
from segkit.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = sorted(CONFIGS.rglob("*.yaml"))
CLASSES = [{"id": 1, "name": "a", "color": [255, 0, 0]}, {"id": 2, "name": "b", "color": [0, 255, 0]}]


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_both_preset_tiers_exist_and_validate() -> None:
    datasets = {"alcapa", "left-atrial", "whole-heart", "chest-ct", "hocm"}
    assert datasets | {"demo", "acdc"} <= {p.stem for p in CONFIGS.glob("*.yaml")}  # recommended
    assert datasets <= {p.stem for p in (CONFIGS / "seed").glob("*.yaml")}  # the seed experiments' settings
    for name in datasets:  # the two tiers describe the same dataset
        rec, seed = load_config(CONFIGS / f"{name}.yaml"), load_config(CONFIGS / "seed" / f"{name}.yaml")
        assert rec.classes == seed.classes and rec.modality == seed.modality and rec.name == seed.name
        assert seed.model.base_kernels >= 7 and seed.train.learning_rate <= 1e-4  # the seed recipe, untouched
    for p in PRESETS:
        cfg = load_config(p)
        assert cfg.num_classes == len(cfg.classes) + 1


def test_preset_class_tables_match_the_published_datasets() -> None:
    wh = load_config(CONFIGS / "whole-heart.yaml")
    assert [(c.id, c.name, tuple(c.color)) for c in wh.classes] == [
        (1, "LV", (255, 0, 0)),
        (2, "RV", (0, 0, 255)),
        (3, "LA", (255, 255, 0)),
        (4, "RA", (0, 255, 255)),
        (5, "AO", (0, 255, 0)),
        (6, "PA", (255, 255, 255)),
        (7, "SVC", (255, 0, 255)),
        (8, "IVC", (128, 128, 128)),
    ]
    hocm = load_config(CONFIGS / "hocm.yaml")
    assert [tuple(c.color) for c in hocm.classes][-1] == (110, 110, 110)
    chest = load_config(CONFIGS / "chest-ct.yaml")
    assert [c.name for c in chest.classes] == ["trachea", "heart", "lung"]


def test_defaults_are_filled_and_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"classes": CLASSES}))
    assert cfg.train.epochs == 100 and cfg.prepare.empty_slices == "fraction"
    again = validate_config(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_misspelled_key_names_dotted_key_and_closest_valid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"classes": CLASSES, "train": {"epoch": 3}}))
    line = e.value.one_line()
    assert "unknown key 'train.epoch'" in line and "did you mean 'train.epochs'" in line
    assert str(tmp_path / "c.yaml") in line and "\n" not in line


def test_misspelled_section_and_nested_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'prepare'"):
        load_config(write(tmp_path, {"classes": CLASSES, "prepar": {}}))
    with pytest.raises(ConfigError, match="did you mean 'train.reduce_lr.patience'"):
        load_config(write(tmp_path, {"classes": CLASSES, "train": {"reduce_lr": {"patiense": 2}}}))


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"classes": CLASSES, "train": {"batch_size": "two"}}))
    assert "key 'train.batch_size'" in str(e.value) and "integer" in str(e.value)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([], "at least one foreground class"),
        ([{"id": 2, "name": "a", "color": [1, 2, 3]}], "ids must be 1..1"),
        ([{"id": 1, "name": "a", "color": [0, 0, 0]}], "background colour"),
        (
            [{"id": 1, "name": "a", "color": [9, 9, 9]}, {"id": 2, "name": "b", "color": [9, 9, 9]}],
            "share the colour",
        ),
    ],
)
def test_bad_class_tables(classes: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config({"classes": classes})


def test_class_concepts_are_validated_and_every_cardiac_preset_class_has_one() -> None:
    la = {"id": 1, "name": "LA", "color": [255, 0, 255]}
    typ = {"code": "82471001", "meaning": "Left atrium"}
    cfg = validate_config({"classes": [{**la, "concept": {"type": typ}}]})
    concept = cfg.classes[0].concept
    assert concept is not None and (concept.category.code, concept.category.meaning) == (
        "91723000", "Anatomical Structure")  # the default category
    assert (concept.type.scheme, concept.type.code) == ("SCT", "82471001")
    assert validate_config({"classes": [la]}).classes[0].concept is None  # optional
    for bad, message in (({"code": "LA1", "meaning": "x"}, "SNOMED CT code is 6 to 16 digits"),
                         ({"code": "82471001"}, "classes.0.concept.type.meaning"),
                         ({"code": "82471001", "meaning": "x", "colour": 1}, "colour")):
        with pytest.raises(ConfigError, match=message):
            validate_config({"classes": [{**la, "concept": {"type": bad}}]})
    for p in PRESETS:
        cfg = load_config(p)
        if cfg.name not in ("chest-ct", "demo"):
            assert all(c.concept is not None and c.concept.type.scheme == "SCT" for c in cfg.classes), p
    left = load_config(CONFIGS / "left-atrial.yaml")
    # the concept names the class; it does not change what prepare writes
    assert left.prepare_fingerprint() == validate_config(
        {**left.to_yaml_data(), "classes": [{**la, "concept": None}]}).prepare_fingerprint()


# SNOMED CT codes of the presets that pydicom's DICOM tables (CID 7151 and others) do not list, checked by
# hand against SNOMED CT: 74281007 |Myocardium structure (body structure)|.
NOT_IN_PYDICOM = {"74281007"}


def test_preset_and_fallback_codes_name_the_structure_dicom_gives_them() -> None:
    """Every SNOMED CT code of the presets (and of DICOM-SEG's fallback table) means, in pydicom's copy of the
    DICOM code tables, what the preset says it means (a wrong code once named 'Proximal Right Coronary
    Artery' as the whole RCA)."""
    import pydicom.sr._concepts_dict as dicom_codes

    from segkit.io.dicomseg import CARDIAC_CODES

    meanings: dict[str, set[str]] = {}
    for entry in dicom_codes.concepts["SCT"].values():
        for code, (meaning, _cids) in entry.items():
            meanings.setdefault(code, set()).add(meaning.lower())
    used = {(c.concept.type.code, c.concept.type.meaning)
            for p in PRESETS for c in load_config(p).classes if c.concept is not None}
    used |= set(CARDIAC_CODES.values())
    assert len(used) >= 15
    for code, meaning in sorted(used):
        if code in NOT_IN_PYDICOM:
            continue
        assert code in meanings, f"{code} ({meaning}) is in no DICOM table"
        assert meaning.lower() in meanings[code] or any(
            m.startswith(meaning.lower()) for m in meanings[code]), (code, meaning, meanings[code])


def test_missing_file_bad_yaml_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_overrides_go_through_the_same_validator(tmp_path: Path) -> None:
    p = write(tmp_path, {"classes": CLASSES})
    cfg = load_config(p, ["train.epochs=2", "model.num_layers=4", "prepare.size=[64, 64]"])
    assert (cfg.train.epochs, cfg.model.num_layers, cfg.prepare.size) == (2, 4, (64, 64))
    with pytest.raises(ConfigError, match="did you mean 'model.num_layers'"):
        load_config(p, ["model.num_layer=4"])
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_config(p, ["train.epochs"])
    raw: dict = {"train": 3}
    with pytest.raises(ConfigError, match="is not a section"):
        apply_override(raw, "train.epochs=2")


def test_config_is_frozen_and_fingerprint_tracks_prepare_only() -> None:
    a = validate_config({"classes": CLASSES})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        a.seed = 3  # type: ignore[misc]
    b = validate_config({"classes": CLASSES, "train": {"epochs": 1}})
    c = validate_config({"classes": CLASSES, "prepare": {"size": [64, 64]}})
    assert a.prepare_fingerprint() == b.prepare_fingerprint() != c.prepare_fingerprint()


def test_binary_merges_classes() -> None:
    cfg = validate_config({"classes": CLASSES, "prepare": {"binary": True}})
    assert cfg.num_classes == 2 and cfg.effective_classes[0].name == "foreground"
    assert isinstance(cfg, Config)


def test_fold_without_folds_is_an_error() -> None:
    with pytest.raises(ConfigError, match="fold 2 needs folds"):
        validate_config({"classes": CLASSES, "prepare": {"split": {"fold": 2}}})


def test_model_input_size_follows_prepare_size_unless_given() -> None:
    from segkit.config import validate_config

    base = {"classes": [{"id": 1, "name": "a", "color": [255, 0, 0]}]}
    assert validate_config({**base, "prepare": {"size": [128, 96]}}).data.image_size == (128, 96)
    assert validate_config(
        {**base, "prepare": {"size": [128, 96]}, "data": {"channels": 1}}
    ).data.image_size == (128, 96)
    assert validate_config(
        {**base, "prepare": {"size": [128, 96]}, "data": {"image_size": [64, 64]}}
    ).data.image_size == (64, 64)
    assert validate_config(base).data.image_size == (512, 512)
