"""`python -m monitoring compare` on a real log store and registry: the model's own answers, shadowed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient

from logstore import store
from logstore.database import make_engine, migrate
from monitoring.__main__ import main
from registry_scripts.__main__ import main as registry_main
from tests.conftest import register_again
from training.job import TrainingOutcome

Answers = Callable[[pd.DataFrame], pd.DataFrame]


@pytest.fixture
def two_versions(client: MlflowClient, attrition: TrainingOutcome) -> str:
    """A fresh model: version 1 promoted to production, version 2 (the challenger) in Staging."""
    name = f"versus-{uuid.uuid4().hex[:8]}"
    register_again(client, attrition, name)
    register_again(client, attrition, name)
    assert registry_main(["promote", "--model", name, "--version", "1", "--to", "production"]) == 0
    assert registry_main(["promote", "--model", name, "--version", "2", "--to", "staging"]) == 0
    return name


def promote_challenger(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Promote version 2 to production; the exit status and what was said."""
    capsys.readouterr()
    status = registry_main(["promote", "--model", name, "--version", "2", "--to", "production"])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def log_shadowed(
    url: str, model: str, holdout: pd.DataFrame, served: pd.DataFrame, challenger: pd.DataFrame
) -> None:
    """What the proxy logs of 10-row requests answered by version 1 and shadowed by version 2; outcomes."""
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    requests, predictions, shadows, outcomes = [], [], [], []
    for start in range(0, len(holdout), 10):
        request_id = uuid.uuid4()
        chunk = range(start, min(start + 10, len(holdout)))
        requests.append(
            {"request_id": request_id, "received_at": now, "endpoint": "/invocations", "model_name": model,
             "model_version": 1, "model_target": "@production", "status_code": 200, "total_ms": 9.0,
             "upstream_ms": 7.0, "n_rows": len(chunk)}
        )  # fmt: skip
        for index, row in enumerate(chunk):
            answer, shadow = served.iloc[row], challenger.iloc[row]
            common = {"request_id": request_id, "row_index": index}
            predictions.append({**common, **_answer(answer)})
            shadows.append(
                {**common, **_answer(shadow), "model_version": 2, "model_name": model, "shadowed_at": now,
                 "latency_ms": 11.0, "error": None}
            )  # fmt: skip
            positive = holdout["Attrition"].iloc[row] == 1  # The holdout fixture holds the target as 0/1.
            outcomes.append({**common, "label": "Yes" if positive else "No", "positive": bool(positive),
                             "observed_at": now, "source": "test"})  # fmt: skip
    store.write_log(engine, requests=requests, predictions=predictions, shadows=shadows)
    store.record_outcomes(engine, outcomes=outcomes)
    engine.dispose()


def _answer(output: pd.Series) -> dict[str, Any]:
    """One answer as the writer stores it: plain Python values (JSON's, read back from the response)."""
    return {
        "score": float(output["score"]), "prediction": str(output["prediction"]),
        "threshold": float(output["threshold"]), "base_value": float(output["base_value"]),
        "contributions": {name: float(value) for name, value in output["contributions"].items()},
    }  # fmt: skip


