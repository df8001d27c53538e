"""pinnlib: physics-informed neural networks with adaptive loss balancing.

The small library behind the book "Balancing the losses". One concept a module:
:mod:`~pinnlib.pdes` (the problems), :mod:`~pinnlib.nn` (the network),
:mod:`~pinnlib.derivatives` (forward mode and nested tapes), :mod:`~pinnlib.balancing`
(Sum, Fixed, SoftAdapt, LRAnnealing, GradNorm, ReLoBRaLo), :mod:`~pinnlib.training` (the
engine: one compiled step and one loop for one run or many, and the ``fit`` path),
:mod:`~pinnlib.stacked` (several networks as one), :mod:`~pinnlib.constraints` (hard boundary
conditions), :mod:`~pinnlib.validation` (argument checks), :mod:`~pinnlib.metrics`,
:mod:`~pinnlib.stats` (summaries of several runs: tail error, median, collapsed runs),
:mod:`~pinnlib.plot` and :mod:`~pinnlib.budget`.
"""

from ._quiet import import_tensorflow_quietly as _import_tensorflow_quietly

# Load TensorFlow without its C++ start-up chatter (PINNLIB_QUIET=0 shows it).
_import_tensorflow_quietly()

from . import stats  # noqa: E402  (pinnlib.stats.tail_error etc. without a second import)
from .balancing import (  # noqa: E402
    Balancer,
    ConFIG,
    Fixed,
    GlobalGradNorm,
    GradNorm,
    HomoscedasticUncertainty,
    LRAnnealing,
    NTKWeights,
    ReLoBRaLo,
    SoftAdapt,
    Sum,
)
from .budget import budget, budget_name  # noqa: E402
from .constraints import BoxDistance, HardBC  # noqa: E402
from .derivatives import (  # noqa: E402
    bilaplacian,
    derivatives,
    forward_derivatives,
    laplacian,
    tape_derivatives,
)
from .metrics import evaluate, mean_squared_error, relative_l2_error  # noqa: E402
from .nn import mlp  # noqa: E402
from .notebook import glue  # noqa: E402
from .pdes import PDE, Burgers, Causal, Helmholtz, Kirchhoff, Poisson1D, cole_hopf  # noqa: E402
from .plot import plot_error, plot_lambdas, plot_losses, plot_solution  # noqa: E402
from .training import (  # noqa: E402
    History,
    NonFiniteLossError,
    PINNModel,
    ReduceOnPlateau,
    Trainer,
    lbfgs,
    train,
    train_together,
)

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)

__all__ = [
    "Balancer",
    "Sum",
    "Fixed",
    "SoftAdapt",
    "ReLoBRaLo",
    "LRAnnealing",
    "GradNorm",
    "GlobalGradNorm",
    "HomoscedasticUncertainty",
    "ConFIG",
    "NTKWeights",
    "budget",
    "budget_name",
    "BoxDistance",
    "HardBC",
    "bilaplacian",
    "derivatives",
    "forward_derivatives",
    "laplacian",
    "tape_derivatives",
    "PINNModel",
    "evaluate",
    "relative_l2_error",
    "mean_squared_error",
    "mlp",
    "glue",
    "PDE",
    "Poisson1D",
    "Helmholtz",
    "Kirchhoff",
    "Burgers",
    "cole_hopf",
    "Causal",
    "plot_losses",
    "plot_lambdas",
    "plot_error",
    "plot_solution",
    "stats",
    "History",
    "NonFiniteLossError",
    "Trainer",
    "train",
    "train_together",
    "ReduceOnPlateau",
    "lbfgs",
]
