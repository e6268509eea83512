"""Deep InfoMax and its baselines (genbench/models/dim.py), the MI bounds (genbench/metrics/mi.py), the probes
(genbench/metrics/probe.py) and the representation runs' stages (genbench/representation.py)."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import yaml

from genbench import GenbenchError
from genbench.metrics import mi
from genbench.metrics.probe import probe_scores
from genbench.models import Optimization, build_model

from tests.conftest import CONFIGS


# --------------------------------------------------------------------------------------------------
# MI bounds against the closed form of correlated Gaussians
# --------------------------------------------------------------------------------------------------
def gaussian_pairs(n: int, d: int, rho: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """d independent pairs (x_k, y_k), each standard normal with correlation rho."""
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return x, rho * x + math.sqrt(1 - rho * rho) * torch.randn(n, d, generator=generator, dtype=torch.float64)


def true_mi(d: int, rho: float) -> float:
    return -0.5 * d * math.log(1 - rho * rho)


def optimal_scores(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """S[i, j] = log p(y_j | x_i) / p(y_j): the true log density ratio of every pair."""
    s2 = 1 - rho * rho
    diff = y[None, :, :] - rho * x[:, None, :]
    return (-0.5 * diff.pow(2) / s2 - 0.5 * math.log(s2) + 0.5 * y[None, :, :].pow(2)).sum(dim=2)


def test_infonce_and_dv_with_the_optimal_critic_reach_the_true_mi():
    """rho = 0.8, d = 2 (I = 1.022 nats), N = 1000 (log N = 6.9), 4 batches: InfoNCE and DV within 0.1 nats of I."""
    g = torch.Generator().manual_seed(0)
    rho, d, n = 0.8, 2, 1000
    target = true_mi(d, rho)
    scores = torch.stack([optimal_scores(*gaussian_pairs(n, d, rho, g), rho) for _ in range(4)])
    assert abs(float(mi.infonce(scores).mean()) - min(target, math.log(n))) < 0.1
    assert abs(float(mi.donsker_varadhan(scores).mean()) - target) < 0.1
    assert abs(float(mi.nwj(scores + 1.0).mean()) - target) < 0.1  # NWJ is tight at T* + 1


def test_infonce_is_capped_at_log_n():
    """rho = 0.99, d = 10: I = 19.6 nats, far above log N = log 64 = 4.16; InfoNCE <= log N and within 0.1 of it."""
    g = torch.Generator().manual_seed(1)
    rho, d, n = 0.99, 10, 64
    assert true_mi(d, rho) > 4 * math.log(n)
    value = float(mi.infonce(optimal_scores(*gaussian_pairs(n, d, rho, g), rho)))
    assert value <= math.log(n) + 1e-12 and abs(value - math.log(n)) < 0.1
    assert float(mi.infonce(torch.randn(n, n, generator=g))) <= math.log(n)


def test_jsd_objective_is_largest_at_the_log_density_ratio():
    """f-GAN's JS objective is maximised by T* = log p / (p x m): shifting or scaling T* lowers it."""
    g = torch.Generator().manual_seed(2)
    scores = torch.stack([optimal_scores(*gaussian_pairs(500, 2, 0.8, g), 0.8) for _ in range(4)])
    best = float(mi.jsd(scores).mean())
    for other in (scores + 0.5, scores - 0.5, 0.7 * scores, 1.4 * scores):
        assert float(mi.jsd(other).mean()) < best


class SeparableCritic(torch.nn.Module):
    def __init__(self, d: int, width: int = 64, embed: int = 16):
        super().__init__()
        self.f = torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.ReLU(), torch.nn.Linear(width, embed))
        self.g = torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.ReLU(), torch.nn.Linear(width, embed))

    def forward(self, x, y):
        return self.f(x) @ self.g(y).T


