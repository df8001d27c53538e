"""The figures the chapters draw again and again. Each returns a Matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

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
    model,
    pde,
    n: int = 128,
    units: str = "",
    coordinate_units: str = "",
    figsize=(8.4, 7.2),
    fontsize: float = 11,
):
    """Prediction, exact/reference solution and signed error ``PINN - exact`` as heatmaps (2-D).

    The prediction and the exact solution share one colour scale and one colour bar, so that
    equal colours mean equal values; the error gets its own, symmetric about zero (a diverging
    map: red where the PINN is too high, blue where it is too low). The panels sit two to a
    row, with ``fontsize``-point tick labels, so that the figure stays readable when a phone
    shrinks it to the width of its screen. ``units`` labels the solution's values,
    ``coordinate_units`` the axes (e.g. ``"m"``). Introduced in the chapter "The Helmholtz
    equation".
    """
    if pde.dims != 2:
        raise ValueError("plot_solution draws 2-D problems; plot 1-D ones directly")
    grid, shape = pde.grid(n)
    pred = predict(model, grid).reshape(shape)
    exact = pde.exact(grid).reshape(shape)
    error = pred - exact
    extent = [pde.lower[0], pde.upper[0], pde.lower[1], pde.upper[1]]
    suffix = f" ({units})" if units else ""
    cu = f" ({coordinate_units})" if coordinate_units else ""

    fig = plt.figure(figsize=figsize, layout="constrained")
    # Two panels in the top row; the error, as wide as one of them, centred below.
    rows = fig.add_gridspec(2, 1)
    top = rows[0].subgridspec(1, 2)
    pair = [fig.add_subplot(top[0, 0]), fig.add_subplot(top[0, 1])]
    err_ax = fig.add_subplot(rows[1].subgridspec(1, 3, width_ratios=[0.5, 1.0, 0.5])[0, 1])

    low = float(min(np.nanmin(pred), np.nanmin(exact)))
    high = float(max(np.nanmax(pred), np.nanmax(exact)))
    if not high > low:  # a constant field: give the colour scale some width
        low, high = low - 0.5, high + 0.5
    bound = float(np.nanmax(np.abs(error)))
    bound = bound if bound > 0 else 1.0
    images = []
    for ax, data, title, scale in (
        (pair[0], pred, "PINN" + suffix, dict(cmap="viridis", vmin=low, vmax=high)),
        (pair[1], exact, "exact / reference" + suffix, dict(cmap="viridis", vmin=low, vmax=high)),
        (
            err_ax,
            error,
            "error: PINN − exact" + suffix,
            dict(cmap="RdBu_r", vmin=-bound, vmax=bound),
        ),
    ):
        images.append(ax.imshow(data.T, origin="lower", extent=extent, aspect="auto", **scale))
        ax.set_xlabel(pde.coordinates[0] + cu, fontsize=fontsize)
        ax.set_ylabel(pde.coordinates[1] + cu, fontsize=fontsize)
        ax.set_title(title, fontsize=fontsize + 1)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(labelsize=fontsize)
    for image, axes in ((images[0], list(pair)), (images[2], err_ax)):
        bar = fig.colorbar(image, ax=axes)
        bar.locator = MaxNLocator(5)
        bar.update_ticks()
        bar.ax.tick_params(labelsize=fontsize)
        bar.ax.yaxis.get_offset_text().set_fontsize(fontsize)
    return fig


def _axes(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4), constrained_layout=True)
        return fig, ax
    return ax.figure, ax
