"""Normalizing flows: invertibility, log-determinants against brute-force Jacobians (every layer and
every whole flow, Glow with each form of its 1x1 convolution), the analytic Gaussian bits/dim of an
identity flow, densities that integrate to one, det(exp A) = exp(tr A) behind Glow's W = exp(A), and
the i-ResNet's spectral normalisation and power-series estimator."""
from __future__ import annotations

import math

import pytest
import torch

from genbench import GenbenchError
from genbench.metrics.likelihood import LOG_NUM_BINS, dequantize, nats_to_bits_per_dim
from genbench.models import MODELS, build_model
from genbench.models.flows import (CONV_1X1, ActNorm, AutoregressiveTransformerFlow, Bijector, Chain, Conv1x1,
                                   DiagonalScaling, ExpConv1x1, FlowContext, InvertibleResidualBlock, SpectralNormConv,
                                   exact_residual_logdet, power_series_logdet)

FLOWS = {
    "nice": {"coupling_layers": 4, "hidden_units": 16, "hidden_layers": 1, "prior": "logistic"},
    "realnvp": {"levels": 2, "hidden_channels": 8, "res_blocks": 1},
    "glow": {"levels": 2, "steps_per_level": 2, "hidden_channels": 8},
    "iresnet": {"levels": 1, "blocks_per_level": 2, "hidden_channels": 8},
    "tarflow": {"patch_size": 2, "blocks": 2, "width": 16, "layers_per_block": 1, "heads": 2},
}
# Glow with the other forms of its invertible 1x1 convolution ("glow" is the default LU form)
VARIANTS = {f"glow-{form}": ("glow", dict(FLOWS["glow"], invconv=form)) for form in ("plain", "exp")}
ALL_FLOWS = [*FLOWS, *VARIANTS]
IMAGE, POINTS = (1, 4, 4), (2,)  # D = 16 and 2: full Jacobians are cheap


def flow_config(case: str) -> tuple[str, dict]:
    """(model name, model_config) of a key of FLOWS or VARIANTS."""
    return VARIANTS.get(case, (case, FLOWS.get(case)))


def random_flow(case: str, shape, dtype=torch.float64):
    """A flow whose data-dependent init has run and whose zero-initialised layers are perturbed, so
    that no layer is the identity."""
    torch.manual_seed(0)
    model = build_model(*flow_config(case), shape).to(dtype)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.train()
        model.network.log_prob(inputs(model, 32).to(dtype), FlowContext(g, exact_logdet=True))
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=dtype))
    return model.eval()


