"""Every page of the app, run by Streamlit's own AppTest against the real proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from logstore import store
from logstore.tables import inference_predictions
from monitoring.__main__ import main as monitoring_main
from registry_scripts import rollout
from tests.conftest import REPO, register_again
from tests.serving.conftest import HEADERS, ROLE_KEYS, Proxy, logged, rows, split_body, wait_for
from training.job import TrainingOutcome
from ui.__main__ import main as ui_main
from ui.client import ApiError
from ui.client import Proxy as Client
from ui.settings import UiSettings

APP = str(REPO / "ui" / "app.py")


@contextmanager
def app(url: str, key: str = ROLE_KEYS["ui"]) -> Iterator[AppTest]:
    """The app, run once, pointed at `url` with `key`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UI_PROXY_URL", url)
        patch.setenv("UI_API_KEY", key)
        yield AppTest.from_file(APP, default_timeout=90).run()


@pytest.fixture
def attrition_app(proxy: Proxy) -> Iterator[AppTest]:
    """The app on the attrition proxy."""
    with app(proxy.url) as at:
        yield at


def images(at: AppTest) -> int:
    return len(at.image)


def test_score_by_id_shows_the_risk_the_reasons_and_a_what_if(attrition_app: AppTest) -> None:
    at = attrition_app
    assert not at.exception
    assert at.title[0].value.endswith("Attrition = Yes")
    assert "Service ready, model version 1" in at.sidebar.success[0].value
    at.text_input(key="entity_id").input("7")
    at.button(key="score_id").click().run()
    assert not at.exception and not at.error
    score = at.metric[0].value
    assert score.endswith("%") and at.metric[1].value in {"Yes", "No"}
    assert images(at) == 1
    sentences = [m.value for m in at.markdown if m.value.startswith("- ")]
    # The model's reason codes (it has a catalogue): at most the usual four, each its statement and value.
    assert 1 <= len(sentences) <= 4 and all(s.startswith("- **") and " log-odds)" in s for s in sentences)
    at.selectbox(key="what_if_feature").select("OverTime").run()
    at.selectbox(key="what_if_OverTime").select("Yes").run()
    at.button(key="what_if_score").click().run()
    assert not at.exception
    assert at.metric[-1].label == "Score after the change" and at.metric[-1].delta.startswith(("+", "-"))


def test_the_form_is_built_from_the_signature_and_scores(attrition_app: AppTest) -> None:
    at = attrition_app
    assert at.selectbox(key="form_OverTime").options == ["No", "Yes"]
    years = at.number_input(key="form_TotalWorkingYears")
    assert (years.min, years.max) == (0, 40)  # The training range (both ends are in the training rows).
    # Protected attributes are not inputs: the form never asks for them.
    keys = {widget.key for widget in [*at.number_input, *at.selectbox]}
    assert "form_TotalWorkingYears" in keys and not {"form_Age", "form_Gender", "form_MaritalStatus"} & keys
    at.selectbox(key="form_OverTime").select("Yes")
    at.button(key="score_form").click().run()
    assert not at.exception and not at.error
    assert images(at) == 1 and at.metric[0].label == "Score"


def test_history_lists_logged_predictions_and_opens_one(attrition_app: AppTest) -> None:
    at = attrition_app
    at.text_input(key="entity_id").input("8")
    at.button(key="score_id").click().run()
    at.sidebar.radio(key="page").set_value("History").run()
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) >= 1
    assert images(at) == 1
    at.selectbox(key="h_label").select("No").run()
    assert not at.exception
    if at.dataframe:
        assert set(at.dataframe[0].value["prediction"]) == {"No"}
    else:
        assert at.info[0].value == "No logged predictions match."


def test_the_model_card_page_shows_the_served_versions_card(attrition_app: AppTest) -> None:
    at = attrition_app
    at.sidebar.radio(key="page").set_value("Model card").run()
    assert not at.exception and not at.error
    shown = "\n".join(m.value for m in at.markdown)
    assert "# Model card: attrition version" in shown and "## Intended use" in shown
    assert "## Promotion history" in shown


def test_drift_page_says_when_there_is_no_report(attrition_app: AppTest) -> None:
    at = attrition_app
    at.sidebar.radio(key="page").set_value("Drift").run()
    assert "No drift report yet" in at.info[0].value


def test_api_errors_are_readable_messages(proxy: Proxy) -> None:
    with app(proxy.url, key="wrong-key-wrong-key") as at:
        assert "refused the API key" in at.error[0].value and not at.exception
    with app(proxy.url) as at:
        at.text_input(key="entity_id").input("99999999")
        at.button(key="score_id").click().run()
        assert at.error[0].value.startswith("Not found: the entity is not in the entity table")
    with app("http://127.0.0.1:9") as at:
        assert "Cannot reach the scoring service" in at.error[0].value


@pytest.mark.parametrize(
    ("status", "words"),
    [(403, "read and score scopes"), (422, "could not use this input"), (503, "not available")],
)
def test_client_words_for_other_statuses(status: int, words: str) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, json={"message": "detail"}))
    client = Client(UiSettings(proxy_url="http://proxy"), transport=transport)
    with pytest.raises(ApiError, match=words):
        client.model()


def test_the_credit_model_gets_its_own_words_and_fields(credit_proxy: Proxy) -> None:
    with app(credit_proxy.url) as at:
        assert at.title[0].value.endswith("Status = bad")
        assert at.text_input(key="entity_id").label == "Client id"
        assert "form_Income" in {w.key for w in at.number_input}
        at.text_input(key="entity_id").input("3")
        at.button(key="score_id").click().run()
        assert not at.exception and not at.error and images(at) == 1


