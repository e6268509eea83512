"""Every registered model: shapes, value range, no NaN, one step, determinism; and the VAE's maths."""
from __future__ import annotations

import math

import pytest
import torch

from genbench.models import MODELS, Optimization, build_model
from genbench.models.nn import discretized_logistic_log_prob, gaussian_kl_to_standard

# the smallest configuration of each family, for fast tests
TINY = {
    "vae": {"latent_dim": 4, "hidden_channels": 8, "hidden_units": 32},
    "fvae": {"latent_dim": 4, "hidden_channels": 8, "hidden_units": 32, "flow_layers": 2, "flow_hidden": 16},
    "nice": {"coupling_layers": 2, "hidden_units": 16, "hidden_layers": 1},
    "realnvp": {"levels": 2, "hidden_channels": 8, "res_blocks": 0},
    "glow": {"levels": 2, "steps_per_level": 1, "hidden_channels": 8},
    "iresnet": {"levels": 1, "blocks_per_level": 1, "hidden_channels": 8, "series_terms_eval": 3,
                "hutchinson_samples_eval": 1},
    "tarflow": {"patch_size": 7, "blocks": 2, "width": 16, "layers_per_block": 1, "heads": 2},
    **{gan: {"latent_dim": 8, "hidden": 8} for gan in ("sgan", "wgan_gp", "wgan_div", "gan_qp", "ogan")},
    "meg": {"latent_dim": 8, "hidden": 8, "mcmc_steps": 2},
    "igebm": {"hidden": 8, "langevin_steps": 2, "buffer_size": 64, "sample_steps": 2},
    "ddpm": {"channels": 8, "channel_mults": [1, 2], "timesteps": 20, "sampling_steps": 5, "likelihood_steps": 20,
             "steps_table": [2], "nll_table": [2], "gamma_samples": 4, "ode_rtol": 1e-2, "ode_atol": 1e-2},
    "catvae": {"latents": 4, "classes": 3, "hidden": [16]},
    "codebook": {"quantizer": "fsq", "levels": [3, 3], "hidden": 8, "res_blocks": 1, "ae_steps": 2, "prior_width": 16,
                 "prior_layers": 1, "prior_heads": 2},
    # one GLO step then IMLE steps (test_training_steps_are_deterministic takes 3)
    "glann": {"latent_dim": 8, "hidden": 8, "glo_steps": 1, "noise_dim": 4, "imle_hidden": 16, "imle_layers": 1,
              "imle_candidates_per_code": 2, "val_samples": 4},
}
TRAIN_SET = 16  # a per-example model's training-set size (GLANN's codes); batches index into it
SHAPE = {"image": (1, 28, 28)}


def make(name: str, seed: int = 0):
    torch.manual_seed(seed)
    spec = MODELS[name]
    model = build_model(name, TINY[name], SHAPE[spec.data_kinds[0]])
    if hasattr(model, "attach_training_set"):  # per-example parameters, sized before the optimisers (as the trainer)
        model.attach_training_set(TRAIN_SET)
    if hasattr(model, "calibrate"):  # post-training statistics (Analytic-DPM's Gamma_n), as the trainer does
        model.calibrate(batch(model.data_shape), torch.Generator().manual_seed(seed))
    return model


def batch(shape, n=8, seed=0):
    return torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def train_batch(model, n=8, seed=0):
    """What the trainer hands `training_step`: images, or (images, their training-set indices)."""
    x = batch(model.data_shape, n, seed)
    if getattr(model, "per_example", False):
        return x, torch.randperm(TRAIN_SET, generator=torch.Generator().manual_seed(seed))[:n]
    return x


# the supervised models (genbench.models.accuracy: no samples, (inputs, targets) batches) are tested in
# test_accuracy.py; BERT-flow (genbench.models.sentence: trained on sentence vectors) in test_sts.py; Deep InfoMax
# (genbench.models.dim: a representation, probed) in test_dim.py
GENERATIVE = sorted(name for name, spec in MODELS.items()
                    if not hasattr(spec.cls, "task_data") and not hasattr(spec.cls, "sentence_task"))