@pytest.mark.parametrize("train_with,read_with,tolerance", [("infonce", "infonce", 0.15), ("jsd", "dv", 0.2)])
def test_a_trained_critic_estimates_the_mi(train_with, read_with, tolerance):
    """rho = 0.8, d = 2 (I = 1.022 nats): a separable MLP critic, 400 Adam steps on batches of 256, then the
    estimate on 4 fresh batches of 512 is within `tolerance` nats of I (the JSD-trained critic estimates the
    log density ratio, read off by the DV bound)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    rho, d = 0.8, 2
    critic = SeparableCritic(d).double()
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-3)
    for _ in range(400):
        x, y = gaussian_pairs(256, d, rho, g)
        loss = -mi.estimate(train_with, critic(x, y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        value = sum(float(mi.estimate(read_with, critic(*gaussian_pairs(512, d, rho, g)))) for _ in range(4)) / 4
    assert abs(value - true_mi(d, rho)) < tolerance, value


def test_estimators_refuse_a_non_square_matrix():
    with pytest.raises(ValueError):
        mi.infonce(torch.zeros(3, 4))
    with pytest.raises(ValueError):
        mi.estimate("mine-please", torch.zeros(3, 3))


# --------------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------------
def noisy_one_hot(n: int, classes: int, sigma: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, classes, (n,), generator=g)
    return torch.nn.functional.one_hot(y, classes).double() + sigma * torch.randn(n, classes, generator=g,
                                                                                  dtype=torch.float64), y


def test_probes_read_labels_off_informative_features_and_not_off_noise():
    """One-hot labels + N(0, 0.2^2) noise, 10 classes: the Bayes error is below 9 Phi(-sqrt(2) / (2 x 0.2)) = 0.2 %
    (at sigma = 0.3 it is about 7 %, hence 0.2); both probes reach >= 95 % test accuracy."""
    g = torch.Generator().manual_seed(4)
    train_f, train_y = noisy_one_hot(1000, 10, 0.2, g)
    test_f, test_y = noisy_one_hot(1000, 10, 0.2, g)
    out = probe_scores(train_f, train_y, test_f, test_y, seed=0)
    for name in ("linear", "mlp"):
        assert out[name]["accuracy"] >= 0.95 and out[name]["n_test"] == 1000
        a = out[name]["accuracy"]
        assert out[name]["accuracy_stderr"] == pytest.approx(math.sqrt(a * (1 - a) / 1000))
    # pure noise: chance (0.1) within 5 standard errors of a 1000-example test split
    noise = probe_scores(torch.randn(1000, 10, generator=g), train_y, torch.randn(1000, 10, generator=g), test_y,
                         seed=0, classes=10)
    for name in ("linear", "mlp"):
        assert abs(noise[name]["accuracy"] - 0.1) < 5 * math.sqrt(0.09 / 1000), noise[name]
    # deterministic given the seed, and blind to the features' scale (standardised with train statistics)
    again = probe_scores(train_f * 100 + 3, train_y, test_f * 100 + 3, test_y, seed=0)
    assert again["mlp"]["accuracy"] == out["mlp"]["accuracy"]
    assert again["linear"]["accuracy"] == out["linear"]["accuracy"]


def test_probe_representation_fits_on_a_fixed_train_subset_of_any_feature_map():
    """The representation metric shared by the representation runs and O-GAN's evaluation: a feature map of
    data-space inputs (here: the noisy one-hot rows themselves, doubled) is probed on `train_n` train examples
    drawn by the fixed subset seed (the same rows for every training seed), and on the whole test split."""
    from genbench.metrics.probe import PROBE_SUBSET_SEED, probe_representation

    g = torch.Generator().manual_seed(5)
    train, test = noisy_one_hot(3000, 10, 0.2, g), noisy_one_hot(700, 10, 0.2, g)
    seen = []

    def features(x):
        seen.append(x)
        return 2 * x

    out = probe_representation(features, train, test, seed=3, device="cpu", train_n=1200, hidden=50, classes=10)
    assert out["probe_train_n"] == 1200 and out["probe_test_n"] == 700 and out["feature_dim"] == 10
    chosen = torch.randperm(3000, generator=torch.Generator().manual_seed(PROBE_SUBSET_SEED))[:1200].sort().values
    assert torch.equal(torch.cat(seen[:2]), train[0][chosen])  # batches of 1000: the subset's rows, in order
    direct = probe_scores(2 * train[0][chosen], train[1][chosen], 2 * test[0], test[1], seed=3, classes=10, hidden=50)
    for name in ("linear", "mlp"):
        assert out[f"{name}_probe"] == direct[name] and out[f"{name}_probe"]["accuracy"] >= 0.95
    assert out["probe_settings"]["hidden"] == 50
    whole = probe_representation(lambda x: x, train, test, seed=3, device="cpu", train_n=10**6, hidden=50)
    assert whole["probe_train_n"] == 3000


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
TINY = {"feature_dim": 16, "hidden_channels": 8, "hidden_units": 32, "critic_dim": 32, "prior_hidden": [32]}
OBJECTIVES = [("local", "infonce"), ("local", "jsd"), ("global", "jsd"), ("global", "infonce"), ("vae", "jsd"),
              ("supervised", "jsd")]


def tiny_model(objective: str, estimator: str = "jsd", shape=(1, 16, 16), **extra):
    torch.manual_seed(0)
    return build_model("dim", {**TINY, "objective": objective, "estimator": estimator, **extra}, shape)


def test_encoder_shapes_match_the_vae_encoder():
    from genbench.models.vae import ConvEncoder

    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    for objective in ("local", "global", "vae", "supervised", "random"):
        m = tiny_model(objective, shape=(1, 28, 28))
        local, out = m.encode(x)
        assert local.shape == (5, 16, 7, 7)
        assert out.shape == (5, 32 if objective == "vae" else 16) and m.features(x).shape == (5, 16)
        assert isinstance(m.conv_encoder(), ConvEncoder)
        if objective in ("local", "global"):
            scores = m.mi_scores(local, torch.sigmoid(out))
            assert scores.shape == ((49, 5, 5) if objective == "local" else (5, 5))
            assert bool(((m.features(x) > 0) & (m.features(x) < 1)).all())
    assert tiny_model("local").gamma == 0.1 and tiny_model("global").gamma == 1.0  # the paper's settings
    assert tiny_model("local", gamma=0.0).gamma == 0.0 and not hasattr(tiny_model("local", gamma=0.0), "prior_critic")


@pytest.mark.parametrize("objective,estimator", OBJECTIVES)
def test_each_objective_is_finite_and_falls(objective, estimator):
    """40 steps (lr 1e-3, batches of 32) on 64 fixed random 16 x 16 images with random labels: the mean loss of
    the last 8 steps is below that of the first 8."""
    m = tiny_model(objective, estimator)
    opt = Optimization(m.configure_optimizers(1e-3, 0.0), None, None)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    losses = []
    for step in range(40):
        index = torch.randperm(64, generator=g)[:32]
        out = m.training_step((data[index], labels[index]), step, opt, g)
        assert all(math.isfinite(float(v)) for v in out.values())
        losses.append(float(out["loss"]))
    assert sum(losses[-8:]) < sum(losses[:8]), losses
    if objective in ("local", "global"):
        assert "prior_d_loss" in out and math.isfinite(float(m.validation_loss((data[:8], labels[:8]), g)[0]))


def test_prior_discriminator_update_carries_the_zero_centred_gradient_penalty():
    """D's loss adds prior_penalty * mean ||grad_v D(v)||^2 over the prior draws and the features (the authors'
    code's penalty): recomputed here by brute force, one Jacobian per point, with D as it was before its step."""
    from torch.autograd.functional import jacobian

    m = tiny_model("global", prior_penalty=2.5)
    critic = copy.deepcopy(m.prior_critic)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        y = torch.sigmoid(m.encode(x)[1])
    state = g.get_state()  # the global objective draws nothing before the prior samples
    opt = Optimization(m.configure_optimizers(1e-3, 0.0), None, None)
    out = m.training_step((x, torch.zeros(8, dtype=torch.long)), 0, opt, g)
    prior = torch.rand(y.shape, generator=torch.Generator().set_state(state))
    squared = [jacobian(lambda v: critic(v[None])[0, 0], point).pow(2).sum() for point in torch.cat([prior, y])]
    assert float(out["prior_penalty"]) == pytest.approx(2.5 * float(torch.stack(squared).mean()), rel=1e-5)
    assert float(out["prior_penalty"]) > 0
    m0 = tiny_model("global", prior_penalty=0.0)
    out0 = m0.training_step((x, torch.zeros(8, dtype=torch.long)), 0,
                            Optimization(m0.configure_optimizers(1e-3, 0.0), None, None), torch.Generator())
    assert float(out0["prior_penalty"]) == 0.0
    with pytest.raises(GenbenchError, match="prior_penalty must be >= 0"):
        tiny_model("global", prior_penalty=-1.0)


