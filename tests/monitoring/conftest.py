"""Fixtures of the monitoring tests: the serving fixtures, and the attrition holdout rows."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from tests.serving.conftest import log_db, log_engine, served, start_proxy, workdir
from training.config import load_config
from training.data import load_dataset

__all__ = ["log_db", "log_engine", "served", "start_proxy", "workdir"]


def holdout_of(name: str) -> pd.DataFrame:
    """The rows training held out: id, features, target as 0/1, and the protected attributes clients send."""
    config = load_config(name)
    dataset = load_dataset(config)
    monitored = [feature.name for feature in dataset.monitored]
    frame = pd.concat([dataset.ids, dataset.features, dataset.sensitive[monitored]], axis=1)
    _, rows, _, target = train_test_split(
        frame,
        dataset.target,
        test_size=config.search.holdout_fraction,
        stratify=dataset.target,
        random_state=config.search.seed,
    )
    return rows.assign(**{config.data.target: target}).reset_index(drop=True)


@pytest.fixture(scope="session")
def holdout() -> pd.DataFrame:
    """The attrition holdout rows."""
    return holdout_of("attrition")
