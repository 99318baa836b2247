"""An E(n)-equivariant graph network (EGNN, Garcia Satorras et al. 2021) as the vector field
of particle flows (E-NF, Garcia Satorras et al. 2021; equivariant flow matching, Klein et al.
2023)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._base import Array, ArrayLike, Key, check_int, check_single_example
from ._mlp import zero_last_layer
from ._time import FourierTimeEmbedding


class EGNNLayer(eqx.Module):
    r"""One EGNN layer on a fully connected graph of ``n`` particles, ``(h, x) -> (h', x')``:

    .. math::
        m_{ij} = φ_e(h_i, h_j, |x_i - x_j|^2), \qquad
        x_i' = x_i + \frac{1}{n-1}\sum_{j≠i} \frac{x_i - x_j}{|x_i - x_j| + 1} φ_x(m_{ij}),
        \qquad h_i' = h_i + φ_h\Big(h_i, \frac{1}{n-1}\sum_{j≠i} m_{ij}\Big).

    ``h`` is invariant and ``x'`` equivariant under rotations, reflections, translations and
    permutations (the messages see only distances; the update is a sum of difference
    vectors). The ``+1`` bounds each coordinate message by ``|φ_x|`` (Klein et al. 2023).
    ``φ_e``, ``φ_h``: one hidden layer of ``hidden`` SiLU units; ``φ_x``: ``hidden -> 1``.
    """

    edge: eqx.nn.MLP
    coord: eqx.nn.MLP
    node: eqx.nn.MLP

    def __init__(self, key: Key, hidden: int, *, zero_init: bool = False):
        ke, kx, kh = jax.random.split(key, 3)
        self.edge = eqx.nn.MLP(2 * hidden + 1, hidden, hidden, 1, activation=jax.nn.silu,
                               final_activation=jax.nn.silu, key=ke)
        coord = eqx.nn.MLP(hidden, 1, hidden, 1, activation=jax.nn.silu, key=kx)
        self.coord = zero_last_layer(coord) if zero_init else coord
        self.node = eqx.nn.MLP(2 * hidden, hidden, hidden, 1, activation=jax.nn.silu, key=kh)

    def __call__(self, h: Array, x: Array) -> tuple[Array, Array]:
        """``h``: ``(n, hidden)``, ``x``: ``(n, d)`` -> the same shapes."""
        n = x.shape[0]
        off_diagonal = ~jnp.eye(n, dtype=bool)
        diff = x[:, None, :] - x[None, :, :]
        d2 = jnp.sum(diff * diff, axis=-1)
        hi = jnp.broadcast_to(h[:, None, :], (n, n, h.shape[-1]))
        hj = jnp.broadcast_to(h[None, :, :], (n, n, h.shape[-1]))
        edge_in = jnp.concatenate([hi, hj, d2[..., None]], axis=-1)
        m = jax.vmap(jax.vmap(self.edge))(edge_in) * off_diagonal[..., None]
        w = jax.vmap(jax.vmap(self.coord))(m)[..., 0]
        # |x_i - x_j|, whose sqrt has an infinite slope at 0 (the diagonal, and coinciding
        # particles): the inner where keeps it out of the derivative, which is then exact
        # (d/dΔ [Δ / (|Δ| + 1)] = I at Δ = 0), not NaN
        apart = d2 > 0
        dist = jnp.where(apart, jnp.sqrt(jnp.where(apart, d2, 1.0)), 0.0)
        w = jnp.where(off_diagonal, w / (dist + 1.0), 0.0)
        x = x + jnp.einsum("ij,ijk->ik", w, diff) / (n - 1)
        h = h + jax.vmap(self.node)(jnp.concatenate([h, jnp.sum(m, axis=1) / (n - 1)], -1))
        return h, x


class EGNNVectorField(eqx.Module):
    r"""An E(n)-equivariant time-dependent vector field ``v(t, x)`` on configurations of
    ``n_particles`` identical particles in ``n_dims`` dimensions.

    ``h_i^0 = W emb(t) + b`` (the same for all particles: :class:`FourierTimeEmbedding` of
    ``embed_dim``), then ``num_layers`` :class:`EGNNLayer` s of width ``hidden`` (stacked
    with ``filter_vmap`` and run by ``lax.scan``), and
    ``v(t, x) = x^L - x^0 - mean_i(x_i^L - x_i^0)``. Then for every rotation or reflection
    ``R``, permutation ``P`` and translation ``c``: ``v(t, P x Rᵀ + c) = P v(t, x) Rᵀ``;
    ``v`` is translation invariant and has zero mean, so a flow driven by it stays on the
    zero-centre-of-mass subspace, and the trace of its Jacobian on ``R^{n·d}`` equals the
    trace on that subspace (the Jacobian vanishes on the centre-of-mass directions).
    With ``zero_init=True`` every ``φ_x`` ends in zeros: ``v = 0`` at initialisation.

    ONE configuration: ``t`` scalar, ``x`` of shape ``(n_particles, n_dims)``; batch with
    ``jax.vmap``. Unconditional: ``condition`` must be ``None``.
    """

    embedding: FourierTimeEmbedding
    encoder: eqx.nn.Linear
    layers: EGNNLayer
    n_particles: int = eqx.field(static=True)
    n_dims: int = eqx.field(static=True)
    num_layers: int = eqx.field(static=True)

    def __init__(self, key: Key, n_particles: int, n_dims: int, *, hidden: int = 64,
                 num_layers: int = 4, embed_dim: int = 16, zero_init: bool = False):
        check_int("EGNNVectorField: n_particles", n_particles, 2)
        check_int("EGNNVectorField: n_dims", n_dims, 1)
        check_int("EGNNVectorField: hidden", hidden, 1)
        check_int("EGNNVectorField: num_layers", num_layers, 1)
        k_enc, k_layers = jax.random.split(key)
        self.embedding = FourierTimeEmbedding(embed_dim)
        self.encoder = eqx.nn.Linear(embed_dim, hidden, key=k_enc)
        make = lambda k: EGNNLayer(k, hidden, zero_init=zero_init)
        self.layers = eqx.filter_vmap(make)(jax.random.split(k_layers, num_layers))
        self.n_particles, self.n_dims = int(n_particles), int(n_dims)
        self.num_layers = int(num_layers)

    def __call__(self, t: ArrayLike, x: Array, condition: Array | None = None) -> Array:
        """``t`` scalar, ``x``: ``(n_particles, n_dims)`` -> ``(n_particles, n_dims)``."""
        if condition is not None:
            raise ValueError("EGNNVectorField is unconditional but got a condition")
        x = jnp.asarray(x)
        check_single_example(x, (self.n_particles, self.n_dims), "EGNNVectorField: x")
        emb = self.embedding(jnp.asarray(t, dtype=x.dtype)).astype(x.dtype)
        h = jnp.broadcast_to(self.encoder(emb), (self.n_particles, self.encoder.out_features))
        params, static = eqx.partition(self.layers, eqx.is_array)

        def body(carry, p):
            return eqx.combine(p, static)(*carry), None

        (_, xl), _ = jax.lax.scan(body, (h, x), params)
        v = xl - x
        return v - jnp.mean(v, axis=0)
