"""Checkpoint folders of ``pinnlib.train`` / ``train_together``: a folder of other runs is refused
with both sides named, a resume says so once, and ``resume="auto" | "must" | "never"`` (issue 15).
"""

from __future__ import annotations

import json

import pytest

import pinnlib
from pinnlib import Helmholtz, Poisson1D, ReLoBRaLo, SoftAdapt, Sum
from pinnlib.training.checkpoints import DESCRIPTION


def poisson(folder=None, steps=4, balancer=None, width=8, pde=None, **kwargs):
    """A tiny run; ``folder`` is its checkpoint_dir (saves every 2 steps)."""
    pde = pde or Poisson1D()
    model = pinnlib.mlp(pde.dims, 1, width, seed=0)
    balancer = balancer if balancer is not None else ReLoBRaLo(pde.num_terms, seed=0)
    if folder is not None:
        kwargs.setdefault("checkpoint_every", 2)
    return pinnlib.train(
        model,
        pde,
        balancer,
        steps=steps,
        n_interior=16,
        n_boundary=4,
        seed=0,
        eval_points=8,
        progress=False,
        jit_compile=False,
        checkpoint_dir=folder,
        **kwargs,
    )


# -- another run's folder --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "first, second",
    [(Sum, ReLoBRaLo), (ReLoBRaLo, Sum), (SoftAdapt, ReLoBRaLo)],
    ids=["Sum-then-ReLoBRaLo", "ReLoBRaLo-then-Sum", "SoftAdapt-then-ReLoBRaLo"],
)
def test_another_balancer_type_is_refused_naming_both(tmp_path, first, second):
    poisson(tmp_path, 2, first(2))
    message = rf"belongs to other runs: its balancer is '{first.__name__}', this call's is "
    with pytest.raises(ValueError, match=message + rf"'{second.__name__}'"):
        poisson(tmp_path, 4, second(2))


def test_another_network_shape_is_refused(tmp_path):
    poisson(tmp_path, 2, width=8)
    with pytest.raises(ValueError, match=r"its network is float32 network with weight shapes "):
        poisson(tmp_path, 4, width=16)


def test_another_pde_is_refused(tmp_path):
    poisson(tmp_path, 2, pde=Helmholtz(), balancer=Sum(2))
    with pytest.raises(
        ValueError, match=r"its PDE is 'Helmholtz\(k=1.0.*this call's is 'Helmholtz\(k=2"
    ):
        poisson(tmp_path, 4, pde=Helmholtz(k=2.0), balancer=Sum(2))


def test_another_number_of_runs_is_refused(tmp_path):
    pde = Poisson1D()

    def group(n, steps):
        models = [pinnlib.mlp(1, 1, 8, seed=s) for s in range(n)]
        return pinnlib.train_together(
            models, pde, steps=steps, n_interior=16, n_boundary=2, eval_points=8,
            progress=False, jit_compile=False, checkpoint_dir=tmp_path, checkpoint_every=2,
        )  # fmt: skip

    group(2, 2)
    with pytest.raises(ValueError, match=r"it holds 2 run\(s\) laid out 'stacked', this call "):
        group(3, 4)
    assert len(group(2, 4)[0].step) == 4  # the right group still resumes


def test_the_description_is_written_and_an_old_folder_without_it_still_resumes(tmp_path, capsys):
    poisson(tmp_path, 2)
    described = json.loads((tmp_path / DESCRIPTION).read_text())
    run = described["each"][0]
    assert (described["runs"], described["layout"]) == (1, "single")
    assert (run["balancer"], run["num_terms"], run["terms"]) == ("ReLoBRaLo", 2, ["L_f", "L_b"])
    assert run["network"] == {"dtype": "float32", "shapes": [[1, 8], [8], [8, 1], [1]]}
    (tmp_path / DESCRIPTION).unlink()  # as pinnlib 0.2 left its folders
    capsys.readouterr()
    assert len(poisson(tmp_path, 4).step) == 4
    assert "resumed from step 2" in capsys.readouterr().out
    assert json.loads((tmp_path / DESCRIPTION).read_text()) == described


# -- saying so -----------------------------------------------------------------------------------------
def test_a_resume_says_so_once(tmp_path, capsys):
    poisson(tmp_path, 2)
    assert capsys.readouterr().out == ""  # a fresh start says nothing
    history = poisson(tmp_path, 6)
    out = capsys.readouterr().out
    assert out.count("resumed from step") == 1
    assert f"resumed from step 2 (checkpoint in {tmp_path})" in out
    assert len(history.step) == 6


# -- resume="auto" | "must" | "never" ---------------------------------------------------------------
def test_must_refuses_a_folder_without_a_checkpoint(tmp_path):
    typo = tmp_path / "chekpoints"
    with pytest.raises(ValueError, match=r"resume='must'.*chekpoints' does not exist"):
        poisson(typo, 4, resume="must")
    assert not typo.exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"resume='must'.*empty' holds no checkpoint"):
        poisson(tmp_path / "empty", 4, resume="must")


def test_must_resumes_an_existing_checkpoint(tmp_path, capsys):
    poisson(tmp_path, 2)
    history = poisson(tmp_path, 4, resume="must")
    assert "resumed from step 2" in capsys.readouterr().out
    assert len(history.step) == 4


def test_never_refuses_an_existing_checkpoint_and_deletes_nothing(tmp_path):
    assert len(poisson(tmp_path, 2, resume="never").step) == 2  # an empty folder: fresh start
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"resume='never'.*already holds a checkpoint \(ckpt-2\)"):
        poisson(tmp_path, 4, resume="never")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_trainer_continues_its_own_run_in_the_same_folder(tmp_path):
    # The second call of the same Trainer continues in memory; its own checkpoints are no reason
    # for resume="never" to complain.
    pde = Poisson1D()
    trainer = pinnlib.Trainer(
        pinnlib.mlp(1, 1, 8, seed=0), pde, n_interior=16, n_boundary=2, jit_compile=False
    )
    options = dict(progress=False, eval_points=8, checkpoint_dir=tmp_path, checkpoint_every=2)
    trainer.run(2, resume="never", **options)
    assert len(trainer.run(4, resume="never", **options).step) == 4


def test_resume_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"resume must be one of \('auto', 'must', 'never'\)"):
        poisson(tmp_path, 2, resume="yes")
    with pytest.raises(ValueError, match="resume='must' needs a checkpoint_dir"):
        poisson(None, 2, resume="must")
    with pytest.raises(ValueError, match=r"resume must be one of"):
        pinnlib.train_together(
            [pinnlib.mlp(1, 1, 8, seed=0)], Poisson1D(), steps=1, n_boundary=2,
            progress=False, jit_compile=False, checkpoint_dir=tmp_path, resume=True,
        )  # fmt: skip