def test_every_model_has_a_tiny_config():
    assert set(GENERATIVE) <= set(TINY) and set(MODELS) - set(GENERATIVE) == {"classify", "multilabel", "bertflow", "dim"}


def test_registering_a_name_twice_is_refused():
    from genbench.models import register_model

    with pytest.raises(ValueError, match="registered twice"):
        register_model("vae", config=dict, data_kinds=("image",), paper="")(type("X", (), {}))


@pytest.mark.parametrize("name", GENERATIVE)
def test_sample_shape_dtype_and_determinism(name):
    model = make(name).eval()
    a = model.sample(6, torch.Generator().manual_seed(1))
    b = model.sample(6, torch.Generator().manual_seed(1))
    assert a.shape == (6, *model.data_shape) and a.dtype == torch.uint8
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", GENERATIVE)
def test_one_step_is_finite_and_changes_the_weights(name):
    model = make(name)
    opt = Optimization(model.configure_optimizers(1e-3, 0.0), None, None)
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.training_step(train_batch(model), 0, opt, torch.Generator().manual_seed(0))
    assert "loss" in losses and all(math.isfinite(float(v)) for v in losses.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name", GENERATIVE)
def test_training_steps_are_deterministic(name):
    def run():
        model = make(name)
        opt = Optimization(model.configure_optimizers(1e-3, 0.0), None, None)
        g = torch.Generator().manual_seed(0)
        for step in range(3):
            model.training_step(train_batch(model, seed=step), step, opt, g)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(), run())


@pytest.mark.parametrize("name", GENERATIVE)
def test_likelihoods_are_finite_per_example(name):
    model = make(name).eval()
    x = batch(model.data_shape, n=5)
    for kind in model.likelihood_kinds:
        ll = model.log_likelihood(x, kind, torch.Generator().manual_seed(0))
        assert ll.shape == (5,) and torch.isfinite(ll).all()
        # a log-probability of discrete data is never positive
        assert (ll <= 0).all()


def test_discretized_logistic_is_a_distribution_over_256_bins():
    values = torch.arange(256, dtype=torch.uint8)
    for mean, log_scale in ((0.0, -2.0), (0.7, -4.0), (-0.99, -6.0), (0.2, 1.0)):
        logp = discretized_logistic_log_prob(values, torch.full((256,), mean), torch.full((256,), log_scale))
        assert torch.logsumexp(logp, 0).exp().item() == pytest.approx(1.0, abs=2e-4)


def test_gaussian_kl_matches_monte_carlo():
    mean, log_var = torch.tensor([0.5, -1.0]), torch.tensor([-0.3, 0.4])
    z = mean + torch.exp(0.5 * log_var) * torch.randn(400_000, 2, generator=torch.Generator().manual_seed(0))
    log_q = -0.5 * (math.log(2 * math.pi) + log_var + (z - mean) ** 2 / log_var.exp())
    log_p = -0.5 * (math.log(2 * math.pi) + z**2)
    assert (log_q - log_p).mean(0) == pytest.approx(gaussian_kl_to_standard(mean, log_var), abs=1e-2)


@torch.no_grad()
def test_iwae_bound_is_tighter_than_elbo_and_k1_equals_elbo_in_expectation():
    model = make("vae").eval()
    latent = model.config.latent_dim
    model.encoder.net[-1].bias[latent:] = 2.0  # a too-wide q(z|x): a visible gap for IWAE to close
    x = batch(model.data_shape, n=4)
    g = torch.Generator().manual_seed(0)
    elbos = torch.stack([model.elbo(x, g) for _ in range(400)])
    iwae1 = torch.stack([model.iwae(x, 1, g) for _ in range(400)]).mean(0)
    iwae50 = torch.stack([model.iwae(x, 50, g) for _ in range(20)]).mean(0)
    elbo, stderr = elbos.mean(0), elbos.std(0) / 20
    assert ((iwae1 - elbo).abs() < 5 * stderr + 0.5).all()  # L_1 is the ELBO (MC vs closed-form KL)
    assert (iwae50 > elbo + 5 * stderr).all()  # L_50 is strictly tighter here