def test_random_leaves_the_weights_at_their_seeded_init():
    m = tiny_model("random")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = Optimization(m.configure_optimizers(1e-2, 0.0), None, None)
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        x = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=g)
        assert float(m.training_step((x, torch.zeros(8, dtype=torch.long)), step, opt, g)["loss"]) == 0.0
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in tiny_model("random").state_dict().items())  # seeded


def test_no_samples():
    with pytest.raises(GenbenchError, match="no samples"):
        tiny_model("local").sample(4, torch.Generator())


# --------------------------------------------------------------------------------------------------
# Settings refused by name; the train and score stages end to end on tiny MNIST
# --------------------------------------------------------------------------------------------------
DIM_RUN = {"model": "dim", "dataset": "mnist",
           "train": {"steps": 8, "batch_size": 32, "lr": 1.0e-3, "checkpoint_every": 4, "log_every": 2},
           "model_config": {**TINY, "objective": "local", "estimator": "infonce", "probe_train_n": 300,
                            "probe_hidden": 32}}


def _params_with(tmp_path, run: dict):
    raw = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    raw["runs"]["rep"] = run
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    from genbench.config import load

    return load(path)


@pytest.mark.parametrize("change,named", [
    ({"objective": "autoencoder-please"}, "objective"),
    ({"estimator": "mine"}, "estimator"),
    ({"feature_dim": 0}, "feature_dim"),
    ({"gamma": -0.5}, "gamma"),
])
def test_bad_dim_settings_are_refused_by_name(tmp_path, change, named):
    with pytest.raises(GenbenchError, match=named):
        _params_with(tmp_path, {**DIM_RUN, "model_config": {**DIM_RUN["model_config"], **change}})


