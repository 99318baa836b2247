"""The alanine experiment's flow in internal coordinates: the coupling flow, the map between
the flow's coordinates ``u`` and internal ones ``z`` (an affine standardisation, then the
stereo torsions onto their half circles), and the compiled functions that evaluate a trained
flow (each compiled once for all objectives: their flows share one structure)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import physgen.bijections as pb
from physgen.distributions import NormalWithAngles, Transformed

# The torsions whose signs pick one of the molecule's 16 equal-energy stereo copies (see
# _alanine_analysis.STEREO_CENTRES): CB's about CA-N from C (CA's chirality; its sign is that
# of the CA centre's handedness) and, for each methyl, its second hydrogen's about the C-X
# bond from the first (the handedness of the labelled hydrogens; +-120° in the two copies)
STEREO_TORSION_ATOMS = (10, 2, 12, 20)


def coordinates(ic, z_ref):
    """``(angles, low, high)``, each ``(60,)``: which entries of ``z`` are circular, and the
    bounds that confine the stereo torsions (``STEREO_TORSION_ATOMS``) to the half circle of
    their sign in ``z_ref`` ``(60,)``, ``(0, π)`` or ``(-π, 0)`` (``(-inf, inf)`` elsewhere).
    A flow on these coordinates has the support of ``z_ref``'s stereo copy alone, so its
    log Z is that of one copy, a sixteenth of the labelled molecule's."""
    rows = {int(a): i for i, a in enumerate(ic.atoms)}
    stereo = [ic.torsions.start + rows[a] - 3 for a in STEREO_TORSION_ATOMS]
    angles = np.zeros(ic.shape[0], bool)
    angles[ic.torsions] = True
    angles[stereo] = False
    low, high = np.full(ic.shape[0], -np.inf), np.full(ic.shape[0], np.inf)
    positive = np.asarray(z_ref)[stereo] > 0
    low[stereo], high[stereo] = np.where(positive, 0.0, -np.pi), np.where(positive, np.pi, 0.0)
    return angles, low, high


def to_internal(ic):
    """Positions ``(n, N, 3)`` -> internal coordinates ``z`` ``(n, 60)`` of ``ic``, compiled."""
    return jax.jit(jax.vmap(lambda x: ic.inverse(ic.from_positions(x))))


def coupling_flow(key, angles, num_layers: int, bins: int, width: int):
    """A flow on ``u`` ``(60,)`` with ``num_layers`` layers, each a spline coupling on half
    the real entries (bonds, angles, stereo torsions), then a circular spline coupling on half
    the circular ones (``angles`` ``(60,)``; alternating halves), each conditioned on all the
    rest."""
    dim = angles.shape[0]
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
    return Transformed(NormalWithAngles((dim,), angles), pb.Chain(layers))


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


def standardisation(z_train, z_min, target, angles, low, high):
    """The map ``u -> z``: ``y = loc + scale · u`` (circular entries unchanged), then
    ``z = pb.Interval(low, high)(y)`` (the stereo torsions onto their half circles, logits
    ``y``; see :func:`coordinates`). With MD data (``z_train``): the mean and standard
    deviation of ``y``. Data-free: ``y`` of the minimum ``z_min`` and the Laplace widths
    ``(∂²E/∂z_i²)^(-1/2)`` there (E in kT; each coordinate's harmonic width with the others
    held), divided by ``dz/dy``."""
    interval = pb.Interval(low, high)
    to_y = jax.jit(jax.vmap(interval.inverse))
    if z_train is not None:
        y = np.asarray(to_y(jnp.asarray(z_train)), np.float64)
        outside = ~np.all(np.isfinite(y), axis=1)
        if outside.any():
            raise ValueError(f"{outside.sum()} training frames lie outside the stereo copy of "
                             "the bounds (a stereo torsion of the other sign)")
        loc, scale = y.mean(0), y.std(0)
    else:
        curvature = np.asarray(_curvatures(target, jnp.asarray(z_min)))
        if np.any(curvature[~angles] <= 0):
            raise ValueError("the structure is not a minimum: a coordinate has curvature "
                             f"<= 0 ({np.flatnonzero((curvature <= 0) & ~angles)})")
        loc = np.asarray(to_y(jnp.asarray(z_min)[None]), np.float64)[0]
        s = 1.0 / (1.0 + np.exp(-loc))
        slope = np.where(np.isfinite(low), (high - low) * s * (1 - s), 1.0)
        scale = 1.0 / np.sqrt(np.where(angles, 1.0, curvature)) / slope
    affine = pb.Affine(np.where(angles, 0.0, loc).astype(np.float32),
                       np.where(angles, 1.0, scale).astype(np.float32))
    return pb.Chain([affine, interval])


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
