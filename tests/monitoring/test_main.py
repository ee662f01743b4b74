"""`python -m monitoring` end to end: traffic through the real proxy into PostgreSQL, then reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine

from monitoring.__main__ import main
from registry_scripts import fairness
from tests.conftest import REPO, subprocess_env
from tests.serving.conftest import HEADERS, Proxy, count, split_body, wait_for

CHROMIUM = shutil.which("chromium")
SCREENSHOT = os.environ.get("MONITORING_SCREENSHOT")  # Where to keep the report's screenshot, if anywhere.


@pytest.fixture(scope="module")
def proxy(served: str, log_db: str, start_proxy: Callable[..., Proxy]) -> Proxy:
    """The module's proxy."""
    return start_proxy(served, log_db)


def send(proxy: Proxy, engine: Engine, frame: pd.DataFrame) -> list[str]:
    """Score the rows through the proxy in batches of 50; their request ids once all are logged."""
    before = count(engine, "SELECT count(*) FROM inference_predictions")
    request_ids = []
    for start in range(0, len(frame), 50):
        batch = frame.iloc[start : start + 50].drop(columns=["Attrition"])
        answer = httpx.post(f"{proxy.url}/invocations", json=split_body(batch), headers=HEADERS, timeout=60)
        assert answer.status_code == 200, answer.text
        request_ids.append(answer.headers["X-Request-ID"])
    wait_for(lambda: count(engine, "SELECT count(*) FROM inference_predictions") == before + len(frame))
    return request_ids


