"""Training objectives: scalar losses minimised by :func:`physgen.fit`."""

from ._base import (
    AbstractDataObjective as AbstractDataObjective,
)
from ._base import (
    AbstractObjective as AbstractObjective,
)
from ._likelihood import ForwardKL as ForwardKL
from ._likelihood import MaximumLikelihood as MaximumLikelihood
from ._reverse_kl import MixedKL as MixedKL
from ._reverse_kl import ReverseKL as ReverseKL
