"""The accuracy-training family (genbench/models/accuracy.py) and its score stage (genbench/score.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from scipy import integrate, optimize, stats

from genbench import GenbenchError
from genbench.models import accuracy as A
from genbench.score import classification_scores, expected_calibration_error, multilabel_scores

from tests.conftest import CONFIGS


# --------------------------------------------------------------------------------------------------
# The argmax-of-noise construction
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("law", ["gaussian", "logistic", "gumbel"])
def test_construction_is_a_distribution_ordered_as_the_scores(law):
    mu = torch.randn(40, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2.5
    p = torch.stack([A.log_argmax_prob(mu, torch.full((40,), i), law).exp() for i in range(7)], dim=1)
    assert bool((p >= 0).all())
    assert torch.allclose(p.sum(dim=1), torch.ones(40, dtype=torch.float64), atol=1e-6)
    assert torch.equal(p.argsort(dim=1), mu.argsort(dim=1))  # order preserved


def test_gumbel_construction_is_softmax():
    mu = torch.randn(30, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    by_quadrature = torch.stack([A.log_argmax_prob(mu, torch.full((30,), i), "gumbel").exp() for i in range(10)], 1)
    assert (by_quadrature - mu.softmax(dim=1)).abs().max() < 1e-6
    assert torch.equal(A.argmax_probs(mu, "gumbel"), mu.softmax(dim=1))


@pytest.mark.parametrize("law,draw", [("gaussian", lambda g, n: torch.randn(n, 5, generator=g, dtype=torch.float64)),
                                      ("logistic", lambda g, n: torch.logit(torch.rand(n, 5, generator=g,
                                                                                       dtype=torch.float64)))])
def test_quadrature_matches_a_million_draws(law, draw):
    mu = torch.tensor([[0.3, -0.2, 1.1, 0.0, -1.5]], dtype=torch.float64)
    p = A.argmax_probs(mu, law)[0]
    n = 10**6
    counts = torch.bincount((mu + draw(torch.Generator().manual_seed(3), n)).argmax(dim=1), minlength=5).double()
    stderr = torch.sqrt(p * (1 - p) / n)
    assert bool(((counts / n - p).abs() < 4 * stderr).all()), (counts / n, p)


def test_exact_probability_and_gradient_against_an_independent_computation():
    """EXACT's orthant probability against scipy's multivariate normal CDF, and its gradient against the
    paper's formula (density x conditional orthant probability), integrated by scipy."""
    sigma = 0.7
    scores = torch.tensor([[0.4, -0.3, 0.9, 0.1]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([2])
    p = A.expected_accuracy(scores, target, sigma, margin=None)
    gaps = np.array([0.9 - 0.4, 0.9 + 0.3, 0.9 - 0.1]) / sigma  # Delta_j / sigma for j != y
    # P(z > 0), z ~ N(gaps, I + 1 1^T)  <=>  P(-z < 0)
    cov = np.eye(3) + np.ones((3, 3))
    orthant = stats.multivariate_normal(mean=-gaps, cov=cov).cdf(np.zeros(3))
    assert abs(float(p.detach()) - orthant) < 1e-4
    p.sum().backward()

    def d_gap(k):  # dP/dDelta_k = (1/sigma) int phi(t) phi(t + g_k) prod_{j != k} Phi(t + g_j) dt
        f = lambda t: stats.norm.pdf(t) * stats.norm.pdf(t + gaps[k]) * np.prod(  # noqa: E731
            [stats.norm.cdf(t + gaps[j]) for j in range(3) if j != k])
        return integrate.quad(f, -12, 12)[0] / sigma

    grads = [d_gap(k) for k in range(3)]
    # d/ds_j = -dP/dDelta_j for j != y; d/ds_y = sum_k dP/dDelta_k
    expected = np.array([-grads[0], -grads[1], sum(grads), -grads[2]])
    assert np.allclose(scores.grad[0].numpy(), expected, atol=1e-8)


def test_the_margin_clips_separated_pairs_out_of_the_gradient():
    scores = torch.tensor([[3.0, 0.0, 0.2]], dtype=torch.float64, requires_grad=True)
    A.expected_accuracy(scores, torch.tensor([0]), sigma=1.0, margin=0.5).sum().backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores))  # both gaps (3, 2.8) exceed r = 0.5
    loose = torch.tensor([[3.0, 0.0, 2.8]], dtype=torch.float64, requires_grad=True)
    A.expected_accuracy(loose, torch.tensor([0]), sigma=1.0, margin=0.5).sum().backward()
    assert loose.grad[0, 1] == 0 and loose.grad[0, 2] < 0  # only the close rival (gap 0.2 < r) moves


