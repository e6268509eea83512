"""VQ-VAE and FSQ (genbench/models/vq.py): the quantizers against their definitions, the code <-> index map,
the EMA codebook update, the straight-through gradients, the prior's causality and the two training phases."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from genbench import GenbenchError
from genbench.models import Optimization, build_model
from genbench.models.vq import CodePrior, FiniteScalarQuantizer, VectorQuantizer


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [7, 5, 5, 5, 5], [2, 3, 4]])
def test_fsq_is_the_rounding_of_the_bounded_projection_with_L_values_per_channel(levels):
    fsq = FiniteScalarQuantizer(levels)
    z = 4 * torch.randn(2000, len(levels), 2, 2, generator=torch.Generator().manual_seed(0))
    q = fsq.quantize(z)
    torch.testing.assert_close(q, torch.round(fsq.bound(z)))
    for i, L in enumerate(levels):
        values = sorted(q[:, i].unique().tolist())
        # L integer values, centred: {-(L//2), ..., L - 1 - L//2}
        assert values == list(range(-(L // 2), L - L // 2)), (L, values)
        # the bound itself, from its definition (h tanh(z + s) - o)
        h, o = (L - 1) * (1 + 1e-3) / 2, 0.5 if L % 2 == 0 else 0.0
        expected = h * torch.tanh(z[:, i] + math.atanh(o / h)) - o
        torch.testing.assert_close(fsq.bound(z)[:, i], expected)
    assert fsq.codes == math.prod(levels)


def test_fsq_code_index_map_is_a_bijection():
    levels = [8, 5, 5, 5]
    fsq = FiniteScalarQuantizer(levels)
    idx = torch.arange(fsq.codes).view(1, -1, 1)            # (B, H, W) = (1, 1000, 1)
    q = fsq.levels_from_indices(idx)
    assert torch.equal(fsq.indices_from_levels(q), idx)
    grid = torch.tensor(list(itertools.product(*[range(-(L // 2), L - L // 2) for L in levels])), dtype=torch.float32)
    as_codes = grid.t().reshape(1, len(levels), -1, 1)
    assert sorted(fsq.indices_from_levels(as_codes).flatten().tolist()) == list(range(1000))


def test_fsq_rounding_passes_the_gradient_straight_through():
    fsq = FiniteScalarQuantizer([8, 5, 5, 5])
    z = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(1), requires_grad=True)
    w = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(2))
    (fsq.quantize(z) * w).sum().backward()
    z2 = z.detach().clone().requires_grad_(True)
    (fsq.bound(z2) * w).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad)


def test_fsq_levels_below_two_and_an_empty_codebook_are_refused():
    with pytest.raises(GenbenchError, match="levels"):
        FiniteScalarQuantizer([1, 5])
    with pytest.raises(GenbenchError, match="levels"):
        build_model("codebook", {"quantizer": "fsq", "levels": [8, 1]}, (1, 28, 28))
    from genbench.config import _model_value_problems
    from genbench.models.vq import CodebookConfig
    assert any("codebook_size" in p for p in _model_value_problems(CodebookConfig, {"codebook_size": 0}, "m"))
    assert any("levels" in p for p in _model_value_problems(CodebookConfig, {"levels": [8, 1]}, "m"))


def test_vq_nearest_code_straight_through_and_commitment():
    torch.manual_seed(0)
    vq = VectorQuantizer(size=16, dim=3, decay=0.99, commitment=0.25)
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out, idx, commitment = vq(z, update=False)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    brute = torch.cdist(flat, vq.codebook).argmin(1).view(2, 4, 4)
    assert torch.equal(idx, brute)
    torch.testing.assert_close(out.detach(), vq.codebook[idx].permute(0, 3, 1, 2))
    w = torch.randn_like(out)
    (out * w).sum().backward()
    torch.testing.assert_close(z.grad, w)                    # straight through: d out / d z = identity
    e = vq.codebook[idx].permute(0, 3, 1, 2)
    torch.testing.assert_close(commitment, 0.25 * (z.detach() - e).pow(2).sum(1).mean())
    z3 = z.detach().clone().requires_grad_(True)
    vq(z3, update=False)[2].backward()
    torch.testing.assert_close(z3.grad, 0.25 * 2 * (z3.detach() - e) / (2 * 4 * 4))


def test_vq_ema_update_against_its_definition():
    torch.manual_seed(0)
    vq = VectorQuantizer(size=4, dim=2, decay=0.9, commitment=0.25, eps=1e-5)
    count0, sum0 = vq.ema_count.clone(), vq.ema_sum.clone()
    z = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(4))
    idx = vq.indices(z)
    vq.ema_update(z, idx)
    flat, k = z.permute(0, 2, 3, 1).reshape(-1, 2), idx.flatten()
    n = torch.stack([(k == j).sum() for j in range(4)]).float()
    s = torch.stack([flat[k == j].sum(0) for j in range(4)])
    count = 0.9 * count0 + 0.1 * n
    total = count.sum()
    smoothed = (count + 1e-5) / (total + 4 * 1e-5) * total
    torch.testing.assert_close(vq.ema_count, count)
    torch.testing.assert_close(vq.ema_sum, 0.9 * sum0 + 0.1 * s)
    torch.testing.assert_close(vq.codebook, (0.9 * sum0 + 0.1 * s) / smoothed[:, None])


def test_vq_data_init_puts_every_code_on_an_encoder_output_and_random_codes_far_from_the_data_die():
    # encoder outputs far from the origin, where N(0, I/d) codes start: the nearest-code map then uses
    # few codes, while codes drawn from the outputs themselves are each nearest to at least their own output
    z = 3.0 + 0.1 * torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    torch.manual_seed(0)
    random_init = VectorQuantizer(size=64, dim=2, decay=0.99, commitment=0.25)
    data_init = VectorQuantizer(size=64, dim=2, decay=0.99, commitment=0.25)
    data_init.init_from_data(z, torch.Generator().manual_seed(2))
    assert bool(data_init.initialised) and not bool(random_init.initialised)
    rows = {tuple(r.tolist()) for r in flat}
    assert all(tuple(c.tolist()) in rows for c in data_init.codebook)          # each code is one of the outputs
    assert len({tuple(c.tolist()) for c in data_init.codebook}) == 64          # drawn without replacement
    torch.testing.assert_close(data_init.ema_sum, data_init.codebook)
    torch.testing.assert_close(data_init.ema_count, torch.ones(64))
    assert len(torch.unique(data_init.indices(z))) == 64
    assert len(torch.unique(random_init.indices(z))) <= 8
    # fewer outputs than codes: drawn with replacement, jittered apart
    small = VectorQuantizer(size=300, dim=2, decay=0.99, commitment=0.25)
    small.init_from_data(z, torch.Generator().manual_seed(3))
    assert len({tuple(c.tolist()) for c in small.codebook}) == 300
    assert float(torch.cdist(small.codebook, flat).min(1).values.max()) < 0.05


@pytest.mark.parametrize("init", ["data", "random"])
def test_the_codebook_is_initialised_from_data_once_and_the_flag_survives_a_checkpoint(init):
    config = {"quantizer": "vq", "codebook_size": 16, "code_dim": 2, "hidden": 8, "res_blocks": 1,
              "ae_steps": 5, "prior_width": 16, "prior_layers": 1, "prior_heads": 2, "codebook_init": init}
    torch.manual_seed(0)
    model = build_model("codebook", config, (1, 8, 8))
    opt = Optimization(model.configure_optimizers(1e-2, 0.0), None, None)
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    calls = []
    original = model.quantizer.init_from_data
    model.quantizer.init_from_data = lambda z, g: (calls.append(1), original(z, g))
    model.training_step(x, 0, opt, torch.Generator().manual_seed(8))
    model.training_step(x, 1, opt, torch.Generator().manual_seed(8))
    assert len(calls) == (1 if init == "data" else 0)
    state = model.state_dict()
    assert bool(state["quantizer.initialised"]) == (init == "data")
    torch.manual_seed(1)
    resumed = build_model("codebook", config, (1, 8, 8))
    resumed.load_state_dict(state)
    resumed.quantizer.init_from_data = lambda z, g: calls.append(1)
    resumed.training_step(x, 2, Optimization(resumed.configure_optimizers(1e-2, 0.0), None, None),
                          torch.Generator().manual_seed(8))
    assert len(calls) == (1 if init == "data" else 0)   # a resumed run does not initialise again


def test_the_prior_is_causal_and_a_distribution():
    torch.manual_seed(0)
    prior = CodePrior(codes=7, length=6, width=16, layers=2, heads=2).eval()
    seq = torch.randint(0, 7, (2, 6), generator=torch.Generator().manual_seed(5))
    base = prior.logits(seq)
    changed = seq.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 7
    after = prior.logits(changed)
    torch.testing.assert_close(after[:, :4], base[:, :4])   # position t reads tokens < t only
    assert not torch.allclose(after[:, 4:], base[:, 4:])
    # the probabilities of all 7^2 sequences of a length-2 prior sum to one
    small = CodePrior(codes=7, length=2, width=16, layers=1, heads=2).eval()
    every = torch.tensor(list(itertools.product(range(7), repeat=2)))
    with torch.no_grad():
        assert float(torch.logsumexp(small.log_prob(every), 0)) == pytest.approx(0.0, abs=1e-5)
    draws = small.sample(5, torch.Generator().manual_seed(6))
    assert draws.shape == (5, 2) and int(draws.max()) < 7
    # cached one-position-at-a-time sampling draws from the same conditionals as the full-sequence pass:
    # with the same uniforms it picks what inverse-CDF sampling from `logits` picks
    seqs = prior.sample(300, torch.Generator().manual_seed(7))
    full = torch.log_softmax(prior.logits(seqs), -1).gather(2, seqs.unsqueeze(2)).squeeze(2)
    with torch.no_grad():
        h = prior.token(torch.full((300, 1), 7)) + prior.position[:, :1]
        caches = [None, None]
        step_logp = []
        for t in range(6):
            for i, block in enumerate(prior.blocks):
                h, caches[i] = block.extend(h, caches[i] if t else None)
            step_logp.append(torch.log_softmax(prior.head(h[:, -1]), -1).gather(1, seqs[:, t:t + 1]))
            h = prior.token(seqs[:, t:t + 1]) + prior.position[:, t + 1:t + 2] if t < 5 else h
    torch.testing.assert_close(torch.cat(step_logp, 1), full.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_two_phases_train_their_own_parts_and_the_study_reports_usage(quantizer):
    torch.manual_seed(0)
    model = build_model("codebook", {"quantizer": quantizer, "levels": [3, 3], "codebook_size": 9, "code_dim": 2,
                                     "hidden": 8, "res_blocks": 1, "ae_steps": 1, "prior_width": 16,
                                     "prior_layers": 1, "prior_heads": 2}, (1, 8, 8))
    opt = Optimization(model.configure_optimizers(1e-2, 0.0), None, None)
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    for step in (0, 1):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        model.training_step(x, step, opt, torch.Generator().manual_seed(8))
        moved = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
        assert moved == ({"encoder", "decoder"} | ({"quantizer"} if quantizer == "vq" else set())
                         if step == 0 else {"prior"}), (step, moved)
    study = model.codebook_study(x, batch=5)
    assert study["codes"] == 9 and 0 < study["usage_percent"] <= 100 and 1 <= study["perplexity"] <= 9
    used = len(torch.unique(model.encode(x)))
    assert study["usage_percent"] == pytest.approx(100 * used / 9)
    s = model.sample(4, torch.Generator().manual_seed(9))
    assert s.shape == (4, 1, 8, 8) and s.dtype == torch.uint8
    assert model.reconstruct_images(x).shape == x.shape