def inputs(model, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    if model.points:
        return model.model_input(2 * torch.randn(n, *model.data_shape, generator=g), g).to(dtype)
    return model.model_input(torch.randint(0, 256, (n, *model.data_shape), generator=g, dtype=torch.uint8), g).to(dtype)


def ctx():
    return FlowContext(torch.Generator().manual_seed(0), exact_logdet=True)


def brute_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det d fn(x_i) / d x_i| per example, fn mapping one example (batch of 1) to a flat vector."""
    out = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0)).flatten(), xi)
        out.append(torch.linalg.slogdet(jac.reshape(jac.shape[0], -1))[1])
    return torch.stack(out)


CASES = [(name, shape) for name in ALL_FLOWS for shape in (IMAGE, POINTS)]


@pytest.mark.parametrize("name,shape", CASES)
def test_inverse_of_forward_is_identity_in_float32(name, shape):
    model = random_flow(name, shape, torch.float32)
    y = inputs(model, 8)
    with torch.no_grad():
        latents, _, _ = model.network.forward_latents(y, ctx())
        back = model.network.inverse_latents(latents, ctx())
    assert (back - y).abs().max() < 1e-4 * max(1.0, y.abs().max().item())


@pytest.mark.parametrize("name,shape", CASES)
def test_every_layer_logdet_matches_brute_force_jacobian(name, shape):
    model = random_flow(name, shape)
    seen: list[tuple[Bijector, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0].detach())))
             for m in model.modules() if isinstance(m, Bijector) and not isinstance(m, Chain)]
    model.network.log_prob(inputs(model, 3), ctx())
    for h in hooks:
        h.remove()
    assert len(seen) >= 3
    for layer, x in seen:
        _, logdet = layer(x, ctx())
        expected = brute_logdet(lambda v: layer(v, ctx())[0], x)
        torch.testing.assert_close(logdet, expected, atol=1e-7, rtol=1e-7, msg=f"{type(layer).__name__}")


@pytest.mark.parametrize("name,shape", CASES)
def test_whole_flow_logdet_matches_brute_force_jacobian(name, shape):
    model = random_flow(name, shape)
    y = inputs(model, 3)
    latents, log_pz, logdet = model.network.forward_latents(y, ctx())
    assert sum(z[0].numel() for z in latents) == y[0].numel()  # a bijection of R^D
    expected = brute_logdet(lambda v: torch.cat([z.flatten(1) for z in model.network.forward_latents(v, ctx())[0]], 1),
                            y)
    torch.testing.assert_close(logdet, expected, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("name", ALL_FLOWS)
def test_density_on_the_plane_integrates_to_one(name):
    model = random_flow(name, POINTS)
    ticks = torch.linspace(-12, 12, 481, dtype=torch.float64)
    xx, yy = torch.meshgrid(ticks, ticks, indexing="ij")
    grid = torch.stack([xx.flatten(), yy.flatten()], 1).view(-1, 2, 1, 1)
    with torch.no_grad():
        density = torch.cat([model.network.log_prob(chunk, ctx()) for chunk in grid.split(20000)]).exp()
    step = float(ticks[1] - ticks[0])
    assert float(density.sum()) * step**2 == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name,preprocess_logdet", [("nice", lambda y: 0 * y), ("tarflow", lambda y: 0 * y + math.log(2))])
def test_identity_flow_gives_the_analytic_gaussian_bits_per_dim(name, preprocess_logdet):
    """At initialisation NICE (zero-initialised couplings, unit scaling) and TARFLOW (zero-initialised
    output layers) are the identity after their preprocessing: log p(y) is a Gaussian's, known in
    closed form, per example and in expectation over the dequantization noise."""
    cfg = dict(FLOWS[name], **({"prior": "gaussian"} if name == "nice" else {}))
    model = build_model(name, cfg, IMAGE).eval()
    signed = name == "tarflow"
    x = torch.full((4000, *IMAGE), 37, dtype=torch.uint8)
    x[2000:] = 250
    ll = model.log_likelihood(x, "exact", torch.Generator().manual_seed(3))
    y = dequantize(x, torch.Generator().manual_seed(3))
    z = 2 * y - 1 if signed else y
    per_example = (-0.5 * (z**2 + math.log(2 * math.pi)) + preprocess_logdet(y) - LOG_NUM_BINS).flatten(1).sum(1)
    torch.testing.assert_close(ll, per_example, atol=1e-3, rtol=1e-5)
    for value, half in ((37, ll[:2000]), (250, ll[2000:])):
        a = value / 256
        if signed:  # E[(2a - 1 + 2u/256)^2]
            b = 2 * a - 1
            second_moment = b**2 + 2 * b / 256 + 4 / (3 * 256**2)
        else:  # E[(a + u/256)^2], u ~ U[0, 1)
            second_moment = a**2 + a / 256 + 1 / (3 * 256**2)
        per_dim = -0.5 * (second_moment + math.log(2 * math.pi)) + (math.log(2) if signed else 0) - LOG_NUM_BINS
        analytic_bpd = nats_to_bits_per_dim(-per_dim * 16, 16)
        assert float(nats_to_bits_per_dim(-half, 16).mean()) == pytest.approx(analytic_bpd, abs=2e-4)


def test_actnorm_data_dependent_init_standardises_each_channel():
    layer = ActNorm(3)
    x = torch.randn(64, 3, 5, 5) * torch.tensor([0.1, 2.0, 7.0]).view(1, 3, 1, 1) + 4.0
    y, _ = layer.train()(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    assert int(layer.initialized) == 1 and "initialized" in layer.state_dict()


def test_nice_data_dependent_scaling_starts_at_the_priors_spread_and_keeps_an_exact_logdet():
    x = torch.rand(256, 6, dtype=torch.float64) * torch.tensor([1 / 256, 0.5, 1.0, 3.0, 1e-3, 1.0], dtype=torch.float64)
    layer = DiagonalScaling(6, init_rms=math.pi / math.sqrt(3)).double().train()
    y, logdet = layer(x)
    torch.testing.assert_close(y.square().mean(0).sqrt(), torch.full((6,), math.pi / math.sqrt(3), dtype=torch.float64))
    assert int(layer.initialized) == 1 and "initialized" in layer.state_dict()
    before = layer.log_scale.detach().clone()
    layer(2 * x)  # initialised once: a later batch changes nothing
    torch.testing.assert_close(layer.log_scale.detach(), before)
    torch.testing.assert_close(logdet, brute_logdet(lambda v: layer(v)[0], x))
    assert "initialized" not in DiagonalScaling(6).state_dict()   # the paper's zero start: old checkpoints load
    # the whole NICE flow with it: its log-det against the brute-force Jacobian
    torch.manual_seed(0)
    model = build_model("nice", dict(FLOWS["nice"], scale_init="data"), IMAGE).double().train()
    y = inputs(model, 32)
    model.network.log_prob(y, ctx())
    scaling = [m for m in model.modules() if isinstance(m, DiagonalScaling)][0]
    assert int(scaling.initialized) == 1 and scaling.log_scale.min() > 1.0   # dequantised pixels in [0, 1]: spread up
    y = y[:3]
    _, _, logdet = model.eval().network.forward_latents(y, ctx())
    expected = brute_logdet(lambda v: torch.cat([z.flatten(1) for z in model.network.forward_latents(v, ctx())[0]], 1),
                            y)
    torch.testing.assert_close(logdet, expected, atol=1e-7, rtol=1e-7)


def test_spectral_normalisation_bounds_the_operator_norm_of_the_convolution():
    torch.manual_seed(0)
    layer = SpectralNormConv(2, 3, 3, (2, 4, 4), coeff=0.7, power_iterations=1)
    with torch.no_grad():
        layer.conv.weight.mul_(10)
    layer.power_iterate(200)
    layer.eval()
    weight = layer.normalized_weight().detach()
    jac = torch.autograd.functional.jacobian(
        lambda v: torch.nn.functional.conv2d(v.view(1, 2, 4, 4), weight, padding=1).flatten(), torch.zeros(32))
    assert torch.linalg.matrix_norm(jac, ord=2) == pytest.approx(0.7, rel=1e-3)


def test_iresnet_power_series_converges_to_the_exact_logdet():
    """Hutchinson's estimator is unbiased for each truncated series sum_{k<=n} (-1)^(k+1) tr(J^k) / k
    (computed here from the full Jacobian), and the truncation error obeys |error| <= D sum_{k>n} c^k / k
    for Lip(g) <= c and goes to zero."""
    torch.manual_seed(0)
    coeff = 0.9
    block = InvertibleResidualBlock((2, 3, 3), 8, coeff=coeff, power_iterations=1).double()
    with torch.no_grad():
        for m in block.g:
            if isinstance(m, SpectralNormConv):
                m.conv.weight.mul_(5)
                m.power_iterate(100)
    block.eval()
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    gx = block.g(x)
    exact = exact_residual_logdet(gx, x, create_graph=False)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda v: block.g(v.unsqueeze(0)).flatten(), xi).reshape(18, 18)
                       for xi in x.detach()])
    lip = float(torch.linalg.matrix_norm(jac, ord=2).max())
    assert lip <= coeff + 1e-6
    power, series, errors = torch.eye(18, dtype=torch.float64).expand(3, 18, 18), torch.zeros(3, dtype=torch.float64), {}
    g = torch.Generator().manual_seed(0)
    for n in range(1, 31):
        power = power @ jac
        series = series + (-1) ** (n + 1) / n * torch.diagonal(power, dim1=1, dim2=2).sum(1)
        errors[n] = (series - exact).abs()
        assert (errors[n] <= 18 * sum(lip**k / k for k in range(n + 1, 400)) + 1e-9).all()
        if n in (1, 3, 10):
            draws = torch.stack([power_series_logdet(gx, x, n, 1, g, False) for _ in range(1000)])
            stderr = draws.std(0) / math.sqrt(len(draws))
            assert ((draws.mean(0) - series).abs() < 4 * stderr).all()
    assert errors[30].max() < 1e-3 * errors[1].max()


def test_tarflow_block_is_autoregressive_in_its_order():
    torch.manual_seed(0)
    for reverse in (False, True):
        block = AutoregressiveTransformerFlow(seq_len=5, dim=3, width=16, depth=1, heads=2, reverse=reverse).double()
        with torch.no_grad():
            for p in block.parameters():
                p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(5, 3, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v: block(v.unsqueeze(0))[0][0], x)  # (5, 3, 5, 3)
        dependence = jac.abs().sum((1, 3))  # token i of z on token j of x
        order = list(reversed(range(5))) if reverse else list(range(5))
        for a, i in enumerate(order):
            for j in order[a + 1:]:
                assert dependence[i, j] == 0
        assert dependence[order[-1], order[0]] > 0


def test_tarflow_denoising_is_one_tweedie_step_and_the_no_denoise_row_draws_the_same_points():
    """At initialisation every block is the identity (zero-initialised outputs), so the model density is
    N(0, I) and Tweedie's step y + sigma^2 grad log p(y) is exactly (1 - sigma^2) y: the main sampler's
    points are that multiple of the no-denoise variant's, drawn with the same seed."""
    sigma = 0.3
    model = build_model("tarflow", {"blocks": 2, "width": 16, "layers_per_block": 1, "heads": 2, "noise_std": sigma},
                        (2,))
    variant = model.sample_variants(None)["no-denoise"]
    denoised = model.sample(500, torch.Generator().manual_seed(3))
    raw, _ = variant.draw(500, torch.Generator().manual_seed(3))
    torch.testing.assert_close(denoised, (1 - sigma**2) * raw)
    assert raw.std() > 0.5 and variant.info == {"denoise": False}
    assert build_model("tarflow", {"blocks": 2, "width": 16, "layers_per_block": 1, "heads": 2, "noise_std": 0.0},
                       (2,)).sample_variants(None) == {}  # nothing to denoise, no row


def test_points_flows_sample_float_points():
    model = random_flow("glow", POINTS, torch.float32)
    s = model.sample(7, torch.Generator().manual_seed(0))
    assert s.shape == (7, 2) and s.dtype == torch.float32 and torch.isfinite(s).all()


def test_logdet_study_bias_vanishes_with_terms_and_spread_is_positive():
    from genbench.bench import iresnet_logdet_study

    rows = {r["terms"]: r for r in iresnet_logdet_study(terms=(1, 5, 40))}
    assert abs(rows[1]["truncation_bias"]) > 10 * abs(rows[40]["truncation_bias"])
    assert abs(rows[40]["truncation_bias"]) < 1e-3 and rows[40]["hutchinson_std_one_probe"] > 0


def test_logdet_study_examples_caps_the_study_and_refuses_nonpositive_counts():
    """`logdet_study_examples` (the ci profile's setting) studies the first n of the examples given: its rows
    are the same study on those alone."""
    from genbench.bench import iresnet_logdet_study

    config = {"levels": 1, "blocks_per_level": 1, "hidden_channels": 8}
    x = torch.randint(0, 256, (4, 1, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    torch.manual_seed(0)
    capped = build_model("iresnet", {**config, "logdet_study_examples": 2}, (1, 4, 4))
    whole = build_model("iresnet", config, (1, 4, 4))
    whole.load_state_dict(capped.state_dict())
    rows_capped = iresnet_logdet_study(capped, x, terms=(1, 5))
    rows_first_two = iresnet_logdet_study(whole, x[:2], terms=(1, 5))
    assert [r["examples"] for r in rows_capped] == [2, 2]
    assert rows_capped == rows_first_two
    assert iresnet_logdet_study(whole, x, terms=(1,))[0]["examples"] == 4
    with pytest.raises(GenbenchError, match="logdet_study_examples must be >= 1"):
        build_model("iresnet", {**config, "logdet_study_examples": 0}, (1, 4, 4))


def test_glow_sample_stage_draws_one_row_per_temperature(tmp_path):
    """The sample stage's temperature sweep (Kingma & Dhariwal 2018, fig. 8): one row of the same latent
    noise per temperature, and T = 0 draws the same image in every column (the prior's mode)."""
    import numpy as np
    from PIL import Image

    from genbench.sample import model_figures

    model = build_model("glow", {**FLOWS["glow"], "sweep_temperatures": [0.0, 0.7, 1.0]}, IMAGE).eval()
    with torch.no_grad():  # data-dependent ActNorm init, as the first training step does
        model.log_likelihood(torch.randint(0, 256, (8, *IMAGE), dtype=torch.uint8), "exact", torch.Generator())
    model_figures(model, None, "mnist", tmp_path, seed=0, title="glow")
    assert (tmp_path / "temperatures.png").is_file() and Image.open(tmp_path / "temperatures.png").size[0] > 0
    rows = [model.sample_at_temperature(10, torch.Generator().manual_seed(0), t) for t in (0.0, 0.7)]
    assert all(torch.equal(rows[0][0], img) for img in rows[0]) and not torch.equal(rows[0], rows[1])
    assert np.asarray(rows[1]).dtype == np.uint8


# --- Glow's invertible 1x1 convolution: LU, plain, and W = exp(A) ------------------------------
def test_det_of_the_matrix_exponential_is_the_exponential_of_the_trace():
    """det(exp A) = exp(tr A) for real non-symmetric A (the identity behind ExpConv1x1's log-det)."""
    g = torch.Generator().manual_seed(0)
    for n in range(1, 65):
        a = torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)  # det(exp A) stays near 1
        assert n == 1 or not torch.allclose(a, a.T)
        det = torch.linalg.det(torch.linalg.matrix_exp(a))
        torch.testing.assert_close(det, torch.exp(torch.trace(a)), rtol=1e-10, atol=0, msg=f"n = {n}")


def random_conv(form: str, channels: int, dtype=torch.float64) -> Conv1x1:
    """A 1x1 convolution of the given form, its parameters perturbed away from the initial rotation."""
    torch.manual_seed(0)
    layer = CONV_1X1[form](channels).to(dtype)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=dtype))
    return layer


