"""Shared test settings: a headless Matplotlib backend and a Hypothesis profile for TensorFlow.

TensorFlow ops run eagerly here and cost milliseconds each, so Hypothesis gets no deadline and
a modest number of examples (the unit suite must stay within a few minutes on two cores).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "pinnlib",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("pinnlib")