def test_representation_runs_train_once_at_train_lr(tmp_path):
    from genbench.resolve import task_module

    with pytest.raises(GenbenchError, match="lr_trials"):
        _params_with(tmp_path, {**DIM_RUN, "train": {**DIM_RUN["train"], "lr_trials": [1e-3, 3e-3]}})
    assert task_module(_params_with(tmp_path, DIM_RUN), "rep") == "genbench.representation"


def test_train_then_score_write_both_probes(workdir):
    from genbench.cli import main

    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["runs"]["rep"] = DIM_RUN
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", "--run", "rep", "--seed", "0"]) == 0
    outcome = json.loads((workdir / "runs" / "rep-s0" / "outcome.json").read_text())
    assert outcome["status"] == "completed" and outcome["steps"] == 8 and outcome["selected_step"] == 8
    assert not list((workdir / "runs" / "rep-s0").glob("lr-*"))  # one training, no learning-rate trials
    assert main(["score", "--run", "rep", "--seed", "0"]) == 0
    m = json.loads((workdir / "metrics" / "rep-s0.json").read_text())
    assert m["status"] == "completed" and m["objective"] == "local" and m["estimator"] == "infonce"
    assert m["probe_train_n"] == 300 and m["probe_test_n"] == 200 and m["feature_dim"] == 16
    for name in ("linear_probe", "mlp_probe"):
        assert 0 <= m[name]["accuracy"] <= 1 and m[name]["n_test"] == 200 and m[name]["accuracy_stderr"] >= 0
    assert m["train"]["status"] == "completed" and m["score_time_s"] > 0 and m["code_version"]
    assert main(["evaluate", "--run", "rep", "--seed", "0"]) != 0  # it has a score stage
    from genbench.config import load
    from genbench.report import suite_time

    assert "jobs took" in suite_time(load(workdir / "params.yaml"))  # the report's time line reads its record


def test_bench_times_each_objective_against_the_supervised_encoder(workdir):
    """`genbench bench --models dim`: the training step of each objective on the same encoder and batches, against
    the supervised baseline (was: representation models skipped)."""
    from tests.conftest import bench_objectives

    supervised = {k: v for k, v in DIM_RUN["model_config"].items() if k != "estimator"} | {"objective": "supervised"}
    proc, rows = bench_objectives(workdir, {"rep_local": DIM_RUN, "rep_supervised": {**DIM_RUN, "model_config": supervised}},
                                  "dim", "representation")
    assert set(rows) == {"local/infonce", "supervised"} and rows["supervised"]["vs_baseline"] == 1.0
    assert rows["local/infonce"]["baseline"] == "supervised" and rows["local/infonce"]["images_per_s"] > 0
    assert "local/infonce (rep_local)" in proc.stdout and "skipped" not in proc.stdout
