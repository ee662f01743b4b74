"""The chunked readers give the report all rows at once give, on real PostgreSQL, for both datasets.

Stated tolerances: counts, shares, PSI, chi-square, decision rates and the KS statistic are exact (PSI,
shares and means to float rounding, 1e-12); p-values within 1e-12 relative; the bootstrap interval is
identical (same rows, same order, same seed).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient
from scipy import stats
from sqlalchemy import select

from bench.logfill import Pool, fill, pool
from logstore.database import make_engine, migrate
from logstore.tables import inference_predictions, inference_requests
from monitoring import compare_job, drift_job, fairness_job, logged, reference
from monitoring.challenger import CompareThresholds, compare
from monitoring.drift import Thresholds, numeric_psi
from monitoring.fairness_job import FairnessThresholds
from registry_scripts import fairness
from tests.monitoring.conftest import holdout_of
from training.config import load_config
from training.job import TrainingOutcome

pytestmark = pytest.mark.integration  # Trains models and uses PostgreSQL, through `request.getfixturevalue`.
ROWS = 3_000
TOLERANCE = 1e-12


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def whole(url: str, model: str) -> pd.DataFrame:
    """Every logged row at once, as the readers before chunking loaded them."""
    engine = make_engine(url)
    query = (
        select(inference_requests.c.received_at, inference_predictions)
        .join(inference_requests, inference_requests.c.request_id == inference_predictions.c.request_id)
        .where(inference_requests.c.model_name == model)
        .order_by(inference_requests.c.received_at)
    )
    with engine.connect() as connection:
        return pd.DataFrame([dict(row._mapping) for row in connection.execute(query)])


@pytest.fixture(
    params=[("attrition", "postgresql"), ("credit", "postgresql"), ("attrition", "sqlite")], ids="-".join
)
def filled(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, TrainingOutcome, Pool]:
    """A log of 3,000 one-row requests over five days, 30% labelled, each shadowed by shuffled answers.

    On PostgreSQL (a server-side cursor) and on SQLite (the laptop's log store).
    """
    name, store = request.param
    url = request.getfixturevalue("postgres_url") if store == "postgresql" else f"sqlite:///{tmp_path}/log.db"
    trained: TrainingOutcome = request.getfixturevalue(name)
    model: PyFuncModel = request.getfixturevalue(f"{name}_model")
    config = load_config(name)
    rows = holdout_of(name).head(300)
    positive = rows.pop(config.data.target).to_numpy(dtype=bool)
    found = pool(model, rows, model_name=trained.model_name, version=int(trained.version), positive=positive)
    shuffled = list(np.random.default_rng(1).permutation(found.answers))
    found = Pool(**{**found.__dict__, "shadow_version": int(trained.version), "shadow_answers": shuffled})
    engine = make_engine(url)
    migrate(engine)
    start = datetime(2026, 11, 1, 9, tzinfo=UTC)
    fill(engine, found, rows=ROWS, start=start, span=timedelta(days=5), id_column=config.data.id_column)
    engine.dispose()
    monkeypatch.setattr(logged, "CHUNK_ROWS", 257)  # Many chunks, requests across their edges.
    return url, trained, found


def test_drift_in_chunks_equals_the_whole_computation(
    filled: tuple[str, TrainingOutcome, Pool], client: MlflowClient, tmp_path: Path
) -> None:
    url, trained, _ = filled
    model, version = trained.model_name, int(trained.version)
    engine = make_engine(url)
    summary = drift_job.run(
        client, engine, model=model, version=version, since=None, until=None, out=tmp_path,
        thresholds=Thresholds(),
    ).summary  # fmt: skip
    rows = whole(url, model)
    ref = reference.load(client, model, version)
    assert summary["rows"] == len(rows) == ROWS
    current = pd.DataFrame.from_records(list(rows["input"]), columns=list(ref.features.columns))
    unseen = Counter(name for flags in rows["unseen_categories"] for name in flags or [])
    for found in summary["features"]:
        name = found["feature"]
        ref_values, cur_values = ref.features[name].dropna(), current[name].dropna()
        assert found["missing_current"] == current[name].isna().mean()
        assert found["unseen"] == pytest.approx(unseen[name] / ROWS, rel=TOLERANCE, abs=TOLERANCE)
        if found["kind"] == "numeric":
            ks = stats.ks_2samp(ref_values.to_numpy(float), cur_values.to_numpy(float))
            psi = numeric_psi(ref_values.to_numpy(float), cur_values.to_numpy(float), 10)
        else:
            counts = pd.concat([ref_values.astype(str).value_counts(), cur_values.astype(str).value_counts()],
                               axis=1).fillna(0).to_numpy()  # fmt: skip
            ks = stats.chi2_contingency(counts[counts.sum(axis=1) > 0])
            psi = _psi(counts[:, 0] / counts[:, 0].sum(), counts[:, 1] / counts[:, 1].sum())
        assert found["statistic"] == pytest.approx(float(ks.statistic), rel=TOLERANCE, abs=TOLERANCE), name
        assert found["p_value"] == pytest.approx(float(ks.pvalue), rel=TOLERANCE, abs=TOLERANCE), name
        assert found["psi"] == pytest.approx(psi, rel=TOLERANCE, abs=TOLERANCE), name
    scores = rows["score"].to_numpy(float)
    ks = stats.ks_2samp(ref.scores, scores)
    assert summary["scores"]["ks_statistic"] == ks.statistic
    assert summary["scores"]["p_value"] == pytest.approx(ks.pvalue, rel=TOLERANCE, abs=TOLERANCE)
    assert summary["scores"]["current_mean"] == pytest.approx(scores.mean(), rel=TOLERANCE, abs=TOLERANCE)
    assert summary["scores"]["psi"] == pytest.approx(
        numeric_psi(ref.scores, scores, 10), rel=TOLERANCE, abs=TOLERANCE
    )
    features = list(ref.shap_mean_abs)
    mean_abs = np.abs(np.array([[c[f] for f in features] for c in rows["contributions"]])).mean(axis=0)
    shares = {e["feature"]: e["current_share"] for e in summary["explanations"]}
    assert [shares[f] for f in features] == pytest.approx(
        list(mean_abs / mean_abs.sum()), rel=TOLERANCE, abs=TOLERANCE
    )
    days = pd.to_datetime(rows["received_at"], utc=True).dt.floor("D").value_counts().sort_index()
    assert [p["rows"] for p in summary["over_time"]] == days.tolist()  # Five days and more: daily.
    assert summary["window"]["first"] == pd.Timestamp(rows["received_at"].min()).isoformat()
    labelled = summary["performance"][str(version)]["labelled"]
    assert 0.25 * ROWS < labelled < 0.35 * ROWS


def test_compare_in_chunks_equals_the_whole_computation(
    filled: tuple[str, TrainingOutcome, Pool], client: MlflowClient, tmp_path: Path
) -> None:
    url, trained, _ = filled
    model = trained.model_name
    engine = make_engine(url)
    thresholds = CompareThresholds(bootstrap=200)
    summary = compare_job.run(
        client, engine, model=model, since=None, until=None, out=tmp_path, thresholds=thresholds
    ).summary
    rows = pd.concat(
        logged.shadowed(engine, model_name=model, champion=int(trained.version),
                        challenger=int(trained.version), since=None, until=None),
        ignore_index=True,
    )  # fmt: skip
    facts = reference.facts(client, model, int(trained.version))
    expected = compare(rows, costs=facts.costs, thresholds=thresholds)
    assert len(rows) == ROWS and summary["rows"] == ROWS
    for key in ("decisions", "top_reasons", "latency_ms", "flipped", "labelled", "verdict"):
        assert summary[key] == expected[key], key
    assert summary["realised"] == expected["realised"]  # The same bootstrap: same rows, order and seed.
    flagged = rows["score"] >= rows["threshold"]
    shadow = rows["shadow_score"] >= rows["shadow_threshold"]
    assert summary["decisions"]["flip_rate"] == float(np.mean(flagged != shadow))
    ks = stats.ks_2samp(rows["score"].to_numpy(float), rows["shadow_score"].to_numpy(float))
    assert summary["scores"]["ks"] == ks.statistic
    assert summary["scores"]["psi"] == pytest.approx(expected["scores"]["psi"], rel=TOLERANCE, abs=TOLERANCE)


def test_fairness_in_chunks_equals_the_whole_computation(
    filled: tuple[str, TrainingOutcome, Pool], client: MlflowClient, tmp_path: Path
) -> None:
    url, trained, _ = filled
    model, version = trained.model_name, int(trained.version)
    engine = make_engine(url)
    summary = fairness_job.run(
        client, engine, model=model, version=version, since=None, until=None, out=tmp_path,
        thresholds=FairnessThresholds(),
    ).summary  # fmt: skip
    rows = pd.concat(
        logged.predictions(engine, model_name=model, version=version, since=None, until=None,
                           columns=fairness_job.LOGGED),
        ignore_index=True,
    )  # fmt: skip
    trained_policy = fairness.recorded(reference.facts(client, model, version).run_id)
    assert trained_policy is not None
    policy = fairness.FairnessPolicy.model_validate(trained_policy["policy"])
    records = pd.DataFrame.from_records(list(rows["input"]))
    positive = reference.facts(client, model, version).labels[1]
    expected: dict[str, Any] = fairness.assess(
        records[[name for name in policy.attributes if name in records]],
        decisions=(rows["prediction"] == positive).to_numpy(np.int64),
        scores=rows["score"].to_numpy(float),
        actual=pd.to_numeric(rows["actual"]).to_numpy(float),
        policy=policy,
        source="traffic",
    )
    assert summary["rows"] == ROWS and summary["labelled"] == expected["labelled"]
    assert summary["attributes"] == expected["attributes"] and summary["flagged"] == expected["flagged"]
