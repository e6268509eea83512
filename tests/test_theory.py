"""The theory checks (genbench/theory.py) against closed forms computed here, brute force and scipy."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import scipy.stats
import torch

from genbench import GenbenchError
from genbench.metrics.hubness import k_occurrence
from genbench.theory import (
    CHECKS,
    DigitsMLP,
    GDFlowCheckConfig,
    HubnessCheckConfig,
    Quadratic,
    VarianceCheckConfig,
    average_ranks,
    config_problems,
    gd_flow_check,
    gradient_descent,
    hubness_check,
    load_digits_subset,
    skewness,
    spearman,
    variance_check,
)

VARIANCE_KEYS = {
    "distribution", "n", "replicates", "true_variance", "true_sigma",
    "unbiased_mean", "unbiased_stderr", "biased_mean", "biased_stderr",
    "unbiased_ratio", "unbiased_ratio_stderr", "biased_ratio", "biased_ratio_stderr", "expected_biased_ratio",
    "unbiased_mse", "unbiased_mse_stderr", "biased_mse", "biased_mse_stderr",
    "mse_difference", "mse_difference_stderr", "ml_sigma_mean", "ml_sigma_stderr", "ml_sigma_expected",
    "unbiased_mse_exact", "biased_mse_exact",
}


def assert_plain_json(value) -> None:
    """Only dict/list/str/int/float/None (exact types: no numpy scalars), and finite floats."""
    if isinstance(value, dict):
        assert all(type(k) is str for k in value)
        for v in value.values():
            assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain_json(v)
    else:
        assert type(value) in (str, int, float, type(None)), type(value)
    json.dumps(value, allow_nan=False)


def within(value: float, target: float, stderr: float, z: float = 4.0) -> bool:
    return abs(value - target) <= z * stderr


# ==================================================================================================
# variance
# ==================================================================================================
SMALL_VARIANCE = VarianceCheckConfig(sizes=[2, 5, 30], replicates=20000, distributions=["normal", "bernoulli"])


@pytest.fixture(scope="module")
def variance_rows():
    return variance_check(SMALL_VARIANCE)["rows"]


def test_variance_normal_rows_match_the_closed_forms(variance_rows):
    normal = [r for r in variance_rows if r["distribution"] == "normal"]
    assert [r["n"] for r in normal] == [2, 5, 30]
    for r in normal:
        n = r["n"]
        assert within(r["unbiased_ratio"], 1.0, r["unbiased_ratio_stderr"])
        assert within(r["biased_ratio"], (n - 1) / n, r["biased_ratio_stderr"])
        assert within(r["unbiased_mse"], 2 / (n - 1), r["unbiased_mse_stderr"])             # Var of chi2_{n-1}/(n-1)
        assert within(r["biased_mse"], (2 * n - 1) / n**2, r["biased_mse_stderr"])          # variance + bias^2
        gamma_form = math.sqrt(2 / n) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))
        assert within(r["ml_sigma_mean"], gamma_form, r["ml_sigma_stderr"])
        assert r["ml_sigma_expected"] == pytest.approx(gamma_form, rel=1e-12)
        assert r["unbiased_mse_exact"] == pytest.approx(2 / (n - 1))
        assert r["biased_mse_exact"] == pytest.approx((2 * n - 1) / n**2)
        # the paired difference is the difference of the two MSEs, and for the normal it is clearly negative
        assert r["mse_difference"] == pytest.approx(r["biased_mse"] - r["unbiased_mse"], rel=1e-9, abs=1e-12)
        assert r["mse_difference"] + 4 * r["mse_difference_stderr"] < 0


def test_variance_rows_bernoulli_and_format(variance_rows):
    assert all(set(r) == VARIANCE_KEYS for r in variance_rows)
    assert_plain_json({"rows": variance_rows})
    bern = [r for r in variance_rows if r["distribution"] == "bernoulli"]
    assert all(r["true_variance"] == pytest.approx(0.3 * 0.7) for r in bern)
    assert all(r["ml_sigma_expected"] is None and r["unbiased_mse_exact"] is None for r in bern)
    assert all(within(r["unbiased_ratio"], 1.0, r["unbiased_ratio_stderr"]) for r in bern)


def test_variance_is_deterministic_and_cells_are_independent(variance_rows):
    small = dataclasses.replace(SMALL_VARIANCE, replicates=2000)
    assert variance_check(small) == variance_check(small)
    alone = variance_check(dataclasses.replace(small, sizes=[5], distributions=["bernoulli"]))["rows"]
    assert alone == [r for r in variance_check(small)["rows"] if r["distribution"] == "bernoulli" and r["n"] == 5]
    assert variance_check(dataclasses.replace(small, seed=1)) != variance_check(small)


@pytest.mark.parametrize("key, value", [("sizes", [1, 5]), ("sizes", []), ("replicates", 1),
                                        ("distributions", ["cauchy"]), ("bernoulli_p", 1.0), ("bernoulli_p", 0.0)])
def test_variance_bad_settings_name_the_key(key, value):
    with pytest.raises(GenbenchError, match=rf"variance\.{key}"):
        variance_check(dataclasses.replace(SMALL_VARIANCE, **{key: value}))


# ==================================================================================================
# hubness
# ==================================================================================================
def brute_force_k_occurrence(x: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros(len(x), dtype=np.int64)
    for i in range(len(x)):
        dist = [(float(np.sqrt(((x[i] - x[j]) ** 2).sum())), j) for j in range(len(x)) if j != i]
        for _, j in sorted(dist)[:k]:
            counts[j] += 1
    return counts


@pytest.mark.parametrize("k, chunk", [(1, 1000), (3, 16), (7, 25)])
def test_k_occurrence_matches_a_brute_force_double_loop(k, chunk):
    x = torch.randn((60, 5), generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    counts = k_occurrence(x, k, chunk=chunk)
    expected = brute_force_k_occurrence(x.numpy(), k)
    assert counts.tolist() == expected.astype(float).tolist()
    assert int(counts.sum()) == 60 * k


def test_skewness_and_spearman_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=300)
    assert skewness(torch.tensor(x)) == pytest.approx(scipy.stats.skew(x, bias=True), rel=1e-10)
    a, b = rng.integers(0, 8, size=200), rng.integers(0, 5, size=200) + 0.1 * rng.integers(0, 3, size=200)
    assert len(np.unique(a)) < 20 and len(np.unique(b)) < 40   # many ties in both
    np.testing.assert_array_equal(average_ranks(torch.tensor(a)).numpy(), scipy.stats.rankdata(a))
    b = b + a  # correlated with ties
    assert spearman(torch.tensor(a), torch.tensor(b)) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, rel=1e-10)


def test_hubness_grows_with_dimension_and_hubs_sit_near_the_mean():
    cfg = HubnessCheckConfig(n=500, ks=[5], dims=[2, 256], resamples=3)
    result = hubness_check(cfg)
    assert_plain_json(result)
    low, high = result["rows"]
    assert (low["d"], high["d"]) == (2, 256) and len(high["skewness_values"]) == 3
    assert high["skewness_mean"] > low["skewness_mean"] + 1
    assert high["correlation_mean"] < -0.5
    assert hubness_check(cfg) == result


@pytest.mark.parametrize("key, value", [("ks", [0]), ("ks", [500]), ("dims", [0]), ("resamples", 1), ("n", 1)])
def test_hubness_bad_settings_name_the_key(key, value):
    with pytest.raises(GenbenchError, match=rf"hubness\.{key}"):
        hubness_check(dataclasses.replace(HubnessCheckConfig(n=500), **{key: value}))


# ==================================================================================================
# gdflow
# ==================================================================================================
SMALL_GDFLOW = GDFlowCheckConfig(learning_rates=[0.04, 0.02, 0.01], horizon=0.4, instances=2, mlp_hidden=8,
                                 mlp_examples=100)


@pytest.fixture(scope="module")
def gdflow_small():
    return gd_flow_check(SMALL_GDFLOW)


def test_gdflow_closed_forms_agree_with_the_ode_solver(gdflow_small):
    assert gdflow_small["ode_check"] < 1e-8
    assert_plain_json(gdflow_small)
    assert [r["steps"] for r in gdflow_small["rows"]] == [10, 20, 40] * 2


def test_gdflow_fitted_slopes_are_one_and_two(gdflow_small):
    fits = {f["problem"]: f for f in gdflow_small["fits"]}
    assert set(fits) == {"quadratic", "mlp"}
    for f in fits.values():
        assert all(abs(s - 1) < 0.2 for s in f["plain_slopes"]) and abs(f["plain_slope_mean"] - 1) < 0.2
        assert all(abs(s - 2) < 0.2 for s in f["modified_slopes"]) and abs(f["modified_slope_mean"] - 2) < 0.2


def test_one_dimensional_quadratic_errors_are_order_eta_and_eta_squared():
    a, theta0, horizon = 1.5, torch.tensor([0.8], dtype=torch.float64), 1.0
    model = Quadratic(torch.tensor([[a]], dtype=torch.float64))

    def errors(eta: float) -> tuple[float, float]:
        steps = round(horizon / eta)
        gd = (1 - a * eta) ** steps * 0.8                                   # independent closed forms
        plain, modified = math.exp(-a * horizon) * 0.8, math.exp(-(a + eta * a**2 / 2) * horizon) * 0.8
        # ... and the module's GD iteration and closed-form flows agree with them
        assert float(gradient_descent(model.gradient, theta0, eta, steps)) == pytest.approx(gd, rel=1e-12)
        got_plain, got_modified = model.flows(theta0, eta, horizon)
        assert (float(got_plain), float(got_modified)) == pytest.approx((plain, modified), rel=1e-12)
        assert float(model.modified_gradient(theta0, eta)) == pytest.approx((a + eta * a**2 / 2) * 0.8, rel=1e-14)
        return abs(gd - plain), abs(gd - modified)

    (p1, m1), (p2, m2) = errors(0.01), errors(0.005)
    assert p1 / p2 == pytest.approx(2, rel=0.02)
    assert m1 / m2 == pytest.approx(4, rel=0.02)


def test_mlp_hessian_vector_product_matches_finite_differences():
    model = DigitsMLP(*load_digits_subset(50), hidden=6)
    g = torch.Generator().manual_seed(0)
    theta = model.init(g) + 0.1 * torch.randn(model.size, generator=g, dtype=torch.float64)
    v = torch.randn(model.size, generator=g, dtype=torch.float64)
    eps = 1e-5
    fd = (model.gradient(theta + eps * v) - model.gradient(theta - eps * v)) / (2 * eps)
    hv = model.hessian_vector_product(theta, v)
    torch.testing.assert_close(hv, fd, rtol=1e-6, atol=1e-8)
    grad = model.gradient(theta)
    torch.testing.assert_close(model.modified_gradient(theta, 0.1),
                               grad + 0.05 * model.hessian_vector_product(theta, grad), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("key, value", [("horizon", 0.33), ("learning_rates", [0.01]),
                                        ("learning_rates", [0.01, -0.02]), ("instances", 1), ("problems", ["resnet"]),
                                        ("mlp_examples", 5000), ("rtol", 0.0)])
def test_gdflow_bad_settings_name_the_key(key, value):
    with pytest.raises(GenbenchError, match=rf"gdflow\.{key}"):
        gd_flow_check(dataclasses.replace(SMALL_GDFLOW, **{key: value}))


def test_default_configs_are_valid():
    for name, (config_cls, _) in CHECKS.items():
        assert config_problems(name, config_cls(), f"theory.{name}") == []
    assert config_problems("gdflow", GDFlowCheckConfig(horizon=1.01), "theory.gdflow")[0].startswith(
        "theory.gdflow.horizon")
