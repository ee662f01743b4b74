"""Decisions people can contest: the record of one logged decision, and its replay, through a real proxy."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine

from monitoring.__main__ import main as monitoring_main
from registry_scripts.__main__ import main as registry_main
from tests.serving.conftest import HEADERS, Proxy, logged, rows, split_body
from training.config import load_config
from training.job import TrainingOutcome


def assert_page_headers(page: httpx.Response) -> None:
    """A printable page that loads nothing from elsewhere, in no frame, and tells no referrer."""
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["content-security-policy"].startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert (page.headers["x-frame-options"], page.headers["referrer-policy"]) == ("DENY", "no-referrer")


@pytest.fixture(scope="module")
def artifacts(attrition: TrainingOutcome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained model's files, registered below: this module may tamper with it."""
    found = mlflow.artifacts.download_artifacts(f"models:/attrition/{attrition.version}")
    copy = tmp_path_factory.mktemp("decided") / "model"
    shutil.copytree(found, copy)
    return copy


@pytest.fixture(scope="module")
def decided(client: MlflowClient, attrition: TrainingOutcome, artifacts: Path) -> str:
    """A model whose version 1 (the copy) was promoted through the gates."""
    name = f"decided-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    client.create_model_version(name, source=str(artifacts), run_id=attrition.run_id)
    assert registry_main(["promote", "--model", name, "--version", "1", "--to", "production"]) == 0
    return name


@pytest.fixture(scope="module")
def http(decided: str, log_db: str, start_proxy: Callable[..., Proxy]) -> httpx.Client:
    proxy = start_proxy(decided, log_db)
    return httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60)


def test_the_record_of_a_decision_has_every_field_and_prints(
    http: httpx.Client, log_engine: Engine, decided: str, attrition: TrainingOutcome, client: MlflowClient
) -> None:
    sent = rows(2, start=100)
    answer = http.post("/invocations", json=split_body(sent, reasons=4))
    request_id = answer.headers["X-Request-ID"]
    logged(log_engine, request_id)
    record = http.get(f"/predictions/{request_id}/record", params={"row": 1})
    assert record.status_code == 200, record.text
    found, given = record.json(), answer.json()["predictions"][1]
    version, trained = (
        client.get_model_version(decided, "1"),
        client.get_model_version("attrition", attrition.version),
    )
    assert found["model"] == {
        "name": decided, "version": 1, "run_id": attrition.run_id, "source": version.source,
        "dataset_sha256": trained.tags["dataset_sha256"], "git_commit": trained.tags["git_commit"],
        "promotion": found["model"]["promotion"], "gates_verdict": "passed",
    }  # fmt: skip
    gates = {gate["gate"]: gate["passed"] for gate in found["model"]["promotion"]["gates"]}
    assert gates == {
        "loads-and-explains": True,
        "holdout-roc-auc": True,
        "beats-baseline": True,
        "live-shadow": True,
        "fairness": True,  # Passed, or passed with a warning (the shipped config's `gate: warn`).
    }
    assert (found["request_id"], found["row"]) == (request_id, 1) and datetime.fromisoformat(
        found["decided_at"]
    )
    for key in ("score", "threshold", "base_value", "contributions", "reasons"):
        assert found[key] == given[key], key
    assert found["decision"] == given["prediction"] and len(found["reasons"]) >= 1
    assert found["input"] == {**json.loads(sent.iloc[[1]].to_json(orient="records"))[0]}
    catalogue = load_config("attrition").reasons
    assert catalogue is not None
    assert found["reasons"][0]["statement"] == catalogue.catalogue[found["reasons"][0]["feature"]].statement
    page = http.get(f"/predictions/{request_id}/record", params={"row": 1, "format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_page_headers(page)
    text = page.text
    assert (
        "Decision record" in text and "data:image/png;base64," in text and found["reasons"][0]["code"] in text
    )
    assert "holdout-roc-auc: passed" in text and trained.tags["dataset_sha256"] in text
    assert http.get(f"/predictions/{request_id}/record", params={"row": 2}).status_code == 404
    assert http.get(f"/predictions/{uuid.uuid4()}/record").status_code == 404
    bad = http.get(f"/predictions/{request_id}/record", params={"format": "pdf"})
    assert bad.status_code == 400 and "format" in bad.json()["message"]


def test_replay_reproduces_a_decision_and_fails_visibly_after_tampering(
    http: httpx.Client, log_engine: Engine, log_db: str, artifacts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = http.post("/invocations", json=split_body(rows(1, start=200), reasons=3))
    request_id = answer.headers["X-Request-ID"]
    logged(log_engine, request_id)
    replay = ["replay", "--request-id", request_id, "--database-url", log_db]
    assert monitoring_main(replay) == 0
    said = capsys.readouterr().out
    codes = ", ".join(reason["code"] for reason in answer.json()["predictions"][0]["reasons"])
    assert "reproduced: score " in said and f"reasons {codes}" in said
    # Someone edits the shipped model's words after the fact: the replay says so, and how.
    metadata = artifacts / "artifacts" / "metadata.json"
    content = json.loads(metadata.read_text())
    first = answer.json()["predictions"][0]["reasons"][0]["feature"]
    content["reasons"][first]["statement"] = "Something else"
    metadata.write_text(json.dumps(content))
    assert monitoring_main(replay) == 1
    said = capsys.readouterr().out
    assert "NOT reproduced" in said and "Something else" in said
    assert monitoring_main(["replay", "--request-id", str(uuid.uuid4()), "--database-url", log_db]) == 2
    assert "is not in the log" in capsys.readouterr().err


def test_the_model_card_is_served_with_its_promotion_history(
    http: httpx.Client, attrition: TrainingOutcome
) -> None:
    assert http.get("/model").json()["model_card"] == "/model/card"
    page = http.get("/model/card")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_page_headers(page)
    assert f"Model card: attrition version {attrition.version}" in page.text
    assert "<h2>Promotion history</h2>" in page.text and "promoted to Production" in page.text
    text = http.get("/model/card", params={"format": "md"})
    assert text.headers["content-type"].startswith("text/markdown")
    assert "| holdout ROC AUC |" in text.text and "## Promotion history" in text.text
    assert "| promoted to Production |" in text.text
