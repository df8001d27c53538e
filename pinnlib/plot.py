"""The figures the chapters draw again and again. Each returns a Matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .metrics import predict

__all__ = ["plot_losses", "plot_lambdas", "plot_error", "plot_solution"]


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_losses(history, ax=None, smooth: int = 1, title: str | None = None):
    """Every loss term against the step, on a log scale (optionally a moving average)."""
    fig, ax = _axes(ax)
    for i, name in enumerate(history.term_names):
        values = _smooth(history.losses[:, i], smooth)
        ax.semilogy(
            history.step[: len(values)] + (smooth - 1 if smooth > 1 else 0), values, label=name
        )
    ax.set(xlabel="step", ylabel="loss term (units of the term squared)", title=title)
    ax.legend()
    return fig


def plot_lambdas(history, ax=None, title: str | None = None, log: bool = True):
    """The balancer's weights against the step."""
    fig, ax = _axes(ax)
    for i, name in enumerate(history.term_names):
        ax.plot(history.step, history.lambdas[:, i], label=f"λ for {name}")
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="weight λ (dimensionless)", title=title)
    ax.legend()
    return fig


def plot_error(histories: dict, ax=None, against: str = "step", title: str | None = None):
    """Relative L2 error of several runs, against ``"step"`` or wall ``"time"``."""
    if against not in ("step", "time"):
        raise ValueError(f"against must be 'step' or 'time', got {against!r}")
    fig, ax = _axes(ax)
    for label, h in histories.items():
        x = h.eval_step if against == "step" else h.time
        ax.semilogy(x, h.rel_l2, label=label)
    ax.set(
        xlabel="step" if against == "step" else "training wall time (s)",
        ylabel="relative L2 error",
        title=title,
    )
    ax.legend()
    return fig


def plot_solution(
    model, pde, n: int = 128, units: str = "", coordinate_units: str = "", figsize=(13, 3.6)
):
    """Prediction, exact/reference solution and absolute error as three heatmaps (2-D PDEs).

    ``units`` labels the solution's values, ``coordinate_units`` the axes (e.g. ``"m"``).
    """
    if pde.dims != 2:
        raise ValueError("plot_solution draws 2-D problems; plot 1-D ones directly")
    grid, shape = pde.grid(n)
    pred = predict(model, grid).reshape(shape)
    exact = pde.exact(grid).reshape(shape)
    extent = [pde.lower[0], pde.upper[0], pde.lower[1], pde.upper[1]]
    fig, axes = plt.subplots(1, 3, figsize=figsize, constrained_layout=True)
    suffix = f" ({units})" if units else ""
    for ax, data, title in zip(
        axes,
        (pred, exact, np.abs(pred - exact)),
        ("PINN" + suffix, "exact / reference" + suffix, "|error|" + suffix),
    ):
        im = ax.imshow(data.T, origin="lower", extent=extent, aspect="auto", cmap="viridis")
        cu = f" ({coordinate_units})" if coordinate_units else ""
        ax.set(xlabel=pde.coordinates[0] + cu, ylabel=pde.coordinates[1] + cu, title=title)
        fig.colorbar(im, ax=ax)
    return fig


def _axes(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4), constrained_layout=True)
        return fig, ax
    return ax.figure, ax
