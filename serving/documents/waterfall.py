"""A SHAP waterfall plot of one logged prediction, drawn from its stored contributions."""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

OTHERS = "other features"
_PYPLOT = threading.Lock()  # pyplot's state is global, so one figure at a time.


def render_png(
    *, contributions: Mapping[str, float], base_value: float, score: float, features: Mapping[str, Any]
) -> bytes:
    """PNG bytes; features left out of a top-k explanation are shown as one "other features" bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    names = list(contributions)
    values = [float(contributions[name]) for name in names]
    clipped = min(max(score, 1e-12), 1 - 1e-12)
    rest = math.log(clipped / (1 - clipped)) - base_value - sum(values)
    if abs(rest) > 1e-6:
        names.append(OTHERS)
        values.append(rest)
    data = np.array([features.get(name, "") if name != OTHERS else "" for name in names], dtype=object)
    explanation = shap.Explanation(
        values=np.array(values), base_values=base_value, data=data, feature_names=names
    )
    with _PYPLOT:
        shap.plots.waterfall(explanation, max_display=12, show=False)
        figure = plt.gcf()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
    return buffer.getvalue()
