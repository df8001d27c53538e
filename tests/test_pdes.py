"""Tests of the benchmark problems: residuals, exact/reference solutions, sampling, validation.

Residuals are checked two ways: a Keras model that returns the exact solution drives every
term to (numerically) zero, and a model returning a known *non*-solution gives the residuals
computed by hand in NumPy (which catches mixed-up derivative columns and boundary
conditions that the exact solution would satisfy by accident).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import pinnlib
from pinnlib import Burgers, Helmholtz, Kirchhoff, Poisson1D, cole_hopf

PI = math.pi
EDGES = ("left", "right", "bottom", "top")


class Closed(keras.Model):
    """A float64 Keras model whose output is ``fn(columns...)`` in TensorFlow ops."""

    def __init__(self, fn):
        super().__init__(dtype="float64")
        self.fn = fn

    def call(self, x):
        cols = [x[:, i : i + 1] for i in range(x.shape[-1])]
        return self.fn(*cols)


def sample64(pde, n_interior=64, n_boundary=32, seed=0):
    return pde.sample(n_interior, n_boundary, tf.random.Generator.from_seed(seed), "float64")


def residual_arrays(pde, model, pts, mode="auto"):
    return {k: v.numpy() for k, v in pde.residuals(model, pts, mode=mode).items()}


# -- the exact solution makes every residual vanish ------------------------------------------------
def test_poisson_exact_solution_has_zero_residuals():
    pde = Poisson1D()
    model = Closed(lambda x: tf.sin(PI * x))
    pts = sample64(pde)
    res = residual_arrays(pde, model, pts)
    assert set(res) == {"L_f", "L_b"}
    np.testing.assert_allclose(res["L_f"], 0.0, atol=1e-12 * PI**2)
    np.testing.assert_allclose(res["L_b"], 0.0, atol=1e-15)
    assert all(float(v) < 1e-24 for v in pde.losses(model, pts))


@pytest.mark.parametrize("k,a1,a2", [(1.0, 1, 4), (3.0, 2, 1)])
def test_helmholtz_exact_solution_has_zero_residuals(k, a1, a2):
    pde = Helmholtz(k=k, a1=a1, a2=a2)
    model = Closed(lambda x, y: tf.sin(a1 * PI * x) * tf.sin(a2 * PI * y))
    res = residual_arrays(pde, model, sample64(pde))
    scale = (a1**2 + a2**2) * PI**2  # size of the Laplacian term
    np.testing.assert_allclose(res["L_f"], 0.0, atol=1e-12 * scale)
    np.testing.assert_allclose(res["L_b"], 0.0, atol=1e-14)


@pytest.mark.parametrize("boundary", ["grouped", "separate"])
@pytest.mark.parametrize("width,height", [(10.0, 10.0), (10.0, 6.0)])
def test_kirchhoff_exact_solution_has_zero_residuals(boundary, width, height):
    pde = Kirchhoff(width=width, height=height, boundary=boundary)
    s = 1.0 / width**2 + 1.0 / height**2
    peak = 0.015 / (PI**4 * pde.D * s**2)  # Navier's amplitude, written out here
    model = Closed(lambda x, y: peak * tf.sin(PI * x / width) * tf.sin(PI * y / height))
    res = residual_arrays(pde, model, sample64(pde))
    names = (
        ("L_f", "L_b0", "L_b2")
        if boundary == "grouped"
        else ("L_f", *(f"w_{e}" for e in EDGES), *(f"M_{e}" for e in EDGES))
    )
    assert tuple(res) == names == pde.term_names
    np.testing.assert_allclose(res["L_f"], 0.0, atol=1e-10 * 0.015)  # load units
    for name in names[1:]:
        np.testing.assert_allclose(res[name], 0.0, atol=1e-12, err_msg=name)


def test_kirchhoff_constants():
    pde = Kirchhoff()
    assert pde.D == pytest.approx(20.8333, rel=1e-4)
    assert pde.D == pytest.approx(30000 * 0.2**3 / (12 * (1 - 0.2**2)), rel=1e-14)
    assert pde.peak == pytest.approx(0.018479, rel=1e-4)
    centre = pde.exact(np.array([[5.0, 5.0]]))
    assert centre.shape == (1, 1)
    assert centre[0, 0] == pytest.approx(pde.peak, rel=1e-14)
    grid, _ = pde.grid(65)
    assert np.max(pde.exact(grid)) == pytest.approx(pde.peak, rel=1e-14)  # the centre is a node
    np.testing.assert_allclose(
        pde.exact(np.array([[0.0, 3.0], [10.0, 7.0], [4.0, 0.0]])), 0.0, atol=1e-15 * pde.peak
    )


def test_kirchhoff_in_millimetres_and_kilonewtons():
    """The same plate in mm and kN: D in kN mm and the peak in mm (18.479 mm)."""
    mm = Kirchhoff(width=10_000.0, height=10_000.0, E=30.0, thickness=200.0, p0=1.5e-5)
    assert mm.D == pytest.approx(20.8333e6, rel=1e-4)
    assert mm.peak == pytest.approx(18.479, rel=1e-4)
    assert mm.peak == pytest.approx(1000 * Kirchhoff().peak, rel=1e-12)


# -- a known non-solution gives the hand-computed residuals -------------------------------------
A, B, C = 1.3, 0.7, 0.4  # g(x, y) = sin(A x + C) exp(B y): every derivative in closed form


def g_tf(x, y):
    return tf.sin(A * x + C) * tf.exp(B * y)


def g_np(x, y):
    return np.sin(A * x + C) * np.exp(B * y)


def test_poisson_residuals_of_a_known_function():
    pde = Poisson1D()
    model = Closed(lambda x: tf.sin(A * x + C))
    pts = sample64(pde)
    res = residual_arrays(pde, model, pts)
    x = pts["interior"].numpy()
    np.testing.assert_allclose(
        res["L_f"], -(A**2) * np.sin(A * x + C) + PI**2 * np.sin(PI * x), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(res["L_b"], np.sin(A * np.array([[0.0], [1.0]]) + C), rtol=1e-12)


def test_helmholtz_residuals_of_a_known_function():
    pde = Helmholtz(k=2.0, a1=1, a2=3)
    pts = sample64(pde)
    res = residual_arrays(pde, Closed(g_tf), pts)
    x, y = pts["interior"].numpy().T[:, :, None]
    g = g_np(x, y)
    q = (4.0 - PI**2 - 9 * PI**2) * np.sin(PI * x) * np.sin(3 * PI * y)
    np.testing.assert_allclose(
        res["L_f"], (-(A**2) + B**2) * g + 4.0 * g - q, rtol=1e-10, atol=1e-10
    )
    bx, by = pts["boundary"].numpy().T[:, :, None]
    np.testing.assert_allclose(res["L_b"], g_np(bx, by), rtol=1e-12)


@pytest.mark.parametrize("boundary", ["grouped", "separate"])
def test_kirchhoff_residuals_of_a_known_function_on_a_non_square_plate(boundary):
    """W = 10, H = 6 and g with different x and y rates: a swapped column shows."""
    pde = Kirchhoff(width=10.0, height=6.0, nu=0.3, boundary=boundary)
    D, nu = pde.D, 0.3
    pts = sample64(pde)
    res = residual_arrays(pde, Closed(g_tf), pts)
    x, y = pts["interior"].numpy().T[:, :, None]
    g = g_np(x, y)
    # g_xxxx = A^4 g, g_yyyy = B^4 g, g_xxyy = -A^2 B^2 g.
    load = 0.015 * np.sin(PI * x / 10.0) * np.sin(PI * y / 6.0)
    want_f = D * (A**4 - 2 * A**2 * B**2 + B**4) * g - load
    np.testing.assert_allclose(res["L_f"], want_f, rtol=1e-9, atol=1e-9 * D)
    w, m = {}, {}
    for e in EDGES:
        ex, ey = pts[e].numpy().T[:, :, None]
        ge = g_np(ex, ey)
        gxx, gyy = -(A**2) * ge, B**2 * ge
        w[e] = ge
        m[e] = -D * (gxx + nu * gyy) if e in ("left", "right") else -D * (nu * gxx + gyy)
    if boundary == "grouped":
        np.testing.assert_allclose(res["L_b0"], np.concatenate([w[e] for e in EDGES]), rtol=1e-12)
        np.testing.assert_allclose(res["L_b2"], np.concatenate([m[e] for e in EDGES]), rtol=1e-9)
    else:
        for e in EDGES:
            np.testing.assert_allclose(res[f"w_{e}"], w[e], rtol=1e-12, err_msg=e)
            np.testing.assert_allclose(res[f"M_{e}"], m[e], rtol=1e-9, err_msg=e)


def test_burgers_residuals_of_a_known_function():
    pde = Burgers()
    pts = sample64(pde)
    res = residual_arrays(pde, Closed(g_tf), pts)
    x, t = pts["interior"].numpy().T[:, :, None]
    g = g_np(x, t)
    g_x = A * np.cos(A * x + C) * np.exp(B * t)
    want = B * g + g * g_x - pde.nu * (-(A**2) * g)
    np.testing.assert_allclose(res["L_f"], want, rtol=1e-12, atol=1e-14)
    x0 = pts["initial"].numpy()[:, :1]
    np.testing.assert_allclose(
        res["L_ic"], np.sin(A * x0 + C) + np.sin(PI * x0), rtol=1e-12, atol=1e-14
    )
    wx, wt = pts["walls"].numpy().T[:, :, None]
    np.testing.assert_allclose(res["L_bc"], g_np(wx, wt), rtol=1e-12)


@pytest.mark.parametrize(
    "pde,inputs,input_range",
    [
        (Poisson1D(), 1, None),
        (Helmholtz(), 2, None),
        (Kirchhoff(width=10.0, height=6.0), 2, ([0.0, 0.0], [10.0, 6.0])),
        (Burgers(), 2, None),
    ],
)
def test_forward_and_tape_residuals_agree(pde, inputs, input_range):
    model = pinnlib.mlp(inputs, 2, 8, seed=0, dtype="float64", input_range=input_range)
    pts = sample64(pde, 16, 8)
    fwd = residual_arrays(pde, model, pts, mode="forward")
    tape = residual_arrays(pde, model, pts, mode="tape")
    for name in pde.term_names:
        scale = max(np.max(np.abs(tape[name])), 1e-30)
        np.testing.assert_allclose(fwd[name], tape[name], rtol=0, atol=1e-10 * scale, err_msg=name)
    losses = pde.losses(model, pts)
    assert len(losses) == pde.num_terms
    for name, loss in zip(pde.term_names, losses):
        assert float(loss) == pytest.approx(np.mean(tape[name] ** 2), rel=1e-8)


# -- Burgers' reference solution ---------------------------------------------------------------
NU = 0.01 / PI


def fd_residual(x, t, h=1e-4):
    u = cole_hopf
    U = u(x, t)
    u_t = (u(x, t + h) - u(x, t - h)) / (2 * h)
    u_x = (u(x + h, t) - u(x - h, t)) / (2 * h)
    u_xx = (u(x + h, t) - 2 * U + u(x - h, t)) / h**2
    terms = np.abs(u_t) + np.abs(U * u_x) + np.abs(NU * u_xx)
    return u_t + U * u_x - NU * u_xx, terms


def test_cole_hopf_satisfies_burgers_by_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.98, 0.98, 500)
    t = rng.uniform(0.1, 1.0, 500)
    x[:20] = rng.uniform(-0.01, 0.01, 20)  # inside the shock too
    res, terms = fd_residual(x, t)
    assert np.max(terms) > 50  # the shock is steep: the terms are large there
    assert np.all(np.abs(res) <= 1e-3 * np.maximum(terms, 1.0))


def test_cole_hopf_initial_condition_walls_and_symmetry():
    x = np.linspace(-1, 1, 41)
    np.testing.assert_array_equal(cole_hopf(x, np.zeros_like(x)), -np.sin(PI * x))
    t = np.linspace(0.0, 1.0, 21)
    np.testing.assert_allclose(cole_hopf(np.ones_like(t), t), 0.0, atol=1e-12)
    np.testing.assert_allclose(cole_hopf(-np.ones_like(t), t), 0.0, atol=1e-12)
    # Continuous in t at t = 0 and odd in x.
    np.testing.assert_allclose(cole_hopf(x, np.full_like(x, 1e-6)), -np.sin(PI * x), atol=1e-4)
    X, T = np.meshgrid(np.linspace(-1, 1, 33), np.linspace(0.05, 1, 9))
    np.testing.assert_allclose(cole_hopf(-X, T), -cole_hopf(X, T), atol=1e-12)
    assert cole_hopf(X, T).shape == X.shape


def test_cole_hopf_steepest_gradient_matches_basdevant():
    """Basdevant et al. (1986): max |u_x| = 152.00516 at x = 0, t = 1.6037 / pi."""
    t, h = 1.6037 / PI, 1e-6
    u_x = (cole_hopf(h, t) - cole_hopf(-h, t)) / (2 * h)
    assert u_x == pytest.approx(-152.00516, rel=1e-6)


def test_cole_hopf_quadrature_converges():
    X, T = np.meshgrid(np.linspace(-1, 1, 101), np.linspace(0.05, 1, 20))
    np.testing.assert_allclose(cole_hopf(X, T, nodes=100), cole_hopf(X, T, nodes=200), atol=1e-4)


def test_cole_hopf_nodes():
    # NumPy's Gauss-Hermite nodes overflow past about 370: a request there must not silently
    # return NaN. Up to 300 nodes are accepted and agree with the default 200.
    x, t = np.array([-0.5, 0.0, 0.3]), np.array([0.2, 0.5, 0.9])
    np.testing.assert_allclose(cole_hopf(x, t, nodes=300), cole_hopf(x, t), atol=1e-10)
    for nodes in (400, 301, 1, 0, -3, 2.5, True):
        with pytest.raises(ValueError, match="nodes"):
            cole_hopf(x, t, nodes=nodes)


def test_cole_hopf_validation():
    with pytest.raises(ValueError, match="nu"):
        cole_hopf(0.0, 0.5, nu=0.0)
    with pytest.raises(ValueError, match="t must be"):
        cole_hopf(0.0, -0.1)


def test_burgers_exact_uses_cole_hopf():
    pde = Burgers()
    pts = np.array([[0.2, 0.0], [0.5, 0.5], [-0.3, 0.9]])
    got = pde.exact(pts)
    assert got.shape == (3, 1)
    np.testing.assert_allclose(got[:, 0], cole_hopf(pts[:, 0], pts[:, 1]))
    assert got[0, 0] == pytest.approx(-math.sin(PI * 0.2), rel=1e-15)


# -- sampling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_helmholtz_sampling(dtype):
    pde = Helmholtz()
    pts = pde.sample(50, 22, tf.random.Generator.from_seed(1), dtype)
    assert set(pts) == {"interior", "boundary"}
    inner, edge = pts["interior"].numpy(), pts["boundary"].numpy()
    assert inner.shape == (50, 2) and edge.shape == (22, 2)
    assert pts["interior"].dtype == tf.as_dtype(dtype) == pts["boundary"].dtype
    assert np.all(np.abs(inner) < 1.0)
    on_edge = np.isclose(np.abs(edge), 1.0, rtol=0, atol=0)  # exactly on an edge
    assert np.all(on_edge.any(axis=1))
    assert np.all(np.abs(edge) <= 1.0)
    # Every edge is represented: x = -1, x = 1, y = -1, y = 1.
    for col in (0, 1):
        for side in (-1.0, 1.0):
            assert np.sum(edge[:, col] == side) >= 5


@pytest.mark.parametrize("width,height", [(10.0, 10.0), (10.0, 6.0)])
def test_kirchhoff_sampling(width, height):
    pde = Kirchhoff(width=width, height=height)
    pts = pde.sample(40, 10, tf.random.Generator.from_seed(2), "float32")
    assert set(pts) == {"interior", *EDGES}
    inner = pts["interior"].numpy()
    assert inner.shape == (40, 2)
    assert np.all((inner >= 0) & (inner[:, 0] <= width)[:, None] & (inner[:, 1] <= height)[:, None])
    counts = {e: pts[e].shape[0] for e in EDGES}
    assert sum(counts.values()) == 10 and min(counts.values()) == 2
    fixed = {"left": (0, 0.0), "right": (0, width), "bottom": (1, 0.0), "top": (1, height)}
    for e, (col, value) in fixed.items():
        p = pts[e].numpy()
        np.testing.assert_array_equal(p[:, col], np.float32(value))
        free = p[:, 1 - col]
        assert np.all((free >= 0) & (free <= (height if col == 0 else width)))


def test_burgers_sampling():
    pde = Burgers()
    pts = pde.sample(30, 21, tf.random.Generator.from_seed(3), "float64")
    assert set(pts) == {"interior", "initial", "walls"}
    inner, ic, walls = (pts[k].numpy() for k in ("interior", "initial", "walls"))
    assert inner.shape == (30, 2) and ic.shape[0] + walls.shape[0] == 21
    assert np.all(
        (inner[:, 0] >= -1) & (inner[:, 0] <= 1) & (inner[:, 1] >= 0) & (inner[:, 1] <= 1)
    )
    np.testing.assert_array_equal(ic[:, 1], 0.0)
    assert np.all(np.abs(ic[:, 0]) <= 1)
    assert set(np.unique(walls[:, 0])) == {-1.0, 1.0}
    assert np.all((walls[:, 1] >= 0) & (walls[:, 1] <= 1))


def test_poisson_sampling():
    pts = Poisson1D().sample(20, 2, tf.random.Generator.from_seed(0), "float32")
    assert pts["interior"].shape == (20, 1)
    assert np.all((pts["interior"].numpy() >= 0) & (pts["interior"].numpy() <= 1))
    np.testing.assert_array_equal(pts["boundary"].numpy(), [[0.0], [1.0]])


@pytest.mark.parametrize("pde", [Poisson1D(), Helmholtz(), Kirchhoff(), Burgers()], ids=repr)
def test_same_seed_same_points(pde):
    a = pde.sample(16, 8, tf.random.Generator.from_seed(7))
    b = pde.sample(16, 8, tf.random.Generator.from_seed(7))
    c = pde.sample(16, 8, tf.random.Generator.from_seed(8))
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
    assert not np.array_equal(a["interior"].numpy(), c["interior"].numpy())


def test_sampling_inside_tf_function():
    pde = Helmholtz()
    gen = tf.random.Generator.from_seed(5)

    @tf.function
    def draw():
        return pde.sample(8, 8, gen)

    first, second = draw(), draw()
    assert not np.array_equal(first["interior"].numpy(), second["interior"].numpy())
    assert np.all(np.abs(second["boundary"].numpy()).max(axis=1) == 1.0)


def test_grid():
    pts, shape = Kirchhoff(width=10.0, height=6.0).grid(5)
    assert pts.shape == (25, 2) and shape == (5, 5)
    assert pts.min(axis=0).tolist() == [0.0, 0.0] and pts.max(axis=0).tolist() == [10.0, 6.0]
    one, shape1 = Poisson1D().grid(11)
    assert one.shape == (11, 1) and shape1 == (11,)


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: Helmholtz(k=0.0), "k"),
        (lambda: Helmholtz(k=-1.0), "k"),
        (lambda: Helmholtz(a1=0.0), "a1"),
        (lambda: Helmholtz(a2=float("nan")), "a2"),
        (lambda: Burgers(nu=0.0), "nu"),
        (lambda: Burgers(nu=-0.01), "nu"),
        (lambda: Kirchhoff(nu=0.5), "nu"),
        (lambda: Kirchhoff(nu=-0.1), "nu"),
        (lambda: Kirchhoff(nu=float("nan")), "nu"),
        (lambda: Kirchhoff(width=0.0), "width"),
        (lambda: Kirchhoff(height=-6.0), "height"),
        (lambda: Kirchhoff(E=0.0), "E"),
        (lambda: Kirchhoff(thickness=0.0), "thickness"),
        (lambda: Kirchhoff(p0=0.0), "p0"),
        (lambda: Kirchhoff(boundary="both"), "boundary"),
    ],
)
def test_constructor_validation(make, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        make()


def test_kirchhoff_accepts_numpy_poisson_ratio():
    # Every other parameter accepts NumPy scalars; nu = np.float32(0.25) is a valid ratio too.
    pde = Kirchhoff(nu=np.float32(0.25))
    assert pde.nu == pytest.approx(0.25)
    assert Kirchhoff(nu=np.float64(0.25)).D == pytest.approx(pde.D, rel=1e-7)


@pytest.mark.parametrize("pde", [Poisson1D(), Helmholtz(), Kirchhoff(), Burgers()], ids=repr)
def test_sample_size_validation(pde):
    with pytest.raises(ValueError, match="n_interior"):
        pde.sample(0, 8)
    with pytest.raises(ValueError, match="n_interior"):
        pde.sample(2.5, 8)
    with pytest.raises(ValueError, match="n_boundary"):
        pde.sample(8, 0)


def test_check_model():
    pde = Helmholtz()
    pde.check_model(pinnlib.mlp(2, 1, 4, seed=0))
    with pytest.raises(ValueError, match="1 output"):
        pde.check_model(pinnlib.mlp(2, 1, 4, outputs=2, seed=0))
    with pytest.raises(ValueError, match="inputs"):
        pde.check_model(pinnlib.mlp(3, 1, 4, seed=0))
    with pytest.raises(ValueError, match="inputs"):
        Poisson1D().check_model(pinnlib.mlp(2, 1, 4, seed=0))
    with pytest.raises(ValueError, match="1 output"):
        pde.losses(pinnlib.mlp(2, 1, 4, outputs=2, seed=0), pde.sample(4, 4))


@pytest.mark.parametrize("pde", [Poisson1D(), Helmholtz(), Kirchhoff(), Burgers()], ids=repr)
def test_exact_rejects_wrong_shapes(pde):
    with pytest.raises(ValueError, match="shape"):
        pde.exact(np.zeros((5, pde.dims + 1)))
    with pytest.raises(ValueError, match="shape"):
        pde.exact(np.zeros(5))
    assert pde.exact(np.full((3, pde.dims), 0.5)).shape == (3, 1)
