"""Protected attributes at training: how well the inputs stand in for them, and the opt-in reweighing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from registry_scripts import fairness
from training.features import tree_preprocessor

PROXY_FOLDS = 3
STRONG_PROXY = 0.7  # A macro ROC AUC from here on: the input tells the groups apart well.


def _macro_auc(groups: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over groups: 0.5 says nothing of the group, 1.0 names it."""
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(groups, probabilities[:, 1]))
    return float(roc_auc_score(groups, probabilities, multi_class="ovr", average="macro"))


def _predictability(model: Pipeline, X: pd.DataFrame, groups: np.ndarray, seed: int) -> float:
    folds = StratifiedKFold(n_splits=PROXY_FOLDS, shuffle=True, random_state=seed)
    return _macro_auc(groups, cross_val_predict(model, X, groups, cv=folds, method="predict_proba"))


def _proxy_model(numeric: list[str], categorical: list[str], *, alone: bool, seed: int) -> Pipeline:
    # One input alone: a shallow tree reads its whole relation to the groups at once; all together: boosting.
    model = (
        DecisionTreeClassifier(max_depth=4, min_samples_leaf=20, random_state=seed)
        if alone
        else HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    )
    return Pipeline([("preprocess", tree_preprocessor(numeric, categorical)), ("model", model)])


def proxies(
    X: pd.DataFrame,
    attributes: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    policy: fairness.FairnessPolicy,
    seed: int,
) -> dict[str, Any]:
    """Per protected attribute: how well each input, and all inputs together, predict its groups (CV)."""
    # One OpenMP thread: these fits are small, and on shared cores (CI, a busy laptop) every barrier of
    # HistGradientBoosting waits for a descheduled thread: 87 s against 18 s beside four busy processes.
    with threadpool_limits(limits=1, user_api="openmp"):
        found = {
            name: _proxies_of(X, fairness.groups(attributes[name], attribute).astype(str).to_numpy(),
                              name=name, numeric=numeric, categorical=categorical, seed=seed)
            for name, attribute in policy.attributes.items()
            if name in attributes.columns
        }  # fmt: skip
    return {"folds": PROXY_FOLDS, "strong": STRONG_PROXY, "attributes": found}


def _proxies_of(
    X: pd.DataFrame, groups: np.ndarray, *, name: str, numeric: list[str], categorical: list[str], seed: int
) -> dict[str, Any]:
    """How well each input, and all inputs together, predict one attribute's groups."""
    kept = groups != fairness.MISSING
    labels, counts = np.unique(groups[kept], return_counts=True)
    # Every group must reach every fold; the smallest ones are too few to learn or to score.
    usable = labels[counts >= 2 * PROXY_FOLDS]
    kept &= np.isin(groups, usable)
    if len(usable) < 2:
        return {"groups": usable.tolist(), "all_inputs": None, "by_input": {}}
    rows, target = X[kept], groups[kept]
    # A justified protected input is left out: it would stand in for itself.
    others = ([c for c in numeric if c != name], [c for c in categorical if c != name])
    by_input = {
        column: _predictability(
            _proxy_model(
                [column] if column in numeric else [], [column] if column in categorical else [],
                alone=True, seed=seed,
            ),
            rows[[column]], target, seed,
        )
        for column in [*others[0], *others[1]]
    }  # fmt: skip
    together = _predictability(
        _proxy_model(*others, alone=False, seed=seed), rows[[*others[0], *others[1]]], target, seed
    )
    return {
        "groups": usable.tolist(),
        "rows": int(kept.sum()),
        "all_inputs": together,
        "by_input": dict(sorted(by_input.items(), key=lambda item: -item[1])),
    }


def reweighing(attributes: pd.DataFrame, y: np.ndarray, policy: fairness.FairnessPolicy) -> np.ndarray:
    """Kamiran and Calders' weights: each (groups, outcome) cell weighs as if the two were independent.

    The cells are the rows' combined groups over every attribute of the policy (a missing value is a group
    of its own); the weights average 1, so the search's regularisation means what it did unweighted.
    """
    cells = pd.Series("", index=attributes.index, dtype=object)
    for name, attribute in policy.attributes.items():
        if name in attributes.columns:
            cells = cells + "|" + fairness.groups(attributes[name], attribute).astype(str).to_numpy()
    frame = pd.DataFrame({"cell": cells.to_numpy(), "y": y})
    n = len(frame)
    p_cell = frame.groupby("cell")["y"].transform("size") / n
    p_y = frame.groupby("y")["y"].transform("size") / n
    p_both = frame.groupby(["cell", "y"])["y"].transform("size") / n
    weights = (p_cell * p_y / p_both).to_numpy(dtype=np.float64)
    return weights / weights.mean()


def describe(found: dict[str, Any], top: int = 5) -> list[tuple[str, str]]:
    """Per attribute: the inputs together, then the `top` inputs that predict it best, as card rows."""
    rows = []
    for name, item in found["attributes"].items():
        together = item["all_inputs"]
        if together is None or math.isnan(together):
            rows.append((name, "too few rows per group to measure"))
            continue
        best = list(item["by_input"].items())[:top]
        rows.append(
            (
                name,
                f"all inputs together {together:.3f}; best single inputs "
                + ", ".join(f"{column} {auc:.3f}" for column, auc in best),
            )
        )
    return rows
