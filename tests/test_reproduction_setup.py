"""The pieces of Wang, Teng & Perdikaris' (2021) Helmholtz set-up that the reproduction needs:
the boundary loss as the sum of the four edges' losses, and standardised inputs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import pinnlib


def test_edge_loss_sum_is_the_sum_of_the_four_edge_mean_squares():
    model = pinnlib.mlp(2, 2, 8, seed=3)
    mean_pde, sum_pde = pinnlib.Helmholtz(), pinnlib.Helmholtz(edge_loss="sum")
    points = sum_pde.sample(64, 128, tf.random.Generator.from_seed(0))
    # Recomputed by hand: the edges in order left, right, bottom, top, 32 points each.
    u = model(points["boundary"]).numpy().reshape(4, 32)
    edge_mse = (u**2).mean(axis=1)
    fixed = points["boundary"].numpy().reshape(4, 32, 2)
    assert np.all(fixed[0, :, 0] == -1) and np.all(fixed[1, :, 0] == 1)
    assert np.all(fixed[2, :, 1] == -1) and np.all(fixed[3, :, 1] == 1)
    l_sum = sum_pde.losses(model, points)[1].numpy()
    l_mean = mean_pde.losses(model, points)[1].numpy()
    np.testing.assert_allclose(l_sum, edge_mse.sum(), rtol=1e-6)
    np.testing.assert_allclose(l_mean, edge_mse.mean(), rtol=1e-6)
    # The residual term does not change.
    np.testing.assert_array_equal(
        sum_pde.losses(model, points)[0].numpy(), mean_pde.losses(model, points)[0].numpy()
    )


def test_edge_loss_sum_refuses_unequal_edges_and_unknown_forms():
    with pytest.raises(ValueError, match="divisible by 4"):
        pinnlib.Helmholtz(edge_loss="sum").check_sizes(16, 130)
    with pytest.raises(ValueError, match="edge_loss"):
        pinnlib.Helmholtz(edge_loss="median")
    assert pinnlib.Helmholtz(edge_loss="sum").get_config()["edge_loss"] == "sum"


def test_standardised_inputs_are_the_plain_network_at_the_standardised_points():
    mean, std = np.array([0.1, -0.2]), np.array([0.5, 0.8])
    plain = pinnlib.mlp(2, 2, 8, seed=5, dtype="float64")
    standard = pinnlib.mlp(2, 2, 8, seed=5, dtype="float64", input_standardize=(mean, std))
    x = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(standard(x).numpy(), plain((x - mean) / std).numpy(), rtol=1e-12)
    # Forward-mode Laplacian through the standardising layer = nested tapes (chain rule 1/std^2).
    u_f, lap_f = pinnlib.laplacian(standard, tf.constant(x), mode="forward")
    u_t, lap_t = pinnlib.laplacian(standard, tf.constant(x), mode="tape")
    np.testing.assert_allclose(lap_f.numpy(), lap_t.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "arg, match",
    [
        (([0.0], [1.0, 1.0]), "2 values each"),
        (([0.0, 0.0], [1.0, 0.0]), "stds > 0"),
        (([0.0, np.nan], [1.0, 1.0]), "finite"),
    ],
)
def test_standardise_refuses_bad_statistics(arg, match):
    with pytest.raises(ValueError, match=match):
        pinnlib.mlp(2, 1, 4, input_standardize=arg)


def test_standardise_and_input_range_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        pinnlib.mlp(2, 1, 4, input_range=([0, 0], [1, 1]), input_standardize=([0, 0], [1, 1]))


def test_a_method_may_name_its_own_learning_rate_and_a_problem_its_network():
    from pinnlib import study

    config = {
        "network": {"layers": 4, "width": 50},
        "learning_rate": {
            "schedule": "ExponentialDecay",
            "initial_learning_rate": 1e-3,
            "decay_steps": 1000,
            "decay_rate": 0.9,
        },
        "seeds": [0],
        "budget": "full",
        "problems": {
            "h": {
                "pde": "Helmholtz",
                "steps": 10,
                "n_interior": 8,
                "n_boundary": 8,
                "network": {"layers": 3, "width": 50},
            }
        },
        "methods": {
            "decayed": {"balancer": "Sum"},
            "constant": {"balancer": "Sum", "learning_rate": 0.001},
        },
    }
    runs = study.plan(config)
    assert [r.method for r in runs] == ["decayed", "constant"]  # "elsewhere" runs on not-h only
    decayed, constant = (study._spec(config, r) for r in runs)
    assert decayed["learning_rate"]["schedule"] == "ExponentialDecay"
    assert constant["learning_rate"] == 0.001 and "learning_rate" not in constant["balancer"]
    assert decayed["network"] == {"layers": 3, "width": 50} and "network" not in decayed["pde"]
    assert study.learning_rate_of(0.001) == 0.001
    schedule = study.learning_rate_of(decayed["learning_rate"])
    np.testing.assert_allclose(float(schedule(2500)), 1e-3 * 0.9**2.5, rtol=1e-6)
    with pytest.raises(ValueError, match="schedule must be one of"):
        study.learning_rate_of({"schedule": "Warmup"})


def test_find_results_finds_a_named_results_folder_from_book_or_root(tmp_path, monkeypatch):
    from pinnlib import study

    folder = tmp_path / "results" / "wang2021"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (tmp_path / "book").mkdir()
    monkeypatch.delenv("PINNLIB_STUDY", raising=False)
    monkeypatch.chdir(tmp_path / "book")  # a chapter runs from book/
    assert study.find_results("wang2021").resolve() == folder.resolve()
    monkeypatch.chdir(tmp_path)
    assert study.find_results("wang2021").resolve() == folder.resolve()
    monkeypatch.setenv("PINNLIB_STUDY", str(tmp_path / "elsewhere"))  # the study's variable only
    assert study.find_results("wang2021").resolve() == folder.resolve()


def test_jit_compile_auto_is_xla_on_one_device_and_a_bad_value_is_refused():
    pde = pinnlib.Poisson1D()
    trainer = pinnlib.Trainer(pinnlib.mlp(1, 1, 4, seed=0), pde, n_interior=8, n_boundary=2)
    assert trainer.jit_compile is True
    with pytest.raises(TypeError, match="jit_compile"):
        pinnlib.Trainer(pinnlib.mlp(1, 1, 4, seed=0), pde, jit_compile="yes")
