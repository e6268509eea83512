"""The categorical VAE (Jang et al. 2017): Gumbel-Softmax, straight-through and score-function estimators
against their definitions and closed forms, the ELBO against brute-force enumeration, the binarizations."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from genbench import GenbenchError
from genbench.models import build_model
from genbench.models.catvae import (categorical_kl_to_uniform, dynamic_binarization, fixed_binarization,
                                    gaussian_gradient_estimates, gumbel_softmax, sample_one_hot, straight_through,
                                    annealed_temperature)


def test_gumbel_max_and_the_gumbel_softmax_argmax_are_distributed_as_the_categorical():
    probs = torch.tensor([0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.1, 0.12, 0.1, 0.08])
    logits = probs.log().expand(100_000, -1)
    for draw in (lambda g: sample_one_hot(logits, g), lambda g: gumbel_softmax(logits, 0.7, g)):
        counts = draw(torch.Generator().manual_seed(0)).argmax(1).bincount(minlength=10).double()
        chi2 = float(((counts - 1e5 * probs.double()) ** 2 / (1e5 * probs.double())).sum())
        assert chi2 < stats.chi2.ppf(0.999, df=9), chi2
    # a wrong distribution is caught by the same statistic
    shifted = (probs.roll(1).log()).expand(100_000, -1)
    counts = sample_one_hot(shifted, torch.Generator().manual_seed(0)).argmax(1).bincount(minlength=10).double()
    assert float(((counts - 1e5 * probs.double()) ** 2 / (1e5 * probs.double())).sum()) > 1000


def test_gumbel_softmax_tends_to_one_hot_as_the_temperature_falls():
    logits = torch.randn(2000, 10, generator=torch.Generator().manual_seed(1))
    largest = [float(gumbel_softmax(logits, tau, torch.Generator().manual_seed(2)).max(1).values.mean())
               for tau in (5.0, 1.0, 0.1, 0.01, 0.001)]
    assert largest == sorted(largest) and largest[-1] > 0.999 and largest[0] < 0.5
    y = gumbel_softmax(logits, 0.5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(y.sum(1), torch.ones(2000))
    with pytest.raises(GenbenchError, match="temperature"):
        gumbel_softmax(logits, 0.0, torch.Generator())


def test_straight_through_is_one_hot_forward_and_the_softmax_gradient_backward():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(5, 10, generator=g, requires_grad=True)
    weights = torch.randn(5, 10, generator=g)
    hard = sample_one_hot(logits.detach(), g)
    z = straight_through(hard, torch.softmax(logits, -1))
    assert torch.equal(z.detach(), hard) and torch.equal(z.detach().sum(1), torch.ones(5))
    (z * weights).sum().backward()
    p = torch.softmax(logits.detach(), -1)
    expected = p * (weights - (p * weights).sum(1, keepdim=True))   # J_softmax^T w
    torch.testing.assert_close(logits.grad, expected)
    # ST Gumbel-Softmax: one-hot of the relaxed sample's argmax forward, the relaxed sample's gradient backward
    l2 = logits.detach().clone().requires_grad_(True)
    l3 = logits.detach().clone().requires_grad_(True)
    hard_gs = gumbel_softmax(l2, 0.5, torch.Generator().manual_seed(5), hard=True)
    soft_gs = gumbel_softmax(l3, 0.5, torch.Generator().manual_seed(5))
    assert torch.equal(hard_gs.detach(), F.one_hot(soft_gs.argmax(1), 10).float())
    (hard_gs * weights).sum().backward()
    (soft_gs * weights).sum().backward()
    torch.testing.assert_close(l2.grad, l3.grad)


def test_reparameterisation_and_score_function_agree_with_the_closed_form_gradient():
    for mu, sigma in ((1.5, 1.0), (-0.7, 0.5)):
        est = gaussian_gradient_estimates(mu, sigma, 200_000, torch.Generator().manual_seed(6))
        for name, (mean, stderr) in est.items():
            assert abs(mean - 2 * mu) < 4 * stderr, (name, mean, stderr)
        assert est["reparameterization"][1] < est["score_function"][1]   # the pathwise one is the quieter
        assert est["reparameterization"][1] == pytest.approx(2 * sigma / math.sqrt(200_000), rel=0.02)


def tiny_model(estimator="gs"):
    torch.manual_seed(0)
    return build_model("catvae", {"estimator": estimator, "latents": 2, "classes": 3, "hidden": [8],
                                  "study_draws": 200, "study_examples": 4, "study_taus": [0.1, 1.0]}, (1, 2, 3))


def test_the_elbo_and_importance_bound_against_brute_force_enumeration():
    model = tiny_model().double()
    xb = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float64).view(2, 1, 2, 3)
    with torch.no_grad():
        log_q = torch.log_softmax(model.logits(xb), -1)                       # (2, 2, 3)
        elbo_exact, log_px = torch.zeros(2, dtype=torch.float64), []
        joint = []
        for a, b in itertools.product(range(3), range(3)):
            z = torch.zeros(2, 2, 3, dtype=torch.float64)
            z[:, 0, a] = z[:, 1, b] = 1
            logits = model.decoder(z.flatten(1))
            log_lik = (xb.flatten(1) * F.logsigmoid(logits) + (1 - xb.flatten(1)) * F.logsigmoid(-logits)).sum(1)
            log_qz = log_q[:, 0, a] + log_q[:, 1, b]
            elbo_exact += log_qz.exp() * (log_lik + 2 * math.log(1 / 3) - log_qz)
            joint.append(log_lik + 2 * math.log(1 / 3))
        log_px = torch.logsumexp(torch.stack(joint, 1), 1)
        kl = sum(log_q[:, n, k].exp() * (log_q[:, n, k] - math.log(1 / 3)) for n in range(2) for k in range(3))
        torch.testing.assert_close(categorical_kl_to_uniform(log_q), kl)
        g = torch.Generator().manual_seed(7)
        draws = torch.stack([model.elbo(xb, g) for _ in range(4000)])
        assert (draws.mean(0) - elbo_exact).abs().max() < 4 * draws.std(0).max() / math.sqrt(4000)
        iw_draws = torch.stack([model.iwae(xb, 50, g) for _ in range(200)])
        iw, iw_se = iw_draws.mean(0), iw_draws.std(0) / math.sqrt(200)
        assert torch.all(iw > elbo_exact) and torch.all(iw <= log_px + 4 * iw_se)   # E[L_k] <= log p(x)
        assert torch.all(log_px - iw < 0.1 * (log_px - elbo_exact))   # L_50 closes most of the gap


def test_each_estimator_trains_and_the_score_function_one_trains_its_baseline():
    x = torch.randint(0, 256, (16, 1, 2, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(8))
    for est in ("sf", "st", "gs", "st-gs"):
        model = tiny_model(est)
        opts = model.configure_optimizers(1e-2, 0.0)
        from genbench.models import Optimization
        before = {k: v.clone() for k, v in model.state_dict().items()}
        out = model.training_step(x, 0, Optimization(opts, None, None), torch.Generator().manual_seed(9))
        assert math.isfinite(float(out["loss"]))
        moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
        assert any(k.startswith("encoder") for k in moved) and any(k.startswith("decoder") for k in moved), est
        assert any(k.startswith("baseline") for k in moved) == (est == "sf")


def test_estimator_study_exact_gradient_and_unbiased_estimators():
    model = tiny_model("sf")
    model.config.study_examples, model.config.study_draws = 32, 4000
    x = torch.randint(0, 256, (32, 1, 2, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(10))
    rows = model.estimator_study(x, torch.Generator().manual_seed(11))
    by = {(r["estimator"], r["tau"]): r for r in rows}
    assert set(by) == {("sf", None), ("st", None), ("gs", 0.1), ("gs", 1.0), ("st-gs", 0.1), ("st-gs", 1.0)}
    # the score function is unbiased: its squared bias, the draws' noise removed, is zero within its error
    sf = by[("sf", None)]
    assert abs(sf["bias2"]) < 4 * sf["bias2_stderr"] + 1e-3 * sf["variance"] / sf["draws"]
    # GS at a high temperature is biased: far more than its error
    assert by[("gs", 1.0)]["bias2"] > 4 * by[("gs", 1.0)]["bias2_stderr"]
    assert all(r["variance"] > 0 and r["exact_norm"] > 0 for r in rows)


def test_binarizations():
    x = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(12))
    fixed = fixed_binarization(x, seed=0)
    assert set(fixed.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(fixed[100:200], fixed_binarization(x[100:200], seed=0))    # batch-independent
    torch.testing.assert_close(fixed.flip(0), fixed_binarization(x.flip(0), seed=0))      # order-independent
    assert not torch.equal(fixed, fixed_binarization(x, seed=1))
    p = x.double() / 255
    z = (fixed.double().mean() - p.mean()) / (p * (1 - p)).mean().div(x.numel()).sqrt()
    assert abs(float(z)) < 4
    g = torch.Generator().manual_seed(13)
    assert not torch.equal(dynamic_binarization(x, g), dynamic_binarization(x, g))
    assert set(fixed_binarization(torch.tensor([[0, 255]], dtype=torch.uint8), 0).tolist()[0]) == {0.0, 1.0}


def test_temperature_schedule_and_bad_settings():
    assert annealed_temperature(0, 1.0, 0.5, 1e-4, 500) == 1.0
    assert annealed_temperature(999, 1.0, 0.5, 1e-4, 500) == pytest.approx(math.exp(-0.05))
    assert annealed_temperature(10**6, 1.0, 0.5, 1e-4, 500) == 0.5
    from genbench.config import _model_value_problems
    from genbench.models.catvae import CategoricalVAEConfig
    from genbench.models import MODELS
    assert any("start_tau" in p for p in _model_value_problems(CategoricalVAEConfig, {"start_tau": 0.0}, "m"))
    assert any("min_tau" in p for p in _model_value_problems(CategoricalVAEConfig, {"min_tau": -1.0}, "m"))
    assert any("study_taus" in p for p in _model_value_problems(CategoricalVAEConfig, {"study_taus": [0.1, 0]}, "m"))
    assert any("estimator" in p for p in MODELS["catvae"].config_problems({"estimator": "rebar"}, "m"))
    with pytest.raises(GenbenchError, match="estimator"):
        build_model("catvae", {"estimator": "rebar"}, (1, 28, 28))


def test_verify_compares_the_binarized_bounds_with_their_own_errors():
    from genbench.verify import figures, own_stderrs

    metrics = {"studies": {"binarized": {"elbo": {"nll_nats": 101.0, "stderr": 0.3, "n": 10000},
                                         "iwae": {"nll_nats": 97.0, "stderr": 0.3, "n": 10000, "k": 100},
                                         "binarize_seed": 0}}}
    assert figures(metrics) == {"studies.binarized.elbo.nll_nats": 101.0, "studies.binarized.iwae.nll_nats": 97.0}
    assert own_stderrs(metrics) == {"studies.binarized.elbo.nll_nats": 0.3, "studies.binarized.iwae.nll_nats": 0.3}
