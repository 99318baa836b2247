"""Neural networks on one example: MLP and masked (MADE) MLP conditioners, Fourier time
embeddings and time-conditioned vector fields ``v(t, x, condition)``, and periodic
(circular-padding) convolution nets for lattice fields."""

from ._conv import PeriodicConvNet as PeriodicConvNet, periodic_conv as periodic_conv
from ._egnn import EGNNLayer as EGNNLayer, EGNNVectorField as EGNNVectorField
from ._masked_mlp import MaskedMLP as MaskedMLP
from ._mlp import MLP as MLP
from ._time import FourierTimeEmbedding as FourierTimeEmbedding, VectorFieldMLP as VectorFieldMLP
