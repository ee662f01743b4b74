"""The fairness gate judged on live traffic: the latest `python -m monitoring fairness` report counts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from logstore import store
from logstore.database import make_engine, migrate
from monitoring.__main__ import main as monitoring_main
from registry_scripts import fairness
from registry_scripts.__main__ import main
from tests.conftest import REPO, config_with, register_again
from training.job import train

# Every counted group's flag rate must equal the highest (min_ratio 1.0): live traffic is flagged for sure.
STRICT_LIVE = {
    "attributes": {"Gender": {}, "Age": {"bands": [30, 40, 50]}},
    "min_ratio": 1.0,
    "gate": "refuse",
    "gate_on": "live",
}


def log_served(url: str, model: str, version: str, rows: pd.DataFrame) -> None:
    """What the proxy logs when `version` answers `rows` (protected attributes sent beside the inputs)."""
    answers = mlflow.pyfunc.load_model(f"models:/{model}/{version}").predict(rows)
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    requests, predictions = [], []
    for start in range(0, len(rows), 20):
        request_id = uuid.uuid4()
        chunk = range(start, min(start + 20, len(rows)))
        requests.append(
            {"request_id": request_id, "received_at": now, "endpoint": "/invocations", "model_name": model,
             "model_version": int(version), "model_target": "@production", "status_code": 200,
             "total_ms": 9.0, "upstream_ms": 7.0, "n_rows": len(chunk)}
        )  # fmt: skip
        for index, row in enumerate(chunk):
            answer = answers.iloc[row]
            predictions.append(
                {"request_id": request_id, "row_index": index, "input": rows.iloc[row].to_dict(),
                 "score": float(answer["score"]), "prediction": str(answer["prediction"]),
                 "threshold": float(answer["threshold"]), "base_value": float(answer["base_value"])}
            )  # fmt: skip
    store.write_log(engine, requests=requests, predictions=predictions)
    engine.dispose()


@pytest.mark.integration
def test_gate_on_live_refuses_a_version_whose_live_report_is_flagged(
    client: MlflowClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = f"live-{uuid.uuid4().hex[:8]}"
    policy = fairness.FairnessPolicy.model_validate(STRICT_LIVE)
    trained = train(config_with("attrition", model_name=name, fairness=policy), trials=1, cv_folds=2)
    assert trained.version == "1"

    # No live report yet: the gate has nothing to judge and refuses; the first version goes in by force.
    assert main(["promote", "--model", name, "--version", "1", "--to", "production"]) == 1
    err = capsys.readouterr().err
    assert "fairness: no live figures: no `python -m monitoring fairness` report of version 1" in err
    assert "Traceback" not in err
    forced = ["--force", "--reason", "first version, no traffic yet"]
    assert main(["promote", "--model", name, "--version", "1", "--to", "production", *forced]) == 0

    # Production's traffic, logged and assessed by the real job: flagged under the strict rule.
    frame = pd.read_csv(REPO / "data" / "attrition.csv").drop(columns=["Attrition"])
    frame = frame.sample(300, random_state=1)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log_served(url, name, "1", frame.reset_index(drop=True))
    reports = ["fairness", "--model", name, "--database-url", url, "--out", str(tmp_path / "reports")]
    assert monitoring_main(reports) == 1
    capsys.readouterr()

    # A retrain with the same policy: it has served no one, so its predecessor's live report judges it.
    candidate = register_again(client, trained, name)
    assert main(["promote", "--model", name, "--version", candidate, "--to", "production"]) == 1
    err = capsys.readouterr().err
    assert "under the four-fifths rule on live traffic" in err and "of version 1 (300 rows" in err
    assert "the config's fairness.gate is refuse" in err and "Traceback" not in err
    assert str(client.get_registered_model(name).aliases["production"]) == "1"
