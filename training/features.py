"""Preprocessing pipelines built only from scikit-learn parts, so the model unpickles anywhere."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def _encoder() -> OneHotEncoder:
    # Unseen categories become all-zero rows, so they still get a score.
    return OneHotEncoder(handle_unknown="ignore", sparse_output=False)


def tree_preprocessor(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Numbers pass through (XGBoost handles missing values); categories are one-hot encoded."""
    return ColumnTransformer(
        [("num", "passthrough", numeric), ("cat", _encoder(), categorical)],
        verbose_feature_names_out=False,
    )


def linear_preprocessor(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Imputed, scaled numbers and one-hot categories for the logistic-regression baseline."""
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    return ColumnTransformer([("num", numbers, numeric), ("cat", _encoder(), categorical)])


def encoded_to_raw(preprocessor: ColumnTransformer, numeric: list[str], categorical: list[str]) -> np.ndarray:
    """Index of the raw feature (numeric first, then categorical) behind each encoded column."""
    encoder: OneHotEncoder = preprocessor.named_transformers_["cat"] if categorical else None
    owners = list(range(len(numeric)))
    if encoder is not None:
        for position, categories in enumerate(encoder.categories_):
            owners.extend([len(numeric) + position] * len(categories))
    width = len(preprocessor.get_feature_names_out())
    if len(owners) != width:
        raise RuntimeError(f"encoded width {width} does not match the {len(owners)} mapped columns")
    return np.asarray(owners, dtype=np.int64)