def test_bad_settings_stop_the_command_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ui_main(["--port", "0"]) == 2
    assert "--port: 0 is not a port" in capsys.readouterr().err
    monkeypatch.setenv("UI_TIMEOUT_SECONDS", "-1")
    assert ui_main([]) == 2
    assert "UI_TIMEOUT_SECONDS: Input should be greater than 0" in capsys.readouterr().err


def test_drift_page_shows_the_latest_report(
    proxy: Proxy,
    served: str,
    log_db: str,
    *,
    log_engine: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = {"dataframe_split": rows(150, start=200).to_dict(orient="split", index=False)}
    answer = httpx.post(f"{proxy.url}/invocations", json=body, headers=HEADERS, timeout=60)
    assert answer.status_code == 200
    logged(log_engine, answer.headers["X-Request-ID"])
    status = monitoring_main(["drift", "--model", served, "--database-url", log_db, "--out", str(tmp_path)])
    assert status in {0, 1}, capsys.readouterr().err
    with app(proxy.url) as at:
        at.sidebar.radio(key="page").set_value("Drift").run()
        assert not at.exception
        assert at.markdown[0].value.startswith("Report of ") and "logged rows" in at.markdown[0].value
        if status == 0:
            assert [m.value for m in at.main.success] == ["No drift found."] and not at.error
        else:
            assert len(at.error) == 1 and at.error[0].value.startswith("Drift: ")
        assert len(at.dataframe[0].value) == 27  # Every model input: the protected attributes are not inputs.


def test_challenger_page_shows_the_flips_with_both_versions_reasons(
    proxy: Proxy,
    served: str,
    log_db: str,
    *,
    log_engine: Engine,
    client: MlflowClient,
    attrition: TrainingOutcome,
    tmp_path: Path,
) -> None:
    with app(proxy.url) as at:
        at.sidebar.radio(key="page").set_value("Challenger").run()
        assert not at.exception and at.info[0].value.startswith("No challenger comparison yet")
    challenger = int(register_again(client, attrition, served))
    body = {"dataframe_split": rows(150, start=500).to_dict(orient="split", index=False)}
    answer = httpx.post(f"{proxy.url}/invocations", json=body, headers=HEADERS, timeout=60)
    request_id = answer.headers["X-Request-ID"]
    logged(log_engine, request_id)
    with log_engine.connect() as connection:
        served_rows = connection.execute(
            select(inference_predictions).where(inference_predictions.c.request_id == uuid.UUID(request_id))
        ).all()
    # What the proxy logs when it shadows: here the challenger turns every fifth decision around.
    shadows = [
        {
            "request_id": row.request_id, "row_index": row.row_index, "model_version": challenger,
            "model_name": served, "shadowed_at": datetime.now(UTC), "latency_ms": 12.0, "error": None,
            "score": 1 - row.score if row.row_index % 5 == 0 else row.score, "prediction": row.prediction,
            "threshold": row.threshold, "base_value": row.base_value,
            "contributions": {k: -v for k, v in row.contributions.items()} if row.row_index % 5 == 0
            else row.contributions,
        }
        for row in served_rows
    ]  # fmt: skip
    store.write_log(log_engine, requests=[], predictions=[], shadows=shadows)
    status = monitoring_main(["compare", "--model", served, "--database-url", log_db, "--out", str(tmp_path)])
    assert status == 1  # Far more flips than the 10% allowed.
    with app(proxy.url) as at:
        at.sidebar.radio(key="page").set_value("Challenger").run()
        assert not at.exception
        assert at.error[0].value.startswith("Objection: flip rate")
        flipped = at.dataframe[0].value
        assert len(flipped) > 0 and {"served reasons", "challenger reasons"} <= set(flipped.columns)
        assert at.metric[0].label == "Decisions that flip"


def test_challenger_page_shows_a_rollout_in_progress_with_its_figures(
    proxy: Proxy, served: str, *, client: MlflowClient, attrition: TrainingOutcome
) -> None:
    canary = register_again(client, attrition, served)
    rollout.start(client, served, canary, steps=[30, 100], every=600, min_rows=10_000, user="ui-test")

    def get(path: str) -> Any:
        return httpx.get(f"{proxy.url}{path}", headers=HEADERS, timeout=10).json()

    try:
        canary_facts = {"version": int(canary), "share": 30.0}
        wait_for(lambda: get("/model")["canary"] == canary_facts, 180, "the canary")
        body = split_body(rows(40))
        answer = httpx.post(f"{proxy.url}/invocations", json=body, headers=HEADERS, timeout=60)
        assert answer.status_code == 200
        wait_for(lambda: get("/rollout")["this_step"]["production_requests"] > 0, 30, "the step's figures")
        found = get("/rollout")
        assert (found["version"], found["share"], found["step"]) == (int(canary), 30, 1)
        assert found["steps"] == [30, 100]
        assert found["by"] == "ui-test" and found["passed"] == []
        with app(proxy.url) as at:
            at.sidebar.radio(key="page").set_value("Challenger").run()
            assert not at.exception
            assert at.warning[0].value.startswith(f"Rollout in progress: version {canary} decides for 30%")
            assert "Step 1 of 2 (30%, 100%)" in at.warning[0].value
            table = at.dataframe[0].value
            assert list(table["status"]) == ["in progress"]
            assert {"flip rate", "AUC canary"} <= set(table.columns)
    finally:
        rollout.abort(client, served, user="ui-test", reason="test over")
    wait_for(lambda: get("/model")["canary"] is None, 30, "the canary gone")
    assert httpx.get(f"{proxy.url}/rollout", headers=HEADERS, timeout=10).status_code == 404
