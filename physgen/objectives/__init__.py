"""Training objectives: scalar losses minimised by :func:`physgen.fit`."""

from ._base import (
    AbstractDataObjective as AbstractDataObjective,
    AbstractObjective as AbstractObjective,
)
from ._likelihood import ForwardKL as ForwardKL, MaximumLikelihood as MaximumLikelihood
from ._reverse_kl import MixedKL as MixedKL, ReverseKL as ReverseKL