def compare(url: str, model: str, out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """The command's exit status and the summary it wrote."""
    status = main(["compare", "--model", model, "--database-url", url, "--out", str(out), *args])
    summaries = sorted(out.glob("*/summary.json"))
    return status, json.loads(summaries[-1].read_text()) if summaries else {}


@pytest.fixture(scope="module")
def answers(attrition_model: PyFuncModel, holdout: pd.DataFrame) -> pd.DataFrame:
    """The attrition model's answers on the holdout rows."""
    return attrition_model.predict(holdout.drop(columns=["Attrition"]))


def test_a_challenger_that_answers_alike_raises_no_objection(
    two_versions: str, postgres_url: str, holdout: pd.DataFrame, answers: pd.DataFrame,
    *, client: MlflowClient, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    log_shadowed(postgres_url, two_versions, holdout, answers, answers)
    status, summary = compare(postgres_url, two_versions, tmp_path)
    assert status == 0 and summary["verdict"] == "no objection"
    assert (summary["champion_version"], summary["challenger_version"]) == (1, 2)
    assert summary["rows"] == len(holdout) and summary["decisions"]["flip_rate"] == 0.0
    realised = summary["realised"]
    assert realised["champion"] == realised["challenger"] and realised["auc_difference"]["difference"] == 0.0
    report = next(tmp_path.glob("*/report.html")).read_text()
    assert "no objection" in report and "data:image/png;base64," in report and "http" not in report
    assert "<td>flip rate</td><td>0</td>" in report and "95% paired bootstrap interval" in report
    version = client.get_model_version(two_versions, "2")
    runs = client.search_runs(
        [client.get_run(version.run_id or "").info.experiment_id],
        f"tags.monitoring = 'compare' and tags.model_name = '{two_versions}'",
    )
    assert len(runs) == 1 and runs[0].data.tags["verdict"] == "no objection"
    assert runs[0].data.metrics["decisions.flip_rate"] == 0.0
    # The live-shadow gate needs 500 rows by default; the holdout has 294: the config's limit decides.
    status, said = promote_challenger(two_versions, capsys)
    assert status == 1 and "live-shadow: 294 shadowed rows, 500 needed" in said
    client.set_model_version_tag(two_versions, "2", "promotion.min_shadow_rows", "200")
    status, said = promote_challenger(two_versions, capsys)
    assert status == 0 and "gate live-shadow: passed: run " in said and "flip rate 0.000" in said


def test_a_challenger_with_shuffled_answers_is_objected_to(
    two_versions: str, postgres_url: str, holdout: pd.DataFrame, answers: pd.DataFrame,
    *, client: MlflowClient, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    shuffled = answers.sample(frac=1.0, random_state=0).reset_index(drop=True)  # Answers to other rows.
    log_shadowed(postgres_url, two_versions, holdout, answers, shuffled)
    status, summary = compare(postgres_url, two_versions, tmp_path, "--bootstrap", "200")
    assert status == 1 and summary["verdict"] == "objection"
    assert summary["decisions"]["flip_rate"] > 0.1 and summary["top_reasons"]["mean_overlap"] < 1.0
    auc = summary["realised"]["auc_difference"]
    assert auc["difference"] < -0.1 and auc["high"] < 0  # Clearly worse, and the interval says so.
    assert any("realised ROC AUC" in reason for reason in summary["reasons"])
    client.set_model_version_tag(two_versions, "2", "promotion.min_shadow_rows", "200")
    status, said = promote_challenger(two_versions, capsys)
    assert status == 1 and "live-shadow: flip rate" in said and "realised ROC AUC" in said
    assert str(client.get_model_version_by_alias(two_versions, "production").version) == "1"


def test_too_few_rows_is_not_enough_data_and_no_shadow_is_a_clear_error(
    two_versions: str, postgres_url: str, holdout: pd.DataFrame, answers: pd.DataFrame,
    *, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    engine = make_engine(postgres_url)
    migrate(engine)  # A log store at the latest schema, nothing shadowed yet.
    engine.dispose()
    status = main(
        ["compare", "--model", two_versions, "--database-url", postgres_url, "--out", str(tmp_path)]
    )
    assert status == 2 and "no shadowed rows" in capsys.readouterr().err
    log_shadowed(postgres_url, two_versions, holdout.head(40), answers.head(40), answers.head(40))
    status, summary = compare(postgres_url, two_versions, tmp_path)
    assert status == 2 and summary["verdict"] == "not enough data"
    status = main(
        ["compare", "--model", two_versions, "--database-url", postgres_url, "--max-flip-rate", "2"]
    )
    assert status == 2 and "--max-flip-rate" in capsys.readouterr().err
