"""GAN: the WGAN-GP penalty, spectral normalisation, the no-density type, training by fit."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import physgen
from physgen.gan import (
    GAN,
    WGANGP,
    Critic,
    NoDensityError,
    NonSaturatingLoss,
    gradient_penalty,
    player_labels,
    spectral_norm_estimate,
)
from physgen.metrics import require_density


def test_gradient_penalty_zero_for_unit_norm_linear_critic(x64):
    key = jax.random.key(0)
    w = jnp.array([0.6, -0.8, 0.0])  # |w| = 1: D is exactly 1-Lipschitz with |∇D| = 1
    real = jax.random.normal(jax.random.key(1), (64, 3))
    fake = 3.0 + jax.random.normal(jax.random.key(2), (64, 3))
    assert float(gradient_penalty(lambda x: w @ x + 0.3, key, real, fake)) < 1e-20
    # |w| = 2: (|∇D| − 1)² = 1 at every interpolate
    assert np.isclose(gradient_penalty(lambda x: 2 * w @ x, key, real, fake), 1.0, rtol=1e-12)
    # through the Critic module and the WGAN-GP loss: penalty zero, loss = E_G[D] − E_p[D]
    critic, state = eqx.nn.make_with_state(Critic)(3, key=key, depth=0)
    critic = eqx.tree_at(
        lambda c: (c.layers[0].weight, c.layers[0].bias), critic, (w[None, :], jnp.array([0.3]))
    )
    loss, (_, aux) = WGANGP(10.0).critic_loss(critic, state, key, real, fake)
    assert float(aux["gradient_penalty"]) < 1e-20
    np.testing.assert_allclose(loss, jnp.mean(fake @ w) - jnp.mean(real @ w), rtol=1e-12)


def test_spectral_norm_converges_to_largest_singular_value(x64):
    # close top singular values: the power iteration converges slowly, like (2.9/3)^(2t)
    u, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (4, 4)))
    v, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(1), (3, 3)))
    sing = jnp.array([3.0, 2.9, 0.5])
    weight = u[:, :3] @ jnp.diag(sing) @ v.T
    lin = eqx.tree_at(lambda m: m.weight, eqx.nn.Linear(3, 4, key=jax.random.key(2)), weight)
    sn, state = eqx.nn.make_with_state(eqx.nn.SpectralNorm)(lin, "weight", key=jax.random.key(3))
    x = jnp.ones(3)

    def body(state, _):
        state = sn(x, state)[1]
        return state, spectral_norm_estimate(sn, state)

    state, sigmas = eqx.filter_jit(lambda s: jax.lax.scan(body, s, length=400))(state)
    errors = np.abs(np.asarray(sigmas) - 3.0)
    assert errors[-1] < 1e-8
    assert errors[0] > 1e3 * errors[-1]  # it converged here, not at initialisation
    # the normalised layer has operator norm 1: maximal gain along the top right-singular vector
    y, _ = sn(v[:, 0], state, inference=True)
    assert np.isclose(jnp.linalg.norm(y - lin.bias), 1.0, atol=1e-8)


def test_spectrally_normalised_critic_is_1_lipschitz(x64):
    critic, state = eqx.nn.make_with_state(Critic)(
        2, key=jax.random.key(0), width=16, depth=2, spectral_norm=True
    )
    critic = jax.tree_util.tree_map(lambda a: 5 * a if eqx.is_inexact_array(a) else a, critic)
    step = eqx.filter_jit(lambda c, s: c(jnp.zeros(2), s)[1])
    for _ in range(200):
        state = step(critic, state)
    xs = 3 * jax.random.normal(jax.random.key(1), (200, 2))
    grads = jax.vmap(jax.grad(lambda x: critic(x, state, inference=True)[0]))(xs)
    assert float(jnp.max(jnp.linalg.norm(grads, axis=-1))) <= 1.0 + 1e-6


def test_gan_is_a_sampler_without_density():
    gan, state = eqx.nn.make_with_state(GAN)(2, 2, key=jax.random.key(0), width=8, depth=1)
    assert gan.sample(jax.random.key(1), (3, 5)).shape == (3, 5, 2)
    with pytest.raises(NoDensityError, match="sampler without density"):
        gan.log_prob(jnp.zeros((4, 2)))
    with pytest.raises(NoDensityError, match="sampler without density"):
        gan.sample_and_log_prob(jax.random.key(0), (4,))
    with pytest.raises(NoDensityError, match="GAN"):
        require_density(gan, "reweighting")
    with pytest.raises(NoDensityError, match="sampler without density"):
        physgen.fit(
            jax.random.key(0),
            gan,
            physgen.objectives.MaximumLikelihood(),
            data=jnp.zeros((8, 2)),
            steps=1,
            progress=False,
        )
    # the entry points that need log q(x) refuse it by type, before any computation
    target = physgen.targets.DoubleWell()
    with pytest.raises(NoDensityError, match="BoltzmannGenerator"):
        physgen.BoltzmannGenerator(gan, target)
    with pytest.raises(NoDensityError, match="FlowIndependenceMetropolis"):
        physgen.samplers.FlowIndependenceMetropolis(gan)


def test_non_saturating_loss_at_an_uninformative_critic():
    """D ≡ 0 (σ(D) = ½): L_D = 2 log 2, L_G = log 2."""
    critic, state = eqx.nn.make_with_state(Critic)(2, key=jax.random.key(0), depth=0)
    critic = jax.tree_util.tree_map(lambda a: jnp.zeros_like(a) if eqx.is_array(a) else a, critic)
    real, fake = jnp.ones((8, 2)), -jnp.ones((8, 2))
    ld, _ = NonSaturatingLoss().critic_loss(critic, state, jax.random.key(0), real, fake)
    lg, _ = NonSaturatingLoss().generator_loss(critic, state, fake)
    assert np.isclose(ld, 2 * np.log(2)) and np.isclose(lg, np.log(2))


def test_fit_moves_the_generator_to_the_data():
    """1-D data N(3, 0.5²): 300 non-saturating GAN steps of fit bring the sample mean from
    ~0 to ~3 and the standard deviation near 0.5; the critic's state comes back in the
    training state."""
    import optax

    data = 3.0 + 0.5 * jax.random.normal(jax.random.key(0), (2000, 1))
    gan = GAN(1, 1, key=jax.random.key(1), width=16, depth=2)
    before = float(jnp.mean(gan.sample(jax.random.key(2), (2000,))))
    gan, hist, state = physgen.fit(
        jax.random.key(3), gan, NonSaturatingLoss(), data=data, steps=300, batch_size=64,
        optimizer=optax.adam(3e-3, b1=0.5, b2=0.9), chunk_size=100, progress=False,
    )
    after = gan.sample(jax.random.key(2), (2000,))
    assert set(hist) >= {"critic_loss", "generator_loss", "d_real", "d_fake"}
    assert hist["critic_loss"].shape == (300,)
    assert isinstance(state.objective_state, eqx.nn.State)
    assert abs(before - 3.0) > 1.5
    assert abs(float(jnp.mean(after)) - 3.0) < 0.5
    assert 0.25 < float(jnp.std(after)) < 1.0


def test_gan_loss_gives_each_player_its_own_gradient(x64):
    """∇_critic of the objective is ∇ L_D and ∇_generator is ∇ L_G; player_labels splits
    the two for optax.multi_transform (a frozen critic leaves the critic unchanged)."""
    import optax

    data = jax.random.normal(jax.random.key(0), (16, 2))
    gan = GAN(2, 2, key=jax.random.key(1), width=8, depth=1)
    loss = WGANGP(3.0)
    state = loss.init_state(gan, jax.random.key(0))
    key = jax.random.key(4)
    grads = eqx.filter_grad(lambda m: loss.loss(m, key, data, state, 0)[0])(gan)
    k_z, k_c = jax.random.split(key)
    fake = gan.generator.sample(k_z, (16,))
    g_d = eqx.filter_grad(lambda c: loss.critic_loss(c, state, k_c, data, fake)[0])(gan.critic)
    g_g = eqx.filter_grad(
        lambda g: loss.generator_loss(gan.critic, state, g.sample(k_z, (16,)))[0])(gan.generator)
    for a, b in zip(jax.tree_util.tree_leaves((grads.critic, grads.generator)),
                    jax.tree_util.tree_leaves((g_d, g_g)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    opt = optax.multi_transform({"critic": optax.set_to_zero(), "generator": optax.adam(1e-2)},
                                player_labels)
    trained, _, _ = physgen.fit(jax.random.key(5), gan, loss, data=data, steps=5, batch_size=8,
                                optimizer=opt, progress=False)
    assert bool(eqx.tree_equal(eqx.filter(trained.critic, eqx.is_array),
                               eqx.filter(gan.critic, eqx.is_array)))
    assert not eqx.tree_equal(trained.generator, gan.generator)


def test_gan_loss_refuses_a_gan_made_with_state():
    gan, _ = eqx.nn.make_with_state(GAN)(2, 2, key=jax.random.key(1), width=8, depth=1,
                                         spectral_norm=True)
    with pytest.raises(ValueError, match=r"GAN\(\.\.\.\)"):
        NonSaturatingLoss().init_state(gan, jax.random.key(0))


def test_fit_stops_a_gan_at_the_first_non_finite_step():
    """An update that would make the parameters NaN (finite loss and gradient, NaN learning
    rate): training stops at that step, names it, and returns the GAN from before."""
    import optax

    data = jax.random.normal(jax.random.key(0), (100, 1))
    gan = GAN(1, 1, key=jax.random.key(1), width=8, depth=1)
    with pytest.raises(physgen.NonFiniteLossError, match=r"NonSaturatingLoss loss .* at step 0 ") \
            as err:
        physgen.fit(jax.random.key(3), gan, NonSaturatingLoss(), data=data, steps=10,
                    batch_size=16, optimizer=optax.sgd(jnp.nan), chunk_size=4, progress=False)
    assert err.value.step == 0
    for before, after in zip(jax.tree_util.tree_leaves(eqx.filter(gan, eqx.is_array)),
                             jax.tree_util.tree_leaves(eqx.filter(err.value.model, eqx.is_array)),
                             strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("seed", [0, 1])
def test_gan_learns_the_eight_gaussians(seed):
    """The quality test the families smoke test defers to: 2,000 non-saturating steps on the
    eight-Gaussian ring give precision > 0.8 and recall > 0.5 (k = 3 nearest neighbours,
    2,000 samples; measured 0.96 / 0.73–0.78). At 1,000 steps recall is still 0.01–0.24,
    and a GAN that learnt nothing has ~0 of both: the thresholds can fail."""
    import optax

    from physgen.datasets import get_dataset
    from physgen.metrics import precision_recall

    ring = get_dataset("8gaussians")
    data, test = ring.sample(jax.random.key(0), 20000), ring.sample(jax.random.key(9), 2000)
    gan = GAN(2, 2, key=jax.random.key(seed), width=64, depth=3)
    gan, _, _ = physgen.fit(jax.random.key(10 + seed), gan, NonSaturatingLoss(), data=data,
                            steps=2000, batch_size=256, optimizer=optax.adam(1e-3, b1=0.5, b2=0.9),
                            progress=False)
    precision, recall = precision_recall(test, gan.sample(jax.random.key(3), (2000,)), k=3)
    assert float(precision.value) > 0.8 and float(recall.value) > 0.5, (precision, recall)