# --------------------------------------------------------------------------------------------------
# The EXACT paper's toy example (Karpukhin et al. 2022, Fig. 1; Su's summary): a known answer
# --------------------------------------------------------------------------------------------------
TOY_X = np.array([-0.25, 0.0, 0.25])
TOY_LABEL = np.array([-1, -1, 1])


def _toy_accuracy(b: float) -> float:
    return float(np.mean(np.sign(TOY_X - b) == TOY_LABEL))


def test_toy_surrogates_misclassify_while_expected_accuracy_reaches_all_points():
    # sigmoid cross-entropy sum_i log(1 + exp(-l_i (x_i - b))): its derivative in b vanishes at b = 0.70
    d_ce = lambda b: np.sum(TOY_LABEL / (1 + np.exp(TOY_LABEL * (TOY_X - b))))  # noqa: E731
    b_ce = optimize.brentq(d_ce, -2, 2)
    assert b_ce == pytest.approx(0.70, abs=0.005)
    assert _toy_accuracy(b_ce) == pytest.approx(2 / 3)  # (0.25, +1) is misclassified
    # hinge sum_i max(0, 1 - l_i (x_i - b)): minimal (1.75) exactly on b in [0.75, 1]
    grid = np.linspace(-2, 2, 4001)
    hinge = np.array([np.maximum(0, 1 - TOY_LABEL * (TOY_X - b)).sum() for b in grid])
    minimisers = grid[np.isclose(hinge, hinge.min())]
    assert hinge.min() == pytest.approx(1.75)
    assert minimisers.min() == pytest.approx(0.75, abs=1e-3) and minimisers.max() == pytest.approx(1.0, abs=1e-3)
    assert all(_toy_accuracy(b) == pytest.approx(2 / 3) for b in minimisers)
    # expected accuracy: two classes (-1, +1) with scores (0, x - b); P(correct) = Phi(l (x - b) / (sigma sqrt 2))
    x, target = torch.tensor(TOY_X), torch.tensor((TOY_LABEL + 1) // 2)
    b = torch.tensor(b_ce, dtype=torch.float64, requires_grad=True)  # start where cross-entropy ends
    scores = lambda: torch.stack([torch.zeros(3, dtype=torch.float64), x - b], dim=1)  # noqa: E731
    closed = stats.norm.cdf(TOY_LABEL * (TOY_X - b_ce) / (0.5 * math.sqrt(2)))
    assert np.allclose(A.expected_accuracy(scores(), target, 0.5).detach().numpy(), closed, atol=1e-9)
    opt = torch.optim.Adam([b], lr=0.01)
    steps = 600
    for step in range(steps):
        sigma = math.exp(math.log(0.5) + (math.log(0.02) - math.log(0.5)) * step / steps)  # the decaying sigma
        loss = 1 - A.expected_accuracy(scores(), target, sigma).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert 0 < b.item() < 0.25
    assert _toy_accuracy(b.item()) == 1.0


# --------------------------------------------------------------------------------------------------
# Losses and metrics on hand cases
# --------------------------------------------------------------------------------------------------
def test_hinge_is_crammer_singer():
    s = torch.tensor([[2.0, 1.5, -1.0], [0.0, 3.0, 0.5]])
    assert torch.allclose(A.hinge_loss(s, torch.tensor([0, 0])), torch.tensor([0.5, 4.0]))


def test_multilabel_softmax_loss_is_its_definition_and_ignores_label_order():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(20, 8, generator=g, dtype=torch.float64) * 2
    y = (torch.rand(20, 8, generator=g) < 0.3).double()
    y[0] = 0  # no positive: log(1 + sum e^{s})
    y[1] = 1  # no negative: log(1 + sum e^{-s})
    by_definition = torch.tensor([
        math.log(1 + sum(math.exp(v) for v, t in zip(row, lab) if t == 0))
        + math.log(1 + sum(math.exp(-v) for v, t in zip(row, lab) if t == 1))
        for row, lab in zip(s.tolist(), y.tolist())], dtype=torch.float64)
    assert torch.allclose(A.multilabel_softmax_loss(s, y), by_definition, atol=1e-12)
    perm = torch.randperm(8, generator=g)
    assert torch.allclose(A.multilabel_softmax_loss(s[:, perm], y[:, perm]), by_definition, atol=1e-12)


def test_calibration_and_f1_on_hand_cases():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    target = torch.tensor([0, 1, 0, 1])
    # bins: 0.9 (2 examples, accuracy 1/2), 0.6 (1, accuracy 1), 0.7 (1, accuracy 1)
    ece = 0.5 * abs(0.5 - 0.9) + 0.25 * abs(1 - 0.6) + 0.25 * abs(1 - 0.7)
    assert expected_calibration_error(probs, target) == pytest.approx(ece)
    scores = classification_scores(probs, target)
    assert scores["accuracy"] == 0.75 and scores["error_percent"] == pytest.approx(25.0)
    assert scores["cross_entropy"] == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.7])))
    s = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -1.0, 1.0]])
    truth = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    m = multilabel_scores(s, truth)  # tp 3, fp 0, fn 1
    assert m["micro_f1"] == pytest.approx(6 / 7)
    assert m["macro_f1"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["exact_match"] == 0.5 and m["hamming_loss"] == pytest.approx(1 / 6)


def test_composites_hold_distinct_digits_and_are_a_function_of_their_seed():
    x = (torch.arange(20, dtype=torch.uint8) + 1)[:, None, None, None].expand(20, 1, 2, 2).clone()  # image i: value i + 1
    y = torch.arange(20) % 10
    a, ta = A.composite_task(x, y, seed=5, max_digits=4, classes=10)
    b, tb = A.composite_task(x, y, seed=5, max_digits=4, classes=10)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert a.shape == (20, 1, 4, 4) and bool(((ta.sum(1) >= 1) & (ta.sum(1) <= 4)).all())
    for canvas, labels in zip(a, ta):  # one filled cell per listed class, each an image of that class
        values = [int(canvas[0, r, q]) for r in (0, 2) for q in (0, 2) if int(canvas[0, r, q]) > 0]
        assert sorted((v - 1) % 10 for v in values) == torch.nonzero(labels).flatten().tolist()


# --------------------------------------------------------------------------------------------------
# Settings refused by name, before any training
# --------------------------------------------------------------------------------------------------
def _params_with(tmp_path, run: dict):
    raw = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    raw["runs"]["acc"] = run
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    from genbench.config import load

    return load(path)


ACC_RUN = {"model": "classify", "dataset": "mnist",
           "train": {"steps": 12, "batch_size": 32, "lr_trials": [1.0e-3, 3.0e-3], "checkpoint_every": 4,
                     "log_every": 2, "val_every": 4, "val_n": 50},
           "model_config": {"objective": "exact", "network": "cnn", "width": 4, "sigma_steps": 12}}


@pytest.mark.parametrize("change,named", [
    ({"model_config": {"objective": "exact", "start_sigma": 0.0}}, "start_sigma"),
    ({"model_config": {"objective": "exact", "end_sigma": -1.0}}, "end_sigma"),
    ({"model_config": {"objective": "accuracy-please"}}, "objective"),
    ({"train": {"steps": 5, "lr_trials": []}}, "lr_trials"),
])
def test_bad_accuracy_settings_are_refused_by_name(tmp_path, change, named):
    run = {**ACC_RUN, **change}
    with pytest.raises(GenbenchError, match=named):
        _params_with(tmp_path, run)


def test_learning_rate_trials_belong_to_supervised_runs_only(tmp_path):
    with pytest.raises(GenbenchError, match="lr_trials"):
        _params_with(tmp_path, {"model": "vae", "dataset": "mnist", "train": {"steps": 4, "lr_trials": [1e-3]}})


def test_a_label_outside_the_classes_is_refused_before_any_file_is_written(workdir):
    from genbench.train import Job, train

    params = _params_with(workdir, {**ACC_RUN, "model_config": {"network": "cnn", "width": 4, "classes": 5}})
    with pytest.raises(GenbenchError, match="outside the 5 classes"):
        train(Job.from_params(params, "acc", 0), workdir / "runs" / "acc-s0")
    assert not (workdir / "runs").exists()


# --------------------------------------------------------------------------------------------------
# Trials, resume and the score stage on tiny MNIST
# --------------------------------------------------------------------------------------------------
def test_supervised_training_resumes_exactly(workdir):
    """EXACT's state (the gradient-norm average, the running logit statistics) resumes with the weights."""
    from dataclasses import replace

    from genbench.train import Job, train

    params = _params_with(workdir, ACC_RUN)
    job = Job.from_params(params, "acc", 0)
    job = replace(job, spec=replace(job.spec, train=replace(job.spec.train, lr=1e-3, lr_trials=None)))
    full = train(job, workdir / "full")
    assert train(job, workdir / "resumed", stop_after=6)["status"] == "interrupted"
    resumed = train(job, workdir / "resumed")
    a = torch.load(workdir / "full" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(workdir / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert "grad_norm_average" in a and all(torch.equal(a[k], b[k]) for k in a)
    assert full["selected_val_loss"] == resumed["selected_val_loss"]


def test_trials_then_score_write_the_metrics_with_the_selection(workdir):
    from genbench.cli import main

    raw = yaml.safe_load((workdir / "params.yaml").read_text())
    raw["runs"]["acc"] = ACC_RUN
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", "--run", "acc", "--seed", "0"]) == 0
    assert json.loads((workdir / "runs" / "acc-s0" / "outcome.json").read_text())["status"] == "completed"
    assert main(["score", "--run", "acc", "--seed", "0"]) == 0
    m = json.loads((workdir / "metrics" / "acc-s0.json").read_text())
    assert [t["lr"] for t in m["trials"]] == [1e-3, 3e-3]
    best = min(m["trials"], key=lambda t: t["val_error"])
    assert m["selected_lr"] == best["lr"] and m["objective"] == "exact"
    assert 0 <= m["test"]["accuracy"] <= 1 and m["test"]["n"] == 200 and m["test"]["ece"] >= 0
    assert main(["evaluate", "--run", "acc", "--seed", "0"]) != 0  # "a supervised run: it has a score stage"
    assert not (workdir / "samples").exists()
    from genbench.config import load
    from genbench.report import accuracy_sections, plot_accuracy

    md, rows = accuracy_sections(load(workdir / "params.yaml"))
    (row,) = rows
    assert row["run"] == "acc" and row["accuracy"] == m["test"]["accuracy"] and row["lr_chosen"] == f"{best['lr']:g}"
    assert any(line.startswith("| exact | acc |") for line in md)
    plot_accuracy(rows, workdir / "accuracy.png")
    assert (workdir / "accuracy.png").stat().st_size > 0


def test_bench_times_each_objective_against_cross_entropy(workdir):
    from tests.conftest import bench_objectives

    proc, rows = bench_objectives(workdir, {"ce": {**ACC_RUN, "model_config": {**ACC_RUN["model_config"],
                                                                              "objective": "cross-entropy"}},
                                            "exact": ACC_RUN}, "classify", "objectives")
    assert set(rows) == {"cross-entropy", "exact"} and rows["cross-entropy"]["vs_baseline"] == 1.0
    assert rows["exact"]["baseline"] == "cross-entropy" and rows["exact"]["images_per_s"] > 0
    assert "x baseline" in proc.stdout
