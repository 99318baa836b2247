"""The alanine experiment's flow in internal coordinates: the coupling flow, the affine
standardisation between the flow's coordinates ``u`` and internal ones ``z``, and the
compiled functions that evaluate a trained flow (each compiled once for all objectives: their
flows share one structure)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import physgen.bijections as pb
from physgen.distributions import NormalWithAngles, Transformed


def coupling_flow(key, ic, num_layers: int, bins: int, width: int):
    """``(flow, angles)``: a flow on ``u`` ``(60,)`` with ``num_layers`` layers, each a spline
    coupling on half the bonds and angles, then a circular spline coupling on half the
    torsions (alternating halves), each conditioned on all the rest; ``angles`` ``(60,)``
    marks the torsions."""
    dim = ic.shape[0]
    angles = np.zeros(dim, bool)
    angles[ic.torsions] = True
    real, torsion = np.flatnonzero(~angles), np.flatnonzero(angles)
    layers = []
    for i, k in enumerate(jax.random.split(key, 2 * num_layers)):
        parity = (i // 2) % 2
        if i % 2 == 0:
            moved, transformer = real[parity::2], pb.SplineTransformer(bins, 5.0)
        else:
            moved, transformer = torsion[parity::2], pb.CircularSplineTransformer(bins)
        keep = np.ones(dim, bool)
        keep[moved] = False
        partition = pb.FlatPartition(dim, mask=keep)
        conditioner = pb.MLPConditioner(partition, transformer, key=k, width=width,
                                        depth=2, circular=angles)
        layers.append(pb.Coupling(partition, transformer, conditioner))
    return Transformed(NormalWithAngles((dim,), angles), pb.Chain(layers)), angles


@eqx.filter_jit
def _curvatures(target, z):
    """``∂²E/∂z_i²`` ``(60,)`` at ``z``: central differences of the gradient, steps 1e-3 of
    each coordinate (relative, at least 1e-4), within ~1e-3 of the exact diagonal of the
    Hessian, which takes twice as long to compile."""
    eps = 1e-3 * jnp.maximum(jnp.abs(z), 0.1)
    grad = jax.vmap(jax.grad(target.energy))
    return jnp.diag(grad(z + jnp.diag(eps)) - grad(z - jnp.diag(eps))) / (2 * eps)


@eqx.filter_jit
def energy_at(target, u):
    """``E(u)`` in kT of one configuration ``u``, compiled."""
    return target.energy(u)


def standardisation(z_train, z_min, target, angles):
    """The map ``z = loc + scale · u`` from the flow's coordinates ``u`` to internal ones
    (torsions unchanged). With MD data (``z_train``): the data's mean and standard deviation.
    Data-free: the minimum ``z_min`` and the Laplace widths ``(∂²E/∂z_i²)^(-1/2)`` there (E in
    kT; each bond's and angle's harmonic width with the other coordinates held)."""
    if z_train is not None:
        loc, scale = z_train.mean(0), z_train.std(0)
    else:
        curvature = np.asarray(_curvatures(target, jnp.asarray(z_min)))
        if np.any(curvature[~angles] <= 0):
            raise ValueError("the structure is not a minimum: a bond or angle has curvature "
                             f"<= 0 ({np.flatnonzero(curvature[~angles] <= 0)})")
        loc, scale = z_min, 1.0 / np.sqrt(np.where(angles, 1.0, curvature))
    return pb.Affine(np.where(angles, 0.0, loc).astype(np.float32),
                     np.where(angles, 1.0, scale).astype(np.float32))


@eqx.filter_jit
def log_q(flow, std, z):
    """``log q(z)`` ``(n,)`` in internal coordinates ``z`` ``(n, 60)`` (nats): the flow's
    density of ``u`` and the standardisation's log-det."""
    u, log_det = jax.vmap(std.inverse_and_log_det)(z)
    return flow.log_prob(u) + log_det


@eqx.filter_jit
def log_weights_at(flow, std, u_target, z):
    """``log w = log p̃(z) - log q(z)`` ``(n,)`` at given ``z`` ``(n, 60)``."""
    u = jax.vmap(std.inverse)(z)
    return jax.vmap(u_target.log_density)(u) - flow.log_prob(u)


@eqx.filter_jit
def sample_and_log_weights(flow, std, u_target, key, n: int):
    """``n`` flow samples in internal coordinates ``(n, 60)`` and their log-weights."""
    us, lq = flow.sample_and_log_prob(key, (n,))
    return jax.vmap(std.transform)(us), jax.vmap(u_target.log_density)(us) - lq


@eqx.filter_jit
def positions_and_energies(ic_target, z):
    """Positions ``(n, N, 3)`` (nm, canonical frame) of internal coordinates ``z`` ``(n, 60)``
    and their ``U(x) / kT`` ``(n,)``: the force field's energy, as MD reports it (no
    Jacobian)."""
    x = jax.vmap(ic_target.positions)(z)
    return x, jax.vmap(ic_target.target.energy)(x)
