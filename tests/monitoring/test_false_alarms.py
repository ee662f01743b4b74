"""How often traffic drawn from the holdout rows is called drift: the false-alarm rate the README states."""

from __future__ import annotations

import pytest
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient

from monitoring import reference
from monitoring.drift import Thresholds
from monitoring.drift_job import compare
from tests.monitoring.conftest import holdout_of
from training.job import TrainingOutcome

SEEDS = 20
ROWS = 200


@pytest.mark.parametrize("use_case", ["attrition", "credit"])
def test_holdout_samples_rarely_raise_an_alarm(
    request: pytest.FixtureRequest, client: MlflowClient, use_case: str
) -> None:
    trained: TrainingOutcome = request.getfixturevalue(use_case)
    model: PyFuncModel = request.getfixturevalue(f"{use_case}_model")
    ref = reference.load(client, trained.model_name, int(trained.version))
    rows = holdout_of(use_case)
    features = list(ref.features.columns)
    alarms = []
    for seed in range(SEEDS):
        sample = rows.sample(ROWS, random_state=seed).reset_index(drop=True)
        outputs = model.predict(sample[features])
        found = compare(ref, sample[features], outputs, Thresholds())
        if found.any:
            alarms.append((seed, found.drifted, found.explained, found.scores["drifted"]))
    rate = len(alarms) / SEEDS
    print(f"{use_case}: false-alarm rate {rate:.0%} over {SEEDS} samples of {ROWS} holdout rows: {alarms}")
    assert rate <= 0.1, alarms
