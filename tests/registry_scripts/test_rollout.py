"""The rollout's state in the registry, its judgement of a step, and its command's answers to bad input."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from logstore.database import make_engine, migrate
from logstore.tables import inference_outcomes, inference_predictions, inference_requests, shadow_predictions
from registry_scripts import rollout
from registry_scripts.errors import RegistryError
from registry_scripts.live import LIMITS, Figures, compared_rows, judge, psi
from registry_scripts.live import figures as live_figures
from registry_scripts.registry import history_of
from tests.registry_scripts.test_promotion import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", "2", "--steps", "50,10,100"], "--steps: expected growing percentages"),
        (
            ["--version", "2", "--steps", "10,50"],
            "--steps: expected growing percentages above 0 that end at 100",
        ),
        (["--version", "2", "--steps", "ten"], "--steps: expected percentages like 10,50,100"),
        (["--version", "2", "--every", "10x"], "--every: not a duration such as 365d, 12h or 30m"),
        (["--version", "2", "--warmup", "soon"], "--warmup: not a duration such as 365d, 12h or 30m"),
        (["--version", "2", "--min-rows", "0"], "--min-rows: must be >= 1"),
        (["--status", "--abort"], "--status and --abort: give one of them"),
        (["--abort"], "--model: no registered model named 'nobody'"),
    ],
)
def test_bad_input_is_named_in_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = cli(capsys, "rollout", "--model", "nobody", *args)
    assert code == 2
    assert err.startswith(f"error: {message}") and "Traceback" not in err


def figures(**changes: object) -> Figures:
    """A step that passes: as many rows as errors-free requests, nothing flipped."""
    base = {
        "canary_requests": 200, "canary_errors": 0, "production_requests": 1800, "production_errors": 0,
        "canary_p99_ms": 30.0, "production_p99_ms": 25.0, "rows": 200, "flips": 10, "to_positive": 6,
        "to_negative": 4, "canary_positive": 0.20, "production_positive": 0.18, "score_psi": 0.02,
    }  # fmt: skip
    return Figures(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({}, None),
        ({"flips": 100}, "flip rate 0.500 over 0.15"),
        ({"score_psi": 0.9}, "score PSI 0.900 over 0.25"),
        ({"canary_positive": 0.45}, "positive share moved by +0.270"),
        ({"canary_errors": 10}, "error rate 0.050 against production's 0.000"),
        ({"canary_p99_ms": 80.0}, "p99 latency 3.20 times production's"),
        (
            {"rows": 0, "flips": 0, "canary_positive": None, "production_positive": None, "score_psi": None},
            None,
        ),
    ],
)
def test_a_step_is_judged_on_each_figure(changes: dict[str, object], problem: str | None) -> None:
    found = judge(figures(**changes), {**LIMITS, "max_score_psi": 0.25, "max_positive_shift": 0.10})
    assert found == [] if problem is None else any(problem in line for line in found), found


def test_psi_and_positive_share_are_reported_and_judged_only_when_the_config_sets_limits() -> None:
    assert judge(figures(score_psi=0.9, canary_positive=0.3), LIMITS) == []


def test_realised_auc_is_judged_from_enough_labelled_rows() -> None:
    worse = {"labelled": 150, "canary_auc": 0.60, "production_auc": 0.80, "auc_difference_high": -0.1}
    found = judge(figures(**worse), LIMITS)
    assert found and "realised ROC AUC -0.2000 against production's on 150 labelled rows" in found[0]
    assert judge(figures(**{**worse, "labelled": 99}), LIMITS) == []  # Fewer than min_labelled.
    assert judge(figures(**{**worse, "auc_difference_high": 0.01}), LIMITS) == []  # Could be chance.


def test_a_steps_figures_come_from_the_log_with_outcomes_where_they_arrived(tmp_path: Path) -> None:
    """Canary rows production mirrored, some labelled: flips, shares and AUC on the same rows."""
    engine = make_engine(f"sqlite:///{tmp_path}/log.db")
    migrate(engine)
    rng = np.random.default_rng(0)
    actual = rng.random(400) < 0.3
    production = np.clip(0.3 * actual + rng.normal(0.35, 0.15, 400), 0, 1)  # Ranks the outcomes well.
    canary = rng.random(400)  # Knows nothing of them.
    since = datetime.now(UTC) - timedelta(minutes=1)
    requests, predictions, shadows, outcomes = [], [], [], []
    for row in range(400):
        request_id = uuid.uuid4()
        for version in (1, 2):
            requests.append({
                "request_id": request_id if version == 2 else uuid.uuid4(), "received_at": since,
                "endpoint": "/invocations", "model_name": "m", "model_version": version,
                "model_target": "@canary" if version == 2 else "@production", "status_code": 200,
                "total_ms": 10.0 + version, "n_rows": 1,
            })  # fmt: skip
        predictions.append({
            "request_id": request_id, "row_index": 0, "score": canary[row], "prediction": "p",
            "threshold": 0.5,
        })  # fmt: skip
        shadows.append({
            "request_id": request_id, "model_version": 1, "row_index": 0, "model_name": "m",
            "shadowed_at": since, "latency_ms": 5.0, "score": production[row], "prediction": "p",
            "threshold": 0.5,
        })  # fmt: skip
        if row < 300:  # Outcomes arrive for some people only.
            outcomes.append({
                "outcome_id": uuid.uuid4(), "request_id": request_id, "row_index": 0, "label": "Yes",
                "positive": bool(actual[row]), "recorded_at": since, "source": "test",
            })  # fmt: skip
    with engine.begin() as connection:
        for table, rows in (
            (inference_requests, requests), (inference_predictions, predictions),
            (shadow_predictions, shadows), (inference_outcomes, outcomes),
        ):  # fmt: skip
            connection.execute(table.insert(), rows)
    arms = {"model": "m", "canary": 2, "production": 1, "since": since - timedelta(seconds=1)}
    assert compared_rows(engine, **arms) == 400  # type: ignore[arg-type]
    found = live_figures(engine, **arms)  # type: ignore[arg-type]
    assert (found.canary_requests, found.production_requests) == (400, 400)
    assert (found.rows, found.labelled) == (400, 300)
    assert found.flips == int(np.sum((canary >= 0.5) != (production >= 0.5)))
    assert found.canary_auc is not None and found.production_auc is not None
    assert found.canary_auc < 0.6 and found.production_auc > 0.8
    assert any("realised ROC AUC" in problem for problem in judge(found, LIMITS))
    assert "300 labelled: ROC AUC" in found.describe()
    engine.dispose()


def test_score_psi_is_zero_for_the_same_scores_and_large_for_noise() -> None:
    scores = np.random.default_rng(0).beta(2, 5, 2000)
    assert psi(scores, scores) == pytest.approx(0.0, abs=1e-12)
    assert psi(scores, np.random.default_rng(1).uniform(0, 1, 2000)) > 0.25  # type: ignore[operator]
    assert psi(scores, np.array([])) is None


def test_steps_end_at_everyone() -> None:
    assert rollout.parse_steps("10, 50,100") == [10.0, 50.0, 100.0]
    assert rollout.parse_steps("100") == [100.0]


def test_the_registry_holds_the_rollout_and_abort_ends_it(
    client: MlflowClient,
    capsys: pytest.CaptureFixture[str],
    model_name: str,
    three_in_production_first: tuple[str, str, str],
    tmp_path: Path,
) -> None:
    first, second, third = three_in_production_first
    log = f"sqlite:///{tmp_path}/log.db"
    engine = make_engine(log)
    migrate(engine)
    engine.dispose()
    plan, resumed = rollout.start(
        client, model_name, second, steps=[10, 50, 100], every=60, min_rows=5, user="t"
    )
    assert not resumed and (plan.version, plan.production, plan.share) == (int(second), int(first), 10)
    model = client.get_registered_model(model_name)
    assert model.aliases["canary"] == int(second) and model.tags[rollout.SHARE_TAG] == "10"
    assert json.loads(model.tags[rollout.PLAN_TAG])["steps"] == [10, 50, 100]
    again, resumed = rollout.start(client, model_name, second, steps=[100], every=1, min_rows=1, user="t")
    assert resumed and again == plan  # A second run resumes from the registry, whatever its options.
    with pytest.raises(RegistryError, match=f"a rollout of version {second} is in progress"):
        rollout.start(client, model_name, third, steps=[100], every=1, min_rows=1, user="t")
    assert rollout.interrupted(client, model_name, plan) is None

    client.set_registered_model_alias(model_name, "canary", third)  # By hand, in MLflow's UI.
    assert rollout.interrupted(client, model_name, plan) == f"@canary was moved by hand to version {third}"
    client.set_registered_model_alias(model_name, "canary", second)

    code, out, _ = cli(capsys, "rollout", "--model", model_name, "--status", "--database-url", log)
    assert code == 0 and f"version {second} on 10% of people (step 1 of 3: 10,50,100%)" in out
    assert "this step so far: 0 requests on the canary" in out
    code, out, _ = cli(capsys, "list", "--model", model_name)
    assert code == 0 and "@canary" in out
    assert f"rollout: version {second} as @canary on 10% of people, step 1 of 3" in out
    code, out, _ = cli(capsys, "rollout", "--model", model_name, "--abort", "--reason", "not today")
    assert code == 0 and f"production version {first} answers everyone" in out
    model = client.get_registered_model(model_name)
    assert "canary" not in model.aliases and rollout.SHARE_TAG not in model.tags
    assert rollout.PLAN_TAG not in model.tags
    entries = history_of(client.get_model_version(model_name, second).tags or {})
    assert [entry["action"] for entry in entries[-2:]] == [
        f"rollout started against production version {first}",
        "rollout aborted at 10%",
    ]
    assert entries[-1]["reason"] == "not today"
    code, _, err = cli(capsys, "rollout", "--model", model_name, "--abort")
    assert code == 2 and "no rollout" in err
    with pytest.raises(RegistryError, match="already @production"):
        rollout.start(client, model_name, first, steps=[100], every=1, min_rows=1, user="t")
