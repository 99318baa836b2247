"""Neural networks used as conditioners: plain MLP and masked (MADE) MLP, on one example."""

from ._masked_mlp import MaskedMLP as MaskedMLP
from ._mlp import MLP as MLP
