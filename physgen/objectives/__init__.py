"""Training objectives: scalar losses minimised by :func:`physgen.fit`."""

from .._base import (
    AbstractDataObjective as AbstractDataObjective,
    AbstractObjective as AbstractObjective,
)
from ._cnf_likelihood import CNFMaximumLikelihood as CNFMaximumLikelihood
from ._fab import FAB as FAB, FABState as FABState
from ._likelihood import MaximumLikelihood as MaximumLikelihood
from ._replay_buffer import ReplayBuffer as ReplayBuffer
from ._reverse_kl import MixedKL as MixedKL, ReverseKL as ReverseKL
