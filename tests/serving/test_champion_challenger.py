"""Champion and challenger end to end: real retrains shadowed by a real proxy under traffic, then gated."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine

from monitoring.__main__ import main as monitoring_main
from registry_scripts.__main__ import main as registry_main
from tests.conftest import REPO, register_again
from tests.serving.conftest import HEADERS, Proxy, count, split_body, wait_for
from training.config import load_config
from training.job import TrainingOutcome, train

RETRAIN = {"trials": 1, "cv_folds": 3}  # The enqueued first trial only: the seed is all that differs.
ROWS_PER_REQUEST = 10


@pytest.fixture(scope="module")
def contest(
    client: MlflowClient, attrition: TrainingOutcome, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """Version 1 (the session's model) in Production; 2, retrained with seed 11; 3, on shuffled labels."""
    name = f"contest-{uuid.uuid4().hex[:8]}"
    register_again(client, attrition, name)
    config = load_config("attrition").model_copy(update={"model_name": name})
    # At this budget seed 11 flips 8.1% of the 1,470 decisions of seed 42's model. Seed 7, used before the
    # protected attributes left the inputs, now flips 13.0%: too near the 0.15 limit for 150-row steps;
    # seed 3 flips 6.9%, but its holdout split reads 0.013 lower ROC AUC, which the holdout gate refuses.
    reseeded = config.model_copy(update={"search": config.search.model_copy(update={"seed": 11})})
    assert train(reseeded, **RETRAIN).version == "2"
    data = pd.read_csv(config.data.path)
    data[config.data.target] = data[config.data.target].sample(frac=1.0, random_state=0).to_numpy()
    shuffled = tmp_path_factory.mktemp("shuffled") / "attrition.csv"
    data.to_csv(shuffled, index=False)
    noise = config.model_copy(update={"data": config.data.model_copy(update={"path": shuffled})})
    assert train(noise, **RETRAIN).version == "3"
    assert registry_main(["promote", "--model", name, "--version", "1", "--to", "production"]) == 0
    return name


def traffic(proxy: Proxy) -> list[tuple[str, pd.Series]]:
    """Every attrition row, 10 per request from 4 clients at once; each request's id and true labels."""
    data = pd.read_csv(REPO / "data" / "attrition.csv")
    chunks = [data.iloc[start : start + ROWS_PER_REQUEST] for start in range(0, len(data), ROWS_PER_REQUEST)]

    def send(chunk: pd.DataFrame) -> tuple[str, pd.Series]:
        with httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60) as http:
            answer = http.post("/invocations", json=split_body(chunk.drop(columns=["Attrition"])))
        assert answer.status_code == 200, answer.text
        return answer.headers["X-Request-ID"], chunk["Attrition"].reset_index(drop=True)

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(send, chunks))


def label(proxy: Proxy, sent: list[tuple[str, pd.Series]]) -> None:
    """Report every row's observed outcome through `POST /feedback`, as an HR system would."""
    with httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60) as http:
        for request_id, labels in sent:
            for row, value in labels.items():
                answer = http.post("/feedback", json={"request_id": request_id, "row": row, "label": value})
                assert answer.status_code == 201, answer.text


def shadowed_by(proxy: Proxy, version: int) -> Callable[[], bool]:
    """Whether the proxy's challenger backend serves `version` now."""
    state = proxy.spool / "shadow.json"
    return lambda: state.exists() and json.loads(state.read_text())["version"] == version


def shadow_traffic(proxy: Proxy, log_db: str, version: int) -> datetime:
    """Send and label a day's traffic once the challenger `version` shadows; when it started."""
    wait_for(shadowed_by(proxy, version), 240, f"version {version} shadowing")
    since = datetime.now(UTC)
    sent = traffic(proxy)
    engine = create_engine(log_db)
    try:
        query = f"SELECT count(*) FROM shadow_predictions WHERE model_version = {version} AND error IS NULL"
        rows = sum(len(labels) for _, labels in sent)
        wait_for(lambda: count(engine, query) == rows, 120, f"{rows} shadow rows of version {version}")
    finally:
        engine.dispose()
    label(proxy, sent)
    return since


def compared(log_db: str, model: str, out: Path, since: datetime) -> tuple[int, dict[str, Any]]:
    """`python -m monitoring compare` on the rows since `since`: its exit status and summary."""
    options = ["--database-url", log_db, "--out", str(out), "--since", since.isoformat()]
    status = monitoring_main(["compare", "--model", model, *options])
    [summary] = out.glob("*/summary.json")
    return status, json.loads(summary.read_text())


def show(capsys: pytest.CaptureFixture[str], challenger: str, summary: dict[str, Any]) -> None:
    """Show the comparison's figures in the test's output (`-s`): what the defaults were settled on."""
    with capsys.disabled():
        figures = {key: summary.get(key) for key in ("decisions", "realised", "reasons")}
        print(f"\n{challenger}:", json.dumps(figures))


