"""Use-case configs load, and bad ones fail at start with a message naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from training.__main__ import main
from training.config import available_configs, load_config
from training.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, content: dict[str, object]) -> Path:
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def valid() -> dict[str, object]:
    return {
        "model_name": "third",
        "data": {
            "path": str(REPO / "data" / "credit.csv"),
            "target": "Status",
            "positive_class": "bad",
            "id_column": "client_id",
        },
        "costs": {"false_negative": 5, "false_positive": 1},
    }


def test_shipped_configs_load_with_data_paths_resolved() -> None:
    assert available_configs() == ["attrition", "credit"]
    for name in available_configs():
        config = load_config(name)
        assert config.model_name == name
        assert config.data.path.is_file()


def test_a_config_path_works_and_search_defaults_apply(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, valid())))
    assert config.model_name == "third"
    assert config.search.trials == 30
    assert config.experiment_name == "third"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: c["costs"].update(false_negative=-1), "costs.false_negative"),
        (lambda c: c["data"].pop("target"), "data.target"),
        (lambda c: c.update(modle_name="typo"), "modle_name"),
        (lambda c: c.update(model_name="has space"), "model_name"),
        (lambda c: c.update(search={"cv_folds": 1}), "search.cv_folds"),
        (lambda c: c.update(search={"holdout_fraction": 0.9}), "search.holdout_fraction"),
        (
            lambda c: c.update(fairness={"attributes": {"Age": {"bands": [50, 30]}}}),
            "fairness.attributes.Age.bands",
        ),
        (lambda c: c.update(fairness={"attributes": {"Age": {}}, "gate": "block"}), "fairness.gate"),
    ],
)
def test_invalid_fields_are_named(tmp_path: Path, change: object, field: str) -> None:
    content = valid()
    change(content)  # type: ignore[operator]
    with pytest.raises(ConfigError, match="invalid config .*" + re.escape(field)):
        load_config(str(write(tmp_path, content)))


def test_unknown_config_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown config 'nope': use one of attrition, credit"):
        load_config("nope")


def test_not_yaml_mapping(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(str(path))


def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = valid()
    content["data"]["positive_class"] = "maybe"  # type: ignore[index]
    assert main(["--config", str(write(tmp_path, content)), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "data.positive_class: 'maybe' is not a class of 'Status'" in err
    assert "Traceback" not in err


def test_cli_overrides_are_validated_like_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "credit", "--trials", "5000"]) == 2
    err = capsys.readouterr().err
    assert "search overrides" in err and "trials" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("fairness", "message"),
    [
        ({"Religion": {}}, "fairness.attributes.Religion: column 'Religion' is not in the CSV"),
        (
            {"Marital": {"bands": [1, 2]}},
            "fairness.attributes.Marital.bands: column 'Marital' is not numeric",
        ),
        ({"Status": {}}, "fairness.attributes.Status: 'Status' is the target or id column"),
    ],
)
def test_a_bad_protected_attribute_stops_training_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fairness: dict[str, object], message: str
) -> None:
    content = {**valid(), "fairness": {"attributes": fairness}}
    assert main(["--config", str(write(tmp_path, content)), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
