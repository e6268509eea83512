"""Known answers for bits/dim and the dequantization convention (genbench.metrics.likelihood)."""
import math

import numpy as np
import pytest
import torch

from genbench import GenbenchError
from genbench.metrics import likelihood as lk

D = 3 * 8 * 8


def test_uniform_density_on_unit_cube_is_exactly_8_bits_per_dim():
    nll_cont = torch.zeros(5, dtype=torch.float64)  # p(y) = 1 on [0, 1)^D
    bpd = lk.bits_per_dim(nll_cont, D, space="unit_cube")
    assert torch.equal(bpd, torch.full((5,), 8.0, dtype=torch.float64))
    assert lk.nats_to_bits_per_dim(lk.continuous_to_discrete_nll(0.0, D), D) == pytest.approx(8.0, abs=1e-12)
    # the same model seen as a uniform pmf over the 256 values
    assert lk.bits_per_dim(D * math.log(256), D, space="discrete") == pytest.approx(8.0, abs=1e-12)


def test_factorised_gaussian_matches_its_analytic_bits_per_dim():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, D), dtype=torch.uint8, generator=gen)
    mu = torch.rand(D, generator=gen, dtype=torch.float64)
    sigma = 0.1 + 0.3 * torch.rand(D, generator=gen, dtype=torch.float64)

    def nll_cont(y):  # -log N(y; mu, sigma^2), summed over dims
        return (0.5 * math.log(2 * math.pi) + sigma.log() + (y - mu) ** 2 / (2 * sigma**2)).sum(-1)

    draws = 2000
    y = lk.dequantize(x.expand(draws, -1, -1), gen).double()  # draws x 4 x D
    monte_carlo = lk.bits_per_dim(nll_cont(y).mean(0), D, space="unit_cube")

    # E_u[(y - mu)^2] with y = (x + u)/256, u ~ U[0,1): (x/256 + 1/512 - mu)^2 + 1/(12 * 256^2)
    second_moment = (x.double() / 256 + 1 / 512 - mu) ** 2 + 1 / (12 * 256**2)
    analytic_nats = (0.5 * math.log(2 * math.pi) + sigma.log() + second_moment / (2 * sigma**2)).sum(-1)
    analytic = (analytic_nats + D * math.log(256)) / (D * math.log(2))
    torch.testing.assert_close(monte_carlo, analytic, rtol=0, atol=1e-4)
    assert not torch.allclose(monte_carlo, analytic + 1e-3, rtol=0, atol=1e-4)


def test_bin_constant_density_gives_the_discrete_likelihood_exactly():
    # a density constant on each bin equals 256 * P(x) there: the dequantization bound is tight
    gen = torch.Generator().manual_seed(1)
    pmf = torch.rand(256, generator=gen, dtype=torch.float64) + 0.1
    pmf /= pmf.sum()
    x = torch.randint(0, 256, (6, D), dtype=torch.uint8, generator=gen)
    y = lk.dequantize(x, gen)
    nll_cont = -(256 * pmf[(y * 256).floor().long()]).log().sum(-1)
    nll_discrete = -pmf[x.long()].log().sum(-1)
    torch.testing.assert_close(
        lk.bits_per_dim(nll_cont, D, space="unit_cube"), lk.bits_per_dim(nll_discrete, D, space="discrete")
    )


def test_dequantize_range_bins_and_determinism():
    x = torch.arange(256, dtype=torch.uint8).repeat(400)
    y = lk.dequantize(x, torch.Generator().manual_seed(3))
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert y.min() >= 0 and y.max() < 1
    assert torch.equal((y * 256).floor().to(torch.uint8), x)  # every value stays in its own bin
    assert torch.equal(y, lk.dequantize(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(y, lk.dequantize(x, torch.Generator().manual_seed(4)))
    noise = y.double() * 256 - x.double()
    assert abs(noise.mean().item() - 0.5) < 0.01 and abs(noise.var().item() - 1 / 12) < 0.005
    # top of the range: u as close to 1 as the grid allows still gives y < 1
    assert lk.dequantize(torch.full((10_000,), 255, dtype=torch.uint8), torch.Generator().manual_seed(0)).max() < 1


def test_affine_rescaling_and_input_errors():
    # a uniform density on [-1, 1)^D has -log p_z = D log 2, i.e. -log p_y = 0 on [0, 1)^D
    assert lk.affine_to_unit_cube_nll(D * math.log(2), D, scale=2.0) == pytest.approx(0.0, abs=1e-9)
    assert isinstance(lk.nats_to_bits_per_dim(np.array([1.0]), D), np.ndarray)
    with pytest.raises(GenbenchError, match="uint8"):
        lk.dequantize(torch.zeros(3), None)
    with pytest.raises(GenbenchError, match="space"):
        lk.bits_per_dim(1.0, D, space="continuous")
    with pytest.raises(GenbenchError, match="kind"):
        lk.check_kind("bound")
    assert lk.LIKELIHOOD_KINDS == ("exact", "elbo", "iwae", "vlb", "estimate")
