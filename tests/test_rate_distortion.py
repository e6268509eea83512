"""The VAE's beta sweep (issue 18): the beta-weighted training loss, the rate-distortion study against the ELBO
it decomposes, Burda et al.'s active-unit count on planted units, the claims and the report section."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from genbench import GenbenchError
from genbench.claims import claims_table
from genbench.io import write_json
from genbench.models import Optimization, build_model
from genbench.models.vae import active_units

SHAPE = (1, 8, 8)
SMALL = {"latent_dim": 4, "hidden_channels": 4, "hidden_units": 16}


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_active_units_count_the_planted_live_units_only():
    """Burda et al.'s A_u = Var_x(E[z_u|x]) > 0.01: three units vary across examples, two are constant up to
    noise of variance 1e-4 (dead), and the variances match their closed form within sampling error."""
    g = torch.Generator().manual_seed(0)
    n = 20000
    live = torch.randn(n, 3, generator=g) * torch.tensor([1.0, 0.5, 0.2])   # variances 1, 0.25, 0.04
    dead = 0.01 * torch.randn(n, 2, generator=g) + 3.0
    count, activity = active_units(torch.cat([live, dead], dim=1))
    assert count == 3
    assert activity[:3] == pytest.approx([1.0, 0.25, 0.04], rel=0.05)
    assert max(activity[3:]) < 2e-4


def test_rate_plus_distortion_is_the_elbo_and_beta_one_trains_the_elbo():
    """R + D on the same draws is exactly -ELBO (the decomposition, not a second estimate); at beta = 1 the
    training step is the plain ELBO step (same weights after a step), at beta = 3 the loss weighs the KL by 3."""
    x = images(64)
    vae = build_model("vae", {**SMALL, "rate_distortion": True}, SHAPE)
    study = vae.rate_distortion_study(x, torch.Generator().manual_seed(5), batch=32)
    with torch.no_grad():
        elbo = torch.cat([vae.elbo(x[i:i + 32], g) for g in [torch.Generator().manual_seed(5)] for i in (0, 32)])
    assert study["neg_elbo"]["nats"] == pytest.approx(float(-elbo.double().mean()), rel=1e-6)
    assert study["neg_elbo"]["nats"] == pytest.approx(study["rate"]["nats"] + study["distortion"]["nats"], rel=1e-9)
    assert study["rate"]["nats"] > 0 and study["n"] == 64 and 0 <= study["active_units"] <= 4

    def one_step(beta: float) -> tuple[dict, torch.nn.Module]:
        torch.manual_seed(0)
        model = build_model("vae", {**SMALL, "beta": beta}, SHAPE)
        opt = Optimization(model.configure_optimizers(1e-3, 0.0), None, None)
        out = model.training_step(x, 0, opt, torch.Generator().manual_seed(1))
        return out, model

    def step_by_hand(loss_of) -> tuple[torch.Tensor, torch.nn.Module]:  # Adam on a loss written out here
        torch.manual_seed(0)
        model = build_model("vae", SMALL, SHAPE)
        adam = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss = loss_of(model, torch.Generator().manual_seed(1))
        loss.backward()
        adam.step()
        return loss.detach(), model

    def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
        return all(torch.allclose(p, q, rtol=1e-6, atol=1e-7) for p, q in zip(a.parameters(), b.parameters()))

    plain, plain_model = one_step(1.0)
    elbo_loss, elbo_model = step_by_hand(lambda m, g: -m.elbo(x, g).mean())
    assert float(plain["loss"]) == pytest.approx(float(elbo_loss), rel=1e-6)
    assert same_weights(plain_model, elbo_model)

    def weighted_loss(m, g):
        rec, kl = m.rate_and_reconstruction(x, g)
        return -(rec - 3.0 * kl).mean()

    weighted, weighted_model = one_step(3.0)
    by_hand_loss, by_hand_model = step_by_hand(weighted_loss)
    assert float(weighted["loss"]) == pytest.approx(float(by_hand_loss), rel=1e-6)
    assert same_weights(weighted_model, by_hand_model) and not same_weights(weighted_model, plain_model)
    torch.manual_seed(0)
    rec, kl = build_model("vae", SMALL, SHAPE).rate_and_reconstruction(x, torch.Generator().manual_seed(1))
    assert float(weighted["elbo_nats"]) == pytest.approx(float((rec - kl).mean()), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_a_non_positive_beta_is_refused_by_name(beta):
    with pytest.raises(GenbenchError, match="beta"):
        build_model("vae", {**SMALL, "beta": beta}, SHAPE)


def test_sweep_claims_and_section_read_the_rate_distortion_studies(tmp_path, monkeypatch):
    """Five betas over 3 seeds: beta = 1 has the lowest -ELBO (holds against the far betas), active units fall
    with beta (holds where the seeds separate them, inconclusive where they tie); the section's rows and plot."""
    from genbench.rate_distortion_report import plot_rate_distortion, rate_distortion_sections

    monkeypatch.chdir(tmp_path)
    curve = {0.1: (60.0, 40.0, 32), 0.3: (40.0, 52.0, 30), 1.0: (25.0, 60.0, 20), 3.0: (12.0, 90.0, 8),
             10.0: (4.0, 130.0, 8)}
    runs = {}
    for beta, (rate, distortion, units) in curve.items():
        run = f"vae_beta{beta:g}_mnist".replace(".", "p")
        runs[run] = SimpleNamespace(model="vae", dataset="mnist", model_config={"rate_distortion": True, "beta": beta})
        for seed in range(3):
            stat = lambda v: {"nats": v + 0.3 * seed, "stderr": 0.2}  # noqa: E731
            write_json(tmp_path / "metrics" / f"{run}-s{seed}.json", {"status": "completed", "studies": {
                "rate_distortion": {"n": 10000, "beta": beta, "rate": stat(rate), "distortion": stat(distortion),
                                    "neg_elbo": stat(rate + distortion), "active_units": units + (seed if beta == 1.0 else 0),
                                    "latent_dim": 32, "unit_activity": [], "active_threshold": 0.01}}})
    params = SimpleNamespace(runs=runs, seeds=[0], repeat=SimpleNamespace(seeds=[1, 2], runs=list(runs)),
                             eval=SimpleNamespace(extractors={}), theory={})
    _, table = claims_table(params)
    elbo = {r["claim"].split("than beta = ")[1].split(" ")[0]: r["verdict"] for r in table if "-ELBO than" in r["claim"]}
    assert elbo == {"0.1": "holds", "0.3": "holds", "3": "holds", "10": "holds"}
    units = {r["claim"].split("raising beta ")[1].split(" switches")[0]: r["verdict"] for r in table
             if r["claim"].startswith("raising beta")}
    # 32 vs 30 on every seed: the counts' rounding floor (1/sqrt(12) per seed) gives the interval; 8 vs 8 ties
    assert units == {"0.1 -> 0.3": "holds", "0.3 -> 1": "holds", "1 -> 3": "holds", "3 -> 10": "inconclusive at this n"}
    md, rows = rate_distortion_sections(params)
    assert [r["beta"] for r in rows] == [0.1, 0.3, 1.0, 3.0, 10.0]
    assert rows[2]["neg_elbo_nats"] == pytest.approx(85.3) and rows[2]["active_units"] == pytest.approx(21.0)
    assert any("information bottleneck" in line for line in md)
    plot_rate_distortion(rows, tmp_path / "rd.png")
    assert (tmp_path / "rd.png").stat().st_size > 1000
    assert rows[0]["active_units_std"] == 0.0 and not math.isnan(rows[2]["active_units_std"])
