"""The benchmark problems: one file each, all following :class:`pinnlib.pdes.base.PDE`."""

from .base import PDE
from .burgers import Burgers, cole_hopf
from .causal import Causal
from .helmholtz import Helmholtz
from .kirchhoff import Kirchhoff
from .poisson1d import Poisson1D

__all__ = ["PDE", "Poisson1D", "Helmholtz", "Kirchhoff", "Burgers", "cole_hopf", "Causal"]
