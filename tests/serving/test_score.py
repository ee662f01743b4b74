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
    assert printed.strip().endswith(f"3 rows scored into {out_file}") and "employee_id 1" not in printed
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["contributions"]) == 2 for r in rows)
    assert (
        main(
            ["--model", "attrition", *where, "--input", str(REPO / "data" / "attrition.csv"), "--top-k", "2"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.count("employee_id ") == 5 and "the log-odds by" in printed


def test_limit_0_scores_every_row(
    production: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_file = tmp_path / "all.jsonl"
    data = REPO / "data" / "attrition.csv"
    assert (
        main(["--model", "attrition", "--input", str(data), "--limit", "0", "--output", str(out_file)]) == 0
    )
    assert len(out_file.read_text().splitlines()) == 1470
    assert "1470 rows scored" in capsys.readouterr().out
    assert main(["--model", "attrition", "--input", str(data), "--limit", "-1"]) == 2


def test_unknown_model_is_a_clear_error(
    attrition: TrainingOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--model", "nobody", "--input", str(REPO / "data" / "attrition.csv")])
    assert code == 2
    assert "models:/nobody@production" in capsys.readouterr().err
