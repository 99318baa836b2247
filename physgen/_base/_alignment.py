"""Alignment of configurations of identical particles, ``(B, n, d)`` arrays on the host
(NumPy): the permutation of one configuration's particles (Hungarian algorithm) and then
the orthogonal transformation (Kabsch) that bring it onto another, and the matrix of aligned
squared distances between two batches. Used by equivariant flow matching's coupling and by
the aligned sample W2 of the metrics."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linear_sum_assignment

_PAIRS_PER_CHUNK = 8192  # pairs aligned at once by the cost matrix (memory ~ pairs · n! for n <= 6)
_ENUMERATE_UP_TO = 6  # n! <= 720 permutations: enumerating them beats a Python loop of calls


def permute_onto(x0: np.ndarray, x1: np.ndarray, *, squared: bool = True) -> np.ndarray:
    """Per example ``k``: the particles of ``x1[k]`` reordered to minimise
    ``Σ_a |x0[k, a] - x1[k, π(a)]|²`` (``squared=False``: ``Σ_a |x0[k, a] - x1[k, π(a)]|``)
    by the Hungarian algorithm, O(n³); for ``n <= 6`` all ``n!`` permutations at once, the
    same optimum."""
    n = x1.shape[1]
    cost = np.sum((x0[:, :, None, :] - x1[:, None, :, :]) ** 2, axis=-1)
    if not squared:
        cost = np.sqrt(cost)
    if n <= _ENUMERATE_UP_TO:
        perms = np.array(list(itertools.permutations(range(n))))
        totals = cost[:, np.arange(n)[None, :], perms].sum(-1)
        best = perms[np.argmin(totals, axis=1)]
        return np.take_along_axis(x1, best[..., None], axis=1)
    best = np.empty(cost.shape[:2], dtype=np.intp)
    for k in range(x1.shape[0]):
        best[k] = linear_sum_assignment(cost[k])[1]
    return np.take_along_axis(x1, best[..., None], axis=1)


def rotate_onto(x0: np.ndarray, x1: np.ndarray, *, reflections: bool = False) -> np.ndarray:
    """Per example: ``x1 R`` with the orthogonal ``R`` minimising ``|x0 - x1 R|²`` (Kabsch
    1976: ``R = U diag(1, …, 1, s) Vᵀ`` from ``H = x1ᵀ x0 = U S Vᵀ``, ``s = det UVᵀ`` for a
    proper rotation, ``s = 1`` when ``reflections`` are allowed; a proper rotation in 2-D in
    closed form)."""
    h = np.einsum("kni,knj->kij", x1, x0)
    if x1.shape[-1] == 2 and not reflections:
        c, s = h[:, 0, 0] + h[:, 1, 1], h[:, 0, 1] - h[:, 1, 0]
        r = np.hypot(c, s)
        safe = np.where(r > 0, r, 1.0)
        c, s = np.where(r > 0, c / safe, 1.0), s / safe
        rot = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)
        return np.einsum("kni,kij->knj", x1, rot)
    u, _, vt = np.linalg.svd(h)
    if not reflections:
        sign = np.sign(np.linalg.det(u @ vt))
        sign = np.where(sign == 0, 1.0, sign)
        u[..., -1] *= sign[:, None]
    return np.einsum("kni,kij->knj", x1, u @ vt)


def align_onto(x0, x1, *, permutations: bool = True, rotations: bool = True,
               squared: bool = True, reflections: bool = False) -> np.ndarray:
    """``x1`` moved pair by pair onto ``x0``: :func:`permute_onto`, then :func:`rotate_onto`
    (a coordinate-wise minimisation, not the joint optimum over both)."""
    if permutations:
        x1 = permute_onto(x0, x1, squared=squared)
    if rotations:
        x1 = rotate_onto(x0, x1, reflections=reflections)
    return x1


def aligned_cost_matrix(x0, x1, **align) -> np.ndarray:
    """``(B, M)``: ``|x0_i - g_ij(x1_j)|²`` for every pair, ``g_ij`` the alignment of
    :func:`align_onto` (keywords passed on), in chunks of about 8,192 pairs."""
    b, m = x0.shape[0], x1.shape[0]
    cost = np.empty((b, m))
    rows = max(1, _PAIRS_PER_CHUNK // m)
    for start in range(0, b, rows):
        ref = np.repeat(x0[start : start + rows], m, axis=0)
        mob = np.tile(x1, (ref.shape[0] // m, 1, 1))
        moved = align_onto(ref, mob, **align)
        cost[start : start + rows] = np.sum((ref - moved) ** 2, axis=(-2, -1)).reshape(-1, m)
    return cost
