"""pinnlib.stats.interleaved_times and relative_cost: turns, times and ratios, on fake clocks.

No test here measures speed: fake clocks advance by a known amount per call, so the times and
ratios have exact expected values, and the order of the calls shows the interleaving.
"""

from __future__ import annotations

import numpy as np
import pytest

from pinnlib import stats


class FakeMachine:
    """Step functions that each cost a fixed time on clocks only they advance."""

    def __init__(self, costs, cpu_share=0.5):
        self.wall, self.cpu, self.calls = 0.0, 0.0, []
        self.costs, self.cpu_share = costs, cpu_share
        self.clocks = {"wall": lambda: self.wall, "cpu": lambda: self.cpu}

    def step(self, name):
        def call():
            self.wall += self.costs[name]
            self.cpu += self.cpu_share * self.costs[name]
            self.calls.append(name)
            return (FakeTensor(), {"w": FakeTensor()})

        return call


class FakeTensor:
    read = 0

    def numpy(self):
        FakeTensor.read += 1
        return 0.0


def test_seconds_per_step_on_every_clock():
    m = FakeMachine({"a": 0.01, "b": 0.04})
    times = stats.interleaved_times(
        {k: m.step(k) for k in ("a", "b")}, rounds=3, block_steps=10, warmup=0, clocks=m.clocks
    )
    assert list(times) == ["wall", "cpu"] and list(times["wall"]) == ["a", "b"]
    np.testing.assert_allclose(times["wall"]["a"], [0.01] * 3)
    np.testing.assert_allclose(times["wall"]["b"], [0.04] * 3)
    np.testing.assert_allclose(times["cpu"]["b"], [0.02] * 3)


def test_blocks_take_turns_in_a_rotating_order_each_after_its_warmup():
    m = FakeMachine({"a": 1.0, "b": 1.0, "c": 1.0})
    stats.interleaved_times(
        {k: m.step(k) for k in "abc"}, rounds=3, block_steps=2, warmup=1, clocks=m.clocks
    )
    blocks = ["".join(m.calls[i : i + 3]) for i in range(0, len(m.calls), 3)]
    assert blocks == ["aaa", "bbb", "ccc", "bbb", "ccc", "aaa", "ccc", "aaa", "bbb"]


def test_each_block_waits_for_its_outputs():
    m = FakeMachine({"a": 1.0})
    before = FakeTensor.read
    stats.interleaved_times({"a": m.step("a")}, rounds=4, block_steps=5, warmup=0, clocks=m.clocks)
    assert FakeTensor.read - before == 4 * 2  # both tensors of the last call of every block


def test_the_default_clocks_are_wall_and_process_time():
    times = stats.interleaved_times({"a": lambda: None}, rounds=2, block_steps=3)
    assert set(times) == {"wall", "cpu"}
    assert all(np.all(t["a"] >= 0) and t["a"].shape == (2,) for t in times.values())


def test_relative_cost_is_the_per_round_ratio_summarised():
    times = {"sum": np.array([0.01, 0.02, 0.0125]), "x": np.array([0.02, 0.02, 0.025])}
    cost = stats.relative_cost(times, "sum")
    assert cost["sum"].values == (1.0, 1.0, 1.0)
    assert cost["x"].values == (2.0, 1.0, 2.0)
    assert (cost["x"].median, cost["x"].low, cost["x"].high) == (2.0, 1.0, 2.0)


def test_bad_arguments_are_named():
    step = FakeMachine({"a": 1.0}).step("a")
    with pytest.raises(ValueError, match="rounds"):
        stats.interleaved_times({"a": step}, rounds=0)
    with pytest.raises(ValueError, match="block_steps"):
        stats.interleaved_times({"a": step}, block_steps=2.5)
    with pytest.raises(ValueError, match="warmup"):
        stats.interleaved_times({"a": step}, warmup=-1)
    with pytest.raises(ValueError, match="at least one step"):
        stats.interleaved_times({})
    with pytest.raises(ValueError, match="at least one clock"):
        stats.interleaved_times({"a": step}, clocks={})
    with pytest.raises(ValueError, match="baseline 'sum'"):
        stats.relative_cost({"a": np.ones(2)}, "sum")
    with pytest.raises(ValueError, match="rounds"):
        stats.relative_cost({"sum": np.ones(2), "a": np.ones(3)}, "sum")
