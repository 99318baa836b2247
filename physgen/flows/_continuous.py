"""A continuous normalizing flow on ``R^dim``: ``Transformed(base, ContinuousFlow(...))``."""

from __future__ import annotations

import math

import diffrax
import equinox as eqx

from .._base import Key, Shape
from ..bijections import ContinuousFlow
from ..diffusion import DiffusionModel
from ..distributions import AbstractDistribution, StandardNormal, Transformed
from ..nn import VectorFieldMLP


def cnf(
    key: Key,
    dim: int,
    *,
    width: int = 64,
    depth: int = 3,
    embed_dim: int = 16,
    cond_shape: Shape | None = None,
    base: AbstractDistribution | None = None,
    trace: str = "hutchinson",
    zero_init: bool = True,
    **flow_kwargs,
) -> Transformed:
    """Continuous normalizing flow (Chen et al. 2018; FFJORD, Grathwohl et al. 2019).

    ``x(t1) = x(t0) + ∫ v(t, x, c) dt`` with ``x(t0) ~ base`` (default ``N(0, I)``) and
    ``v`` a :class:`~physgen.nn.VectorFieldMLP` (``depth`` hidden layers of ``width`` SiLU
    units, ``embed_dim`` Fourier features of ``t``; zero last layer with ``zero_init``, so the
    new flow is the identity). ``log_prob`` is exact (exact trace); ``trace`` (default
    Hutchinson) is what the ``*_estimate`` methods, and so
    :class:`~physgen.objectives.CNFMaximumLikelihood`, use in training. The other keyword
    arguments (``t0``, ``t1``, ``solver``, ``rtol``, ``atol``, ``dt0``, ``max_steps``,
    ``probe``, ``adjoint``) go to :class:`~physgen.bijections.ContinuousFlow`.
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")
    base = StandardNormal((dim,)) if base is None else base
    if tuple(base.shape) != (dim,):
        raise ValueError(f"base distribution has shape {base.shape}, expected ({dim},)")
    cond_dim = None if cond_shape is None else math.prod(cond_shape)
    field = VectorFieldMLP(
        key,
        dim,
        width=width,
        depth=depth,
        embed_dim=embed_dim,
        cond_dim=cond_dim,
        zero_init_last=zero_init,
    )
    flow = ContinuousFlow(field, (dim,), trace=trace, cond_shape=cond_shape, **flow_kwargs)
    return Transformed(base, flow)


def check_continuous_model(model, who: str) -> ContinuousFlow:
    """The :class:`ContinuousFlow` of ``Transformed(base, ContinuousFlow)``, or a TypeError."""
    if not (isinstance(model, Transformed) and isinstance(model.bijection, ContinuousFlow)):
        raise TypeError(
            f"{who} trains Transformed(base, ContinuousFlow(...)) (e.g. physgen.flows.cnf), "
            f"got {type(model).__name__}"
            + (
                f" with a {type(model.bijection).__name__}"
                if isinstance(model, Transformed)
                else ""
            )
        )
    if model.bijection.cond_shape is not None:
        raise ValueError(f"{who} trains unconditional flows (cond_shape=None)")
    return model.bijection


def with_tolerances(model, rtol: float, atol: float):
    """The same ODE model, solved with an adaptive ``diffrax.PIDController(rtol, atol)``.

    ``model``: a :class:`~physgen.bijections.ContinuousFlow`, a ``Transformed`` holding one
    (e.g. :func:`cnf`), or a :class:`~physgen.diffusion.DiffusionModel` (its probability-flow
    ODE). Typical use: train with loose tolerances, evaluate likelihoods with tight ones.
    """
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got {rtol}, {atol}")
    if isinstance(model, DiffusionModel):
        return eqx.tree_at(lambda m: (m.rtol, m.atol), model, (float(rtol), float(atol)))
    flow = model.bijection if isinstance(model, Transformed) else model
    if not isinstance(flow, ContinuousFlow):
        raise TypeError(
            "with_tolerances takes a ContinuousFlow, a Transformed holding one or a "
            f"DiffusionModel, got {type(model).__name__}"
        )
    if flow.dt0 is not None:
        raise ValueError("this flow takes fixed steps (dt0); tolerances do not apply")
    controller = diffrax.PIDController(rtol=float(rtol), atol=float(atol))
    if flow is model:
        return eqx.tree_at(lambda f: f.stepsize_controller, model, controller)
    return eqx.tree_at(lambda m: m.bijection.stepsize_controller, model, controller)