@pytest.mark.parametrize("form", sorted(CONV_1X1))
def test_conv1x1_logdet_is_h_w_log_det_of_its_weight_and_the_jacobians(form):
    layer = random_conv(form, 5)
    x = torch.randn(2, 5, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _, logdet = layer(x)
    sign, log_abs = torch.linalg.slogdet(layer.weight().detach())
    assert abs(log_abs.item()) > 0.1  # not volume preserving: the test can tell a wrong log-det
    torch.testing.assert_close(logdet, (3 * 2 * log_abs).expand(2), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(logdet, brute_logdet(lambda v: layer(v)[0], x), rtol=1e-10, atol=1e-10)
    if form == "exp":  # det exp(A) = exp(tr A) > 0
        assert sign == 1 and torch.equal(layer.log_abs_det(), torch.trace(layer.log_weight))


def test_exp_conv1x1_needs_no_determinant_and_inverts_by_exp_of_minus_a(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("ExpConv1x1 computed a determinant or a matrix inverse")

    for name in ("det", "slogdet", "inv", "solve", "lu", "lu_factor"):
        monkeypatch.setattr(torch.linalg, name, refuse)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        layer = random_conv("exp", 8, dtype)
        assert torch.equal(layer.inverse_weight(), torch.linalg.matrix_exp(-layer.log_weight.double()))
        x = torch.randn(4, 8, 5, 5, generator=torch.Generator().manual_seed(3)).to(dtype)
        y, logdet = layer(x)
        back = layer.inverse(y)
        assert back.dtype == dtype and (back - x).abs().max() < tol
        torch.testing.assert_close(logdet, (25 * torch.trace(layer.log_weight)).expand(4))


def test_the_three_forms_start_alike_and_lu_is_the_default():
    """The same draw in every form: the rest of Glow is initialised identically, LU and plain start from the
    same rotation, and exp(A) starts as a rotation too (A skew-symmetric: det 1, log-det 0)."""
    models = {}
    for form in sorted(CONV_1X1):
        torch.manual_seed(0)
        models[form] = build_model("glow", dict(FLOWS["glow"], invconv=form), IMAGE)
    assert type(models["lu"]).__name__ == "Glow" and MODELS["glow"].config_cls().invconv == "lu"
    rest = {}  # every entry of the state_dict outside the 1x1 convolutions
    for form, m in models.items():
        convs = tuple(f"{name}." for name, mod in m.named_modules() if isinstance(mod, Conv1x1))
        rest[form] = {k: v for k, v in m.state_dict().items() if not k.startswith(convs)}
    for form in ("plain", "exp"):
        assert rest[form].keys() == rest["lu"].keys() and all(torch.equal(v, rest["lu"][k])
                                                              for k, v in rest[form].items())
    convs = {form: [m for m in models[form].modules() if isinstance(m, Conv1x1)] for form in models}
    assert [type(c) for c in convs["exp"]] == [ExpConv1x1] * 4
    for lu, plain, exp in zip(convs["lu"], convs["plain"], convs["exp"]):
        torch.testing.assert_close(plain.weight(), lu.weight(), rtol=0, atol=1e-5)
        w = exp.weight().double()
        torch.testing.assert_close(w @ w.T, torch.eye(len(w), dtype=torch.float64), rtol=0, atol=1e-5)
        assert exp.log_abs_det().item() == 0.0


def test_an_unknown_invconv_is_refused_by_name():
    with pytest.raises(GenbenchError, match=r"invconv: expected one of 'lu', 'plain', 'exp', got 'qr'"):
        build_model("glow", dict(FLOWS["glow"], invconv="qr"), IMAGE)
    # what `genbench validate` reports for a run's model_config
    assert MODELS["glow"].config_problems({"invconv": "qr"}, "runs.glow_mnist.model_config") == [
        "runs.glow_mnist.model_config.invconv: expected one of 'lu', 'plain', 'exp', got 'qr'"]


def test_bench_times_the_three_1x1_convolutions_side_by_side(capsys):
    from genbench.bench import conv1x1_step_times, print_conv1x1

    r = conv1x1_step_times(FLOWS["glow"], IMAGE, batch_size=4, repeats=2, warmup_s=0.0, segment_s=1e-3)
    assert list(r["forms"]) == ["lu", "plain", "exp"] and r["layers"] == [[4, 2, 2]] * 2 + [[8, 1, 1]] * 2
    for f in r["forms"].values():
        assert len(f["s_per_step"]) == 2 and all(s > 0 for s in f["s_per_step"]) and f["parameters"] > 0
    assert r["forms"]["lu"]["time_vs_lu"]["median"] == 1.0
    assert r["forms"]["plain"]["parameters"] == r["forms"]["exp"]["parameters"] == 2 * 16 + 2 * 64
    print_conv1x1(r)
    out = capsys.readouterr().out
    assert "4 layers at 8x1x1 and 4x2x2" in out and all(f"\n{form} " in out for form in ("lu", "plain", "exp"))