def promote(model: str, version: int, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`registry_scripts promote --to production`: its exit status and what it said."""
    capsys.readouterr()
    status = registry_main(["promote", "--model", model, "--version", str(version), "--to", "production"])
    said = capsys.readouterr()
    return status, said.out + said.err


def test_the_shadow_comparison_refuses_noise_and_passes_a_reseeded_retrain(
    contest: str, client: MlflowClient, log_db: str, start_proxy: Callable[..., Proxy],
    *, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert registry_main(["promote", "--model", contest, "--version", "3", "--to", "staging"]) == 0
    proxy = start_proxy(contest, log_db, SERVING_SHADOW="staging")

    since = shadow_traffic(proxy, log_db, 3)
    status, summary = compared(log_db, contest, tmp_path / "noise", since)
    show(capsys, "shuffled labels", summary)
    assert status == 1 and summary["verdict"] == "objection"
    assert (summary["champion_version"], summary["challenger_version"], summary["rows"]) == (1, 3, 1470)
    assert summary["realised"]["auc_difference"]["high"] < 0  # Worse, and the interval says so.
    status, said = promote(contest, 3, capsys)
    assert status == 1 and "live-shadow: " in said and "realised ROC AUC" in said
    assert str(client.get_model_version_by_alias(contest, "production").version) == "1"

    # The retrain takes @staging: the proxy's shadow follows it, as the served version follows @production.
    assert registry_main(["promote", "--model", contest, "--version", "2", "--to", "staging"]) == 0
    since = shadow_traffic(proxy, log_db, 2)
    status, summary = compared(log_db, contest, tmp_path / "retrain", since)
    show(capsys, "another seed", summary)
    assert status == 0 and summary["verdict"] == "no objection", summary["reasons"]
    assert (summary["champion_version"], summary["challenger_version"], summary["rows"]) == (1, 2, 1470)
    status, said = promote(contest, 2, capsys)
    assert "gate live-shadow: passed: run " in said, said
    assert status == 0 and str(client.get_model_version_by_alias(contest, "production").version) == "2"


def copied(client: MlflowClient, model: str, version: str, name: str) -> str:
    """Register a version's artifacts and run under another model name; returns the new version."""
    found = client.get_model_version(model, version)
    assert found.source is not None
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return str(client.create_model_version(name, source=found.source, run_id=found.run_id).version)


def test_a_rollout_rolls_noise_back_by_itself_and_takes_a_reseeded_retrain_to_production(
    contest: str, client: MlflowClient, log_db: str, start_proxy: Callable[..., Proxy],
    *, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    name = f"rollout-{uuid.uuid4().hex[:8]}"
    first, reseeded, noise = (copied(client, contest, version, name) for version in ("1", "2", "3"))
    assert registry_main(["promote", "--model", name, "--version", first, "--to", "production"]) == 0
    proxy = start_proxy(name, log_db)
    data = pd.read_csv(REPO / "data" / "attrition.csv").drop(columns=["Attrition"])
    answered: list[tuple[int, str, int]] = []  # (person, version, status) in the order answered.
    stop = threading.Event()

    def send(offset: int) -> None:
        with httpx.Client(base_url=proxy.url, headers=HEADERS, timeout=60) as http:
            for i in itertools.count(offset, 4):
                if stop.is_set():
                    return
                row = data.iloc[[i % len(data)]]
                answer = http.post("/invocations", json=split_body(row))
                answered.append((int(row["employee_id"].iloc[0]), answer.headers.get("X-Model-Version", "-"),
                                 answer.status_code))  # fmt: skip

    def roll(version: str) -> tuple[int, str]:
        capsys.readouterr()
        # 150 rows a step: a retrain flipping 8% of decisions reads over 0.15 on them about once in 1,000.
        options = ["--steps", "10,50,100", "--every", "1s", "--warmup", "0", "--min-rows", "150"]
        options += ["--database-url", log_db]
        status = registry_main(["rollout", "--model", name, "--version", version, *options])
        said = capsys.readouterr()
        return status, said.out + said.err

    with ThreadPoolExecutor(4) as pool:
        clients = [pool.submit(send, offset) for offset in range(4)]
        try:
            status, said = roll(noise)
            assert status == 1 and "step 1 FAILED: flip rate" in said and "rolled back" in said, said
            assert str(client.get_model_version_by_alias(name, "production").version) == first
            assert "canary" not in client.get_registered_model(name).aliases
            rolled_back = len(answered)
            wait_for(
                lambda: {v for _, v, _ in answered[len(answered) - 20 :]} == {first}, 30, "production only"
            )
            going = len(answered)
            status, said = roll(reseeded)
            assert status == 0, said
            assert [line.split(":")[0] for line in said.splitlines() if " passed:" in line][:3] == [
                "step 1 passed", "step 2 passed", "step 3 passed",
            ]  # fmt: skip
            finished = len(answered)
        finally:
            stop.set()
            for done in clients:
                done.result()
    assert {status for _, _, status in answered} == {200}  # Not one failed request, rollbacks included.
    assert str(client.get_model_version_by_alias(name, "production").version) == reseeded
    assert "canary" not in client.get_registered_model(name).aliases
    # Going forward, no person met the canary and then production again.
    met: set[int] = set()
    for person, version, _ in answered[going:finished]:
        assert not (person in met and version == first), f"person {person} went back to production"
        if version == reseeded:
            met.add(person)
    assert met and rolled_back > 0
    entries = json.loads(client.get_model_version(name, reseeded).tags["audit.history"])
    completed = next(entry for entry in entries if entry["action"] == "rollout completed")
    assert [step["share"] for step in completed["live"]] == [10, 50, 100]
    assert all(step["flip_rate"] <= 0.15 for step in completed["live"])
    failed = json.loads(client.get_model_version(name, noise).tags["audit.history"])[-1]
    assert failed["action"] == "rolled back from the canary at 10%" and "flip rate" in failed["reason"]
