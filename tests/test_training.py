"""fit, objectives at known optima, the NaN guard, and checkpoints."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import physgen
from physgen.distributions import DiagNormal, StandardNormal
from physgen.objectives import MaximumLikelihood, ReverseKL
from physgen.targets import AbstractTarget


class _Quadratic(AbstractTarget):
    """E(x) = ½ Σ (x - c)²/s²; log Z = Σ log(√(2π) s) at β = 1."""

    centre: jax.Array
    width: jax.Array
    event_shape: tuple[int, ...]
    beta: float

    def __init__(self, centre, width, beta=1.0):
        self.centre = jnp.asarray(centre)
        self.width = jnp.asarray(width)
        self.event_shape = self.centre.shape
        self.beta = beta

    def energy(self, x):
        return 0.5 * jnp.sum(((x - self.centre) / self.width) ** 2)


class _NaNBeyond(AbstractTarget):
    """Finite energy for |x| < r, NaN outside: a broken force field."""

    r: float
    event_shape: tuple[int, ...] = (2,)
    beta: float = 1.0

    def __init__(self, r):
        self.r = r
        self.event_shape = (2,)
        self.beta = 1.0

    def energy(self, x):
        e = 0.5 * jnp.sum(x**2)
        return jnp.where(jnp.linalg.norm(x) < self.r, e, jnp.nan)


def test_maximum_likelihood_reaches_the_sample_moments(x64):
    data = 1.5 + 0.4 * jax.random.normal(jax.random.key(1), (4000, 2))
    model = DiagNormal(jnp.zeros(2), jnp.ones(2))
    model, hist, _ = physgen.fit(
        jax.random.key(0), model, MaximumLikelihood(), data=data, steps=1500,
        optimizer=optax.adam(3e-2), batch_size=512, chunk_size=200, progress=False,
    )
    assert hist["loss"].shape == (1500,)
    # minibatch noise: the optimum is the sample moments to within a few percent of σ.
    np.testing.assert_allclose(model.loc, jnp.mean(data, 0), atol=0.03)
    np.testing.assert_allclose(model.scale, jnp.std(data, 0), atol=0.03)
    # The printed loss approaches the data entropy H = Σ log(√(2πe) σ), not zero.
    h = float(jnp.sum(jnp.log(jnp.sqrt(2 * math.pi * math.e) * jnp.std(data, 0))))
    assert abs(np.mean(hist["loss"][-200:]) - h) < 0.05


def test_reverse_kl_at_exact_model_is_minus_log_Z(x64):
    target = _Quadratic([1.0, -2.0], [0.5, 2.0])
    exact = DiagNormal(jnp.array([1.0, -2.0]), jnp.array([0.5, 2.0]))
    loss, aux, _ = ReverseKL(target, 64).loss(exact, jax.random.key(0), None, None, 0)
    log_z = float(jnp.sum(jnp.log(jnp.sqrt(2 * jnp.pi) * target.width)))
    assert abs(float(loss) + log_z) < 1e-10  # zero-variance: KL(q‖p) = 0 exactly
    assert abs(float(aux["log_weight_std"])) < 1e-10
    # A wrong model pays KL(q‖p) > 0 on top of -log Z.
    wrong = DiagNormal(jnp.zeros(2), jnp.ones(2))
    loss_w, _, _ = ReverseKL(target, 20000).loss(wrong, jax.random.key(1), None, None, 0)
    kl = sum(
        math.log(s) + (1 + (0 - c) ** 2) / (2 * s**2) - 0.5
        for c, s in [(1.0, 0.5), (-2.0, 2.0)]
    )
    assert abs(float(loss_w) - (-log_z + kl)) < 0.05


def test_reverse_kl_training_lowers_the_loss():
    target = _Quadratic([1.0, -1.0], [0.5, 2.0])
    model = DiagNormal(jnp.zeros(2), jnp.ones(2))
    model, hist, _ = physgen.fit(
        jax.random.key(0), model, ReverseKL(target, 128), steps=400,
        optimizer=optax.adam(2e-2), chunk_size=100, progress=False,
    )
    assert np.mean(hist["loss"][-50:]) < np.mean(hist["loss"][:50]) - 1.0
    np.testing.assert_allclose(model.loc, [1.0, -1.0], atol=0.1)


def test_result_does_not_depend_on_chunk_size():
    target = _Quadratic([1.0, -1.0], [0.5, 2.0])
    runs = [
        physgen.fit(
            jax.random.key(3), DiagNormal(jnp.zeros(2), jnp.ones(2)), ReverseKL(target, 16),
            steps=37, chunk_size=c, progress=False,
        )
        for c in (5, 37)
    ]
    np.testing.assert_allclose(runs[0][0].loc, runs[1][0].loc, rtol=1e-6)
    np.testing.assert_allclose(runs[0][1]["loss"], runs[1][1]["loss"], rtol=1e-6)


def test_nan_energy_stops_training_naming_step_and_energy(tmp_path):
    # The model drifts outward (the target is broad), the energy turns NaN beyond r = 3.
    target = _NaNBeyond(3.0)
    model = DiagNormal(jnp.zeros(2), 0.3 * jnp.ones(2))
    ckpt = tmp_path / "model.ckpt"
    with pytest.raises(physgen.NonFiniteLossError, match=r"step \d+ .*max_energy=nan") as err:
        physgen.fit(
            jax.random.key(0), model, ReverseKL(target, 256), steps=2000,
            optimizer=optax.adam(5e-2), chunk_size=10, progress=False, checkpoint=ckpt,
        )
    e = err.value
    assert e.step > 0 and math.isnan(e.diagnostics["max_energy"])
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(e.model))
    # the model whose loss was NaN is not saved: the checkpoint keeps the last chunk end
    assert "not saved: its own loss is not finite" in str(e)
    saved = physgen.load(ckpt, like=model)
    step = physgen.load_metadata(ckpt)["step"]
    assert step < e.step and step % 10 == 0
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(saved))
    assert int(physgen.training.load_state(ckpt, model, ReverseKL(target, 256))[1].step) == step


def test_nan_parameter_is_refused():
    model = DiagNormal(jnp.zeros(2), jnp.ones(2))
    model = eqx.tree_at(lambda m: m.loc, model, jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match=r"non-finite parameters.*\.loc"):
        physgen.fit(jax.random.key(0), model, MaximumLikelihood(), data=jnp.zeros((10, 2)),
                    steps=5, progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        physgen.save("unused.ckpt", model)


def test_wrong_dimensions_are_refused():
    with pytest.raises(ValueError, match=r"event_shape \(3,\)"):
        physgen.fit(jax.random.key(0), StandardNormal((2,)),
                    ReverseKL(_Quadratic(jnp.zeros(3), jnp.ones(3))), steps=2, progress=False)
    with pytest.raises(ValueError, match=r"data has shape \(10, 3\)"):
        physgen.fit(jax.random.key(0), DiagNormal(jnp.zeros(2), jnp.ones(2)),
                    MaximumLikelihood(), data=jnp.zeros((10, 3)), steps=2, progress=False)


def test_checkpoint_round_trip_and_corruption(tmp_path):
    model = DiagNormal(jnp.array([1.0, 2.0]), jnp.array([0.5, 3.0]))
    path = tmp_path / "m.ckpt"
    physgen.save(path, model, {"dim": 2, "kind": "diag"})
    assert not [p for p in tmp_path.iterdir() if p.name != "m.ckpt"]  # no temp files left
    like = DiagNormal(jnp.zeros(2), jnp.ones(2))
    back = physgen.load(path, like)
    assert eqx.tree_equal(back, model)
    assert physgen.load_metadata(path) == {"dim": 2, "kind": "diag"}

    raw = path.read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(raw[:-5])
    with pytest.raises(physgen.CheckpointError, match="truncated"):
        physgen.load(tmp_path / "trunc.ckpt", like)
    flipped = bytearray(raw)
    flipped[-3] ^= 0xFF
    (tmp_path / "flip.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(physgen.CheckpointError, match="checksum"):
        physgen.load(tmp_path / "flip.ckpt", like)
    (tmp_path / "junk.ckpt").write_bytes(b"\x80\x04junk")
    with pytest.raises(physgen.CheckpointError, match="not a physgen checkpoint"):
        physgen.load(tmp_path / "junk.ckpt", like)
    with pytest.raises(physgen.CheckpointError, match=r"leaf .*loc.* shape \(2,\).*\(3,\)"):
        physgen.load(path, DiagNormal(jnp.zeros(3), jnp.ones(3)))


def test_save_is_atomic(tmp_path, monkeypatch):
    model = DiagNormal(jnp.array([1.0, 2.0]), jnp.array([0.5, 3.0]))
    path = tmp_path / "m.ckpt"
    physgen.save(path, model)
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    # Interrupted after the new bytes were written, before the rename.
    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        physgen.save(path, DiagNormal(jnp.zeros(2), jnp.ones(2)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]


_TRACES = []


class _CountingObjective(physgen.objectives.AbstractObjective):
    """Reverse KL that counts how often it is traced (a Python side effect at trace time)."""

    inner: ReverseKL

    def __init__(self, inner):
        self.inner = inner

    def init_state(self, model, key):
        return None

    def loss(self, model, key, batch, state, step):
        _TRACES.append(1)
        return self.inner.loss(model, key, batch, state, step)


def test_fit_compiles_once_for_all_chunks():
    obj = _CountingObjective(ReverseKL(_Quadratic([1.0, -1.0], [0.5, 2.0]), 8))
    _TRACES.clear()
    physgen.fit(jax.random.key(0), DiagNormal(jnp.zeros(2), jnp.ones(2)), obj, steps=23,
                chunk_size=5, progress=False)  # 5 chunks, the last one padded
    assert len(_TRACES) == 1


def test_jitted_log_prob_traces_once():
    from physgen.flows import neural_spline_flow

    flow = neural_spline_flow(jax.random.key(0), 3, num_layers=2, width=8)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def log_prob(f, x):
        return f.log_prob(x)

    log_prob(flow, jnp.ones((5, 3)))
    log_prob(flow, jnp.zeros((5, 3)))
    with pytest.raises(RuntimeError, match="traced"):
        log_prob(flow, jnp.zeros((6, 3)))  # a new shape must trace again: the counter works


def test_forward_weight_adds_the_forward_kl_gradient_only(x64):
    target = _Quadratic([1.0, -2.0], [0.5, 2.0])
    q = DiagNormal(jnp.array([0.5, -1.0]), jnp.array([1.0, 2.5]))  # wider: bounded weights
    plain = ReverseKL(target, 200_000)
    mixed = ReverseKL(target, 200_000, forward_weight=1.0)
    key = jax.random.key(4)
    def value_and_grad(objective):
        loss = lambda m: objective.loss(m, key, None, None, 0)[:2]  # noqa: E731
        return eqx.filter_value_and_grad(loss, has_aux=True)(q)

    (l0, _), g0 = value_and_grad(plain)
    (l1, aux), g1 = value_and_grad(mixed)
    assert float(l0) == float(l1)  # the printed value is still the reverse KL
    # analytic KL(p‖q) and its gradient in the means: -(μ_p - μ_q)/σ_q²
    mp, sp = np.array([1.0, -2.0]), np.array([0.5, 2.0])
    mq, sq = np.array([0.5, -1.0]), np.array([1.0, 2.5])
    kl_pq = np.sum(np.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5)
    assert abs(float(aux["forward_kl"]) - kl_pq) < 0.02
    np.testing.assert_allclose(g1.loc - g0.loc, -(mp - mq) / sq**2, atol=0.03)


def test_boltzmann_generator_checks_shapes_at_construction():
    target = _Quadratic(jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match=r"samples shape \(2,\).*event_shape \(3,\)"):
        physgen.BoltzmannGenerator(StandardNormal((2,)), target)
    bg = physgen.BoltzmannGenerator(StandardNormal((3,)), target)
    x, log_w = bg.sample_and_log_weights(jax.random.key(0), 10)
    # q = N(0, I) and p̃ = exp(-|x|²/2): log w = log Z = (3/2) log 2π for every sample
    np.testing.assert_allclose(log_w, 1.5 * math.log(2 * math.pi), rtol=1e-5)


def test_a_fresh_equal_optimizer_does_not_recompile_fit():
    """A new ``optax.adam(1e-3)`` (new closures) for every ``fit`` call: the second call
    compiles nothing, while a different learning rate does compile (the count works)."""
    import optax

    compiles = []

    def listener(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    data = jax.random.normal(jax.random.key(0), (64, 2))
    flow = physgen.flows.real_nvp(jax.random.key(1), 2, num_layers=1, width=4, depth=1)
    kw = dict(data=data, steps=3, batch_size=8, chunk_size=3, progress=False)
    objective = physgen.objectives.MaximumLikelihood()
    physgen.fit(jax.random.key(2), flow, objective, optimizer=optax.adam(1.234e-3), **kw)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        physgen.fit(jax.random.key(3), flow, physgen.objectives.MaximumLikelihood(),
                    optimizer=optax.adam(1.234e-3), **kw)
        assert compiles == []
        physgen.fit(jax.random.key(3), flow, objective, optimizer=optax.adam(2e-3), **kw)
        assert len(compiles) >= 1
    finally:
        jax.monitoring.clear_event_listeners()


def test_resumed_run_equals_one_run(tmp_path):
    """N steps, checkpointed, loaded and continued for N more equal 2N steps in one run, for
    a stateless objective with a decaying learning rate and for FAB with its replay buffer
    (both the parameters and the buffer, to float rounding)."""
    import optax

    from physgen.objectives import FAB

    target = _Quadratic([1.0, -1.0], [0.5, 2.0])
    flow = physgen.flows.real_nvp(jax.random.key(1), 2, num_layers=2, width=8, depth=1)
    cases = [
        (ReverseKL(target, 16), 20),
        (FAB(target, 16, num_intermediate=1, buffer_size=64, updates_per_ais=3), 10),
    ]
    for objective, n in cases:
        opt = optax.adam(optax.cosine_decay_schedule(1e-2, 2 * n))
        kw = dict(optimizer=opt, chunk_size=7, progress=False)
        whole, hist, state = physgen.fit(jax.random.key(5), flow, objective, steps=2 * n, **kw)
        ckpt = tmp_path / "run.ckpt"
        physgen.fit(jax.random.key(5), flow, objective, steps=n, checkpoint=ckpt, **kw)
        half, half_state = physgen.training.load_state(ckpt, flow, objective, opt)
        assert int(half_state.step) == n
        resumed, hist2, state2 = physgen.fit(jax.random.key(5), half, objective, steps=n,
                                             state=half_state, **kw)
        np.testing.assert_allclose(hist2["loss"], hist["loss"][n:], rtol=1e-5, atol=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves((whole, state)),
                        jax.tree_util.tree_leaves((resumed, state2)), strict=True):
            if eqx.is_inexact_array(a):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            elif eqx.is_array(a):
                np.testing.assert_array_equal(a, b)


def _conditional_pairs(n, key):
    """``c = ±1`` equally likely, ``x | c ~ N(2c, 0.3²)`` per entry (2-D)."""
    kc, kx = jax.random.split(key)
    c = jnp.where(jax.random.bernoulli(kc, 0.5, (n, 1)), 1.0, -1.0)
    return 2.0 * c + 0.3 * jax.random.normal(kx, (n, 2)), c


def test_fit_trains_a_conditional_flow_on_pairs():
    from physgen.flows import real_nvp

    x, c = _conditional_pairs(4000, jax.random.key(1))
    model = real_nvp(jax.random.key(0), 2, num_layers=2, width=16, depth=1, cond_shape=(1,))
    model, hist, _ = physgen.fit(jax.random.key(2), model, MaximumLikelihood(), data=(x, c),
                              steps=400, learning_rate=1e-2, batch_size=128, progress=False)
    # the rows of x and c stay paired: log q(x | c) beats log q(x | -c) by far (the exact
    # conditional gap is 2·(4²)/(2·0.3²) ≈ 178 nats per example; shuffled rows give ~0)
    xt, ct = _conditional_pairs(500, jax.random.key(3))
    gap = float(jnp.mean(model.log_prob(xt, ct) - model.log_prob(xt, -ct)))
    assert gap > 20.0
    ys = model.sample(jax.random.key(4), (500,), jnp.ones(1))
    np.testing.assert_allclose(np.asarray(jnp.mean(ys, 0)), [2.0, 2.0], atol=0.3)


def test_pair_data_is_checked():
    from physgen.flows import real_nvp

    x, c = _conditional_pairs(10, jax.random.key(1))
    cond = real_nvp(jax.random.key(0), 2, num_layers=1, width=8, depth=1, cond_shape=(1,))
    fit = lambda m, data: physgen.fit(jax.random.key(0), m, MaximumLikelihood(), data=data,  # noqa: E731
                                      steps=1, progress=False)
    with pytest.raises(ValueError, match="unconditional"):
        fit(DiagNormal(jnp.zeros(2), jnp.ones(2)), (x, c))
    with pytest.raises(ValueError, match=r"condition data must have shape \(10, \*\(1,\)\)"):
        fit(cond, (x, c[:9]))
    with pytest.raises(ValueError, match="pair"):
        fit(cond, (x, c, c))
    with pytest.raises(ValueError, match="condition data contains NaN"):
        fit(cond, (x, c.at[3].set(jnp.nan)))


def test_an_update_to_non_finite_parameters_is_refused():
    """Finite loss and gradient but a NaN learning rate: the step is refused and reported."""
    model = DiagNormal(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(physgen.NonFiniteLossError, match="at step 0 ") as err:
        physgen.fit(jax.random.key(0), model, MaximumLikelihood(), data=jnp.ones((8, 2)),
                    steps=3, optimizer=optax.sgd(jnp.nan), progress=False)
    np.testing.assert_array_equal(err.value.model.loc, model.loc)


def _gaussian_target_and_model():
    target = _Quadratic([1.0, -2.0], [0.5, 2.0])
    return target, DiagNormal(jnp.array([0.5, -1.0]), jnp.array([1.0, 2.5]))


def test_path_gradient_same_loss_unbiased_gradient_zero_variance_at_the_optimum(x64):
    """``ReverseKL(path_gradient=True)``: the same loss value; a gradient whose mean over keys
    agrees with the plain estimator's and with the exact ∇KL(q‖p) of two Gaussians; and, at
    q = p, exactly zero for every key while the plain estimator is still noise."""
    target, q = _gaussian_target_and_model()
    plain, path = ReverseKL(target, 64), ReverseKL(target, 64, path_gradient=True)

    def loss_and_grad(objective, model, key):
        loss = lambda m: objective.loss(m, key, None, None, 0)[0]  # noqa: E731
        return eqx.filter_value_and_grad(loss)(model)

    keys = jax.random.split(jax.random.key(0), 400)
    l0, g0 = eqx.filter_vmap(lambda k: loss_and_grad(plain, q, k))(keys)
    l1, g1 = eqx.filter_vmap(lambda k: loss_and_grad(path, q, k))(keys)
    np.testing.assert_allclose(l0, l1, rtol=1e-12)
    # exact ∂KL(q‖p)/∂μ_q = (μ_q − μ_p)/σ_p²
    exact = (np.array([0.5, -1.0]) - np.array([1.0, -2.0])) / np.array([0.5, 2.0]) ** 2
    for g in (g0, g1):
        mean, se = np.mean(g.loc, 0), np.std(g.loc, 0, ddof=1) / math.sqrt(len(keys))
        assert np.all(np.abs(mean - exact) < 4 * se + 1e-12), (mean, se, exact)
    assert np.all(np.std(g1.loc, 0) < np.std(g0.loc, 0))  # lower variance
    exact_q = DiagNormal(target.centre, target.width)
    _, g_at = eqx.filter_vmap(lambda k: loss_and_grad(path, exact_q, k))(keys[:20])
    _, g_plain = eqx.filter_vmap(lambda k: loss_and_grad(plain, exact_q, k))(keys[:20])
    assert float(jnp.max(jnp.abs(g_at.loc))) < 1e-12
    assert float(jnp.max(jnp.abs(g_at.raw_scale))) < 1e-12
    assert float(jnp.std(g_plain.loc)) > 1e-3


def test_mixed_kl_is_the_weighted_sum_of_its_two_losses(x64):
    """``MixedKL = w_ML·NLL(data) + w_KL·E_q[log q + βE]`` with the reverse KL's samples and
    diagnostics, and the NLL of the batch."""
    from physgen.objectives import MixedKL

    target, q = _gaussian_target_and_model()
    batch = jnp.array([[0.0, 1.0], [1.0, -3.0], [2.0, 0.5]])
    key = jax.random.key(3)
    loss, aux, _ = MixedKL(target, 32, weight_ml=0.3, weight_kl=2.0).loss(q, key, batch, None, 0)
    kl, _, _ = ReverseKL(target, 32).loss(q, key, None, None, 0)
    nll = -jnp.mean(q.log_prob(batch))
    np.testing.assert_allclose(loss, 0.3 * nll + 2.0 * kl, rtol=1e-12)
    np.testing.assert_allclose(aux["nll"], nll, rtol=1e-12)
    np.testing.assert_allclose(aux["reverse_kl"], kl, rtol=1e-12)
    with pytest.raises(ValueError, match="needs data"):
        MixedKL(target).loss(q, key, None, None, 0)


def test_fit_checkpoints_the_final_model_and_state_on_success(tmp_path):
    target, q = _gaussian_target_and_model()
    ckpt = tmp_path / "run.ckpt"
    model, hist, state = physgen.fit(jax.random.key(0), q, ReverseKL(target, 16), steps=25,
                                     chunk_size=10, checkpoint=ckpt, metadata={"run": "a"},
                                     progress=False)
    assert physgen.load_metadata(ckpt) == {"run": "a", "step": 25}
    loaded, loaded_state = physgen.training.load_state(ckpt, q, ReverseKL(target, 16))
    assert bool(eqx.tree_equal(loaded, model)) and int(loaded_state.step) == 25
    for a, b in zip(jax.tree_util.tree_leaves(loaded_state), jax.tree_util.tree_leaves(state),
                    strict=True):
        np.testing.assert_array_equal(a, b)