def shifted(holdout: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Incomes +40%, overtime for half of those without, a tenth in an unseen job role; nothing else."""
    rng = np.random.default_rng(seed)
    frame = holdout.copy()
    frame["MonthlyIncome"] = (frame["MonthlyIncome"] * 1.4).round().astype("int64")
    no_overtime = frame.index[frame["OverTime"] == "No"]
    frame.loc[rng.choice(no_overtime, len(no_overtime) // 2, replace=False), "OverTime"] = "Yes"
    frame.loc[rng.choice(frame.index, len(frame) // 10, replace=False), "JobRole"] = "Astronaut"
    return frame


def outcome_rows(holdout: pd.DataFrame, request_ids: list[str]) -> list[dict[str, Any]]:
    """The observed label of every row the steady traffic sent, by request id and row."""
    labels = holdout["Attrition"].map({1: "Yes", 0: "No"}).tolist()
    return [
        {"request_id": request_id, "row": row, "label": labels[50 * batch + row]}
        for batch, request_id in enumerate(request_ids)
        for row in range(min(50, len(labels) - 50 * batch))
    ]


def drift(served: str, log_db: str, out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the drift command; its exit status and the JSON summary it wrote (empty if none)."""
    status = main(["drift", "--model", served, "--database-url", log_db, "--out", str(out), *args])
    summaries = sorted(out.glob("*/summary.json"))
    return status, json.loads(summaries[-1].read_text()) if summaries else {}


@pytest.fixture(scope="module")
def traffic(proxy: Proxy, log_engine: Engine, holdout: pd.DataFrame) -> dict[str, Any]:
    """Holdout traffic, then (from `shift_since`) the same employees shifted."""
    steady = send(proxy, log_engine, holdout)
    time.sleep(0.05)
    shift_since = datetime.now(UTC)
    send(proxy, log_engine, shifted(holdout))
    return {"steady": steady, "until": shift_since, "shift_since": shift_since}


def test_holdout_traffic_is_not_flagged_and_the_report_is_complete(
    served: str, log_db: str, traffic: dict[str, Any], client: MlflowClient, tmp_path: Path
) -> None:
    status, summary = drift(served, log_db, tmp_path, "--until", traffic["until"].isoformat())
    assert (status, summary["drifted"]) == (0, []), summary["drifted"]
    assert summary["rows"] == 294 and summary["version"] == 1
    assert len(summary["features"]) == 27 and len(summary["explanations"]) == 27
    report = next(tmp_path.glob("*/report.html")).read_text()
    assert "No drift found" in report and report.count("data:image/png;base64,") >= 14
    assert "http://" not in report and "https://" not in report and "<script" not in report  # Offline.
    experiment = client.get_experiment_by_name("attrition")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.monitoring = 'drift'")
    run = next(r for r in runs if r.data.tags["model_name"] == served)
    assert run.data.metrics["rows"] == 294 and run.data.metrics["drifted_features"] == 0
    assert run.data.params["threshold.psi"] == "0.2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "drift_report")}
    assert artifacts == {"drift_report/report.html", "drift_report/summary.json"}


def test_shifted_traffic_is_flagged_on_exactly_the_shifted_features(
    served: str, log_db: str, traffic: dict[str, Any], tmp_path: Path
) -> None:
    status, summary = drift(served, log_db, tmp_path, "--since", traffic["shift_since"].isoformat())
    assert status == 1
    assert summary["drifted_features"] == ["JobRole", "MonthlyIncome", "OverTime"]
    job_role = next(f for f in summary["features"] if f["feature"] == "JobRole")
    assert job_role["unseen"] == pytest.approx(29 / 294)  # From the model's flags in the log.
    assert "unseen categories in 9.9% of rows" in job_role["reasons"]
    assert set(summary["explanation_drifted_features"]) <= {"JobRole", "MonthlyIncome", "OverTime"}
    report = next(tmp_path.glob("*/report.html"))
    assert "Drift: JobRole, MonthlyIncome, OverTime" in report.read_text()
    if CHROMIUM:  # The README's screenshot; .ci/run installs Debian's chromium.
        shot = tmp_path / "report.png"
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
             "--window-size=1100,1400", report.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        if SCREENSHOT:
            shutil.copy(shot, SCREENSHOT)


def test_outcomes_give_realised_performance_per_version(
    served: str, log_db: str, log_engine: Engine, traffic: dict[str, Any], *, holdout: pd.DataFrame,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rows = outcome_rows(holdout, traffic["steady"])
    bad = tmp_path / "bad.csv"
    pd.DataFrame([*rows[:3], {**rows[3], "label": "Left"}]).to_csv(bad, index=False)
    assert main(["outcomes", "--model", served, "--csv", str(bad), "--database-url", log_db]) == 2
    assert f"{bad} line 5: label: must be one of ['No', 'Yes'], got 'Left'" in capsys.readouterr().err
    assert count(log_engine, "SELECT count(*) FROM inference_outcomes") == 0  # All or nothing.
    good = tmp_path / "outcomes.csv"
    pd.DataFrame(rows).to_csv(good, index=False)
    assert main(["outcomes", "--model", served, "--csv", str(good), "--database-url", log_db]) == 0
    assert "stored 294 outcome(s)" in capsys.readouterr().out
    _, summary = drift(served, log_db, tmp_path / "reports", "--until", traffic["until"].isoformat())
    realised = summary["performance"]["1"]
    assert realised["labelled"] == 294 and realised["roc_auc"] > 0.6
    assert set(realised["holdout"]) >= {"roc_auc", "brier", "business_cost_per_case"}
    assert realised["positive_rate"] == pytest.approx(np.mean(holdout["Attrition"]))
    assert sum(bin_["rows"] for bin_ in realised["calibration"]) == 294


def test_fairness_of_logged_decisions_and_outcomes_equals_the_holdouts(
    served: str, log_db: str, traffic: dict[str, Any], *, holdout: pd.DataFrame, client: MlflowClient,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rows = outcome_rows(holdout, traffic["steady"])
    pd.DataFrame(rows).to_csv(tmp_path / "outcomes.csv", index=False)
    assert (
        main(
            ["outcomes", "--model", served, "--csv", str(tmp_path / "outcomes.csv"), "--database-url", log_db]
        )
        == 0
    )
    until = ["--until", traffic["until"].isoformat()]
    out = tmp_path / "reports"
    status = main(["fairness", "--model", served, "--database-url", log_db, "--out", str(out), *until])
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    trained = fairness.recorded(str(client.get_model_version(served, "1").run_id))
    assert trained is not None and status == (1 if trained["flagged"] else 0)
    # The steady traffic is the holdout, scored by the same version: the same figures, group by group.
    assert (summary["rows"], summary["labelled"], summary["source"]) == (294, 294, "traffic")
    assert summary["unavailable"] == [] and summary["flagged"] == trained["flagged"]
    for logged, held in zip(summary["attributes"], trained["attributes"], strict=True):
        assert logged["attribute"] == held["attribute"]
        assert logged["demographic_parity_ratio"] == pytest.approx(
            held["demographic_parity_ratio"], abs=1e-12
        )
        assert logged["equalized_odds_difference"] == pytest.approx(
            held["equalized_odds_difference"], abs=1e-12
        )
        assert [g["group"] for g in logged["groups"]] == [g["group"] for g in held["groups"]]
        for mine, theirs in zip(logged["groups"], held["groups"], strict=True):
            assert mine == pytest.approx(theirs, abs=1e-12)
    said = capsys.readouterr().out
    assert "294 rows" in said and "MaritalStatus: demographic-parity ratio" in said
    report = next(out.glob("*/report.html")).read_text()
    assert "decisions by group" in report and "data:image/png;base64," in report and "http" not in report
    experiment = client.get_experiment_by_name("attrition")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.monitoring = 'fairness' and tags.model_name = '{served}'"
    )
    assert runs and runs[0].data.tags["flagged"] == (",".join(trained["flagged"]) or "none")
    assert runs[0].data.metrics["Age.demographic_parity_ratio"] == pytest.approx(
        summary["attributes"][2]["demographic_parity_ratio"]
    )

    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "-e", "fairness",
         "--experiment-name", "attrition", "-P", f"model={served}", "-P", f"out={tmp_path / 'project'}",
         "-P", f"until={traffic['until'].isoformat()}"],
        env=subprocess_env(DATABASE_URL=log_db), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == status, done.stderr[-3000:]
    assert "Gender: demographic-parity ratio" in done.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", (datetime.now(UTC) + timedelta(days=1)).isoformat()], "a report needs at least 100"),
        (["--version", "9"], "version 9"),
        (["--psi", "-1"], "--psi: Input should be greater than 0"),
    ],
)
def test_no_report_is_a_clear_message_and_status_2(
    served: str, log_db: str, traffic: dict[str, Any], tmp_path: Path, *, capsys: pytest.CaptureFixture[str],
    args: list[str], words: str,
) -> None:  # fmt: skip
    assert drift(served, log_db, tmp_path, *args)[0] == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_mlproject_drift_entry_point(
    served: str, log_db: str, traffic: dict[str, Any], tmp_path: Path
) -> None:
    command = [
        sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "-e", "drift",
        "--experiment-name", "attrition", "-P", f"model={served}", "-P", f"out={tmp_path}",
        "-P", f"until={traffic['until'].isoformat()}",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env=subprocess_env(DATABASE_URL=log_db),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no drift" in done.stdout
    assert len(list(tmp_path.glob("*/report.html"))) == 1


def test_the_proxy_serves_the_latest_drift_summary(
    proxy: Proxy, served: str, log_db: str, traffic: dict[str, Any], tmp_path: Path
) -> None:
    _, summary = drift(served, log_db, tmp_path, "--since", traffic["shift_since"].isoformat())
    answer = httpx.get(f"{proxy.url}/drift", headers=HEADERS, timeout=30)
    assert answer.status_code == 200, answer.text
    latest = answer.json()
    assert (latest["created_at"], latest["drifted_features"]) == (
        summary["created_at"],
        summary["drifted_features"],
    )
    assert httpx.get(f"{proxy.url}/drift", timeout=30).status_code == 401


@pytest.mark.parametrize("command", [["drift"], ["outcomes", "--csv", "outcomes.csv"]])
def test_without_a_log_store_it_says_what_is_missing_and_creates_nothing(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "SERVING_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main([command[0], "--model", "attrition", *command[1:]]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL: no log store at sqlite:///serving.db" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
