"""Training objectives: scalar losses minimised by :func:`physgen.fit`."""

from .._base import (
    AbstractDataObjective as AbstractDataObjective,
    AbstractObjective as AbstractObjective,
)
from ._cnf_likelihood import CNFMaximumLikelihood as CNFMaximumLikelihood
from ._fab import FAB as FAB
from ._likelihood import ForwardKL as ForwardKL, MaximumLikelihood as MaximumLikelihood
from ._replay_buffer import ReplayBuffer as ReplayBuffer
from ._reverse_kl import MixedKL as MixedKL, ReverseKL as ReverseKL
