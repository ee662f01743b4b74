"""`python -m serving.score` scores and explains rows through a models:/ URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.score import main
from tests.conftest import REPO
from training.job import TrainingOutcome


@pytest.mark.parametrize("where", [["--stage", "Production"], ["--alias", "production"]])
def test_scores_a_csv_by_uri(
    production: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: list[str]
) -> None:
    out_file = tmp_path / "out.jsonl"
    code = main(
        [
            "--model",
            "attrition",
            *where,
            "--input",
            str(REPO / "data" / "attrition.csv"),
            "--limit",
            "3",
            "--top-k",
            "2",
            "--output",
            str(out_file),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "employee_id 1: score" in printed and "the log-odds by" in printed
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["contributions"]) == 2 for r in rows)


def test_unknown_model_is_a_clear_error(
    attrition: TrainingOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--model", "nobody", "--input", str(REPO / "data" / "attrition.csv")])
    assert code == 2
    assert "models:/nobody@production" in capsys.readouterr().err
