"""`genbench verify`: the comparison (pure functions, on synthetic metrics) and one end-to-end run in a
copy of the repository on the `ci` profile (a cheap 2-D row of it, `glow_ring8`)."""
from __future__ import annotations

import copy
import json
import math
import subprocess
import time
from pathlib import Path

import pytest

from genbench import GenbenchError
from genbench.cli import main
from genbench.verify import (BIT, NO_INTERVAL, OUTSIDE, WITHIN, classify, compare_run, exit_status, figures,
                             format_table, own_stderrs, seed_interval, select_runs, stderr_interval)
from tests.test_pipelines import BIN, copy_repo, run, set_profile, tool_env


def toy_flow(nll: float = -0.55, stderr: float = 0.008, kl: float = 2.36, kl_stderr: float = 0.011) -> dict:
    """A 2-D flow's metrics file (the shape of metrics/nice_ring8-s0.json), with timings and versions."""
    return {
        "job": "flow-s0", "run": "flow", "seed": 0, "profile": "ci", "status": "completed",
        "eval_time_s": 0.05,
        "likelihood": {"exact": {"kind": "exact", "n": 1000, "nll_nats": nll, "stderr": stderr, "kl_nats": kl,
                                 "kl_stderr": kl_stderr, "true_nll_nats": -2.9}},
        "scores": {"modes": {"modes_covered": 8, "modes_total": 8, "high_quality_fraction": 0.9, "mode_kl": 0.01,
                             "n": 1000, "min_share": 0.008}},
        "variants": {},
        "sample": {"images_per_s": 2e5, "n": 1000, "sampler": "default", "sampling_seed": 1234},
        "train": {"selected_step": 20, "steps": 20, "train_time_s": 4.1, "train_images_per_s": 1e3, "parameters": 51854},
        "versions": {"torch": "2.14.1"}, "code_version": {"commit": "abc", "code_dirty": False},
    }


def image_gan(fid: float, seed: int = 0) -> dict:
    """An image GAN's metrics file: scores per extractor with protocol settings, a hubness variant."""
    score = {"fid": fid, "kid_mean": 0.15, "kid_std": 0.01, "precision": 0.4, "recall": 0.3, "n_gen": 1000,
             "n_ref": 1000, "kid_subsets": 100, "kid_subset_size": 1000, "kid_subset_size_requested": 1000,
             "kid_subset_size_capped": False, "prc_neighborhood": 3, "seed": 1234,
             "torch_fidelity_version": "0.4.0", "protocol": {"extractor": "classifier-mnist", "n_gen": 1000}}
    return {"job": f"gan-s{seed}", "seed": seed, "profile": "cpu", "status": "completed", "likelihood": {},
            "scores": {"classifier": score},
            "variants": {"hubness": {"scores": {"classifier": {**score, "fid": fid + 20}},
                                     "sample": {"acceptance_rate": 0.03, "images_per_s": 700.0, "seconds": 14.1}}},
            "train": {"train_time_s": 900.0, "selected_step": 5000}, "versions": {"torch": "2.14.1"}}


# --------------------------------------------------------------------------------------------------
# pure functions
# --------------------------------------------------------------------------------------------------
def test_figures_are_the_numbers_of_scores_likelihood_and_variants_only():
    assert figures(toy_flow()) == {
        "likelihood.exact.nll_nats": -0.55, "likelihood.exact.kl_nats": 2.36, "likelihood.exact.true_nll_nats": -2.9,
        "scores.modes.modes_covered": 8, "scores.modes.high_quality_fraction": 0.9, "scores.modes.mode_kl": 0.01}
    assert own_stderrs(toy_flow()) == {"likelihood.exact.nll_nats": 0.008, "likelihood.exact.kl_nats": 0.011}
    gan = figures(image_gan(100.0))
    assert gan == {f"{prefix}.classifier.{key}": value
                   for prefix, fid in (("scores", 100.0), ("variants.hubness", 120.0))
                   for key, value in (("fid", fid), ("kid_mean", 0.15), ("kid_std", 0.01), ("precision", 0.4),
                                      ("recall", 0.3))}
    assert figures({"status": "diverged", "diverged_at_step": 17}) == {"diverged_at_step": 17}


def test_the_same_figures_are_bit_identical_and_pass():
    committed = {0: toy_flow()}
    rows = compare_run("flow", committed, copy.deepcopy(committed))
    assert rows and {r.tier for r in rows} == {BIT}
    assert exit_status(rows) == 0 and exit_status(rows, strict=True) == 0
    # timings and versions differ on every run: not figures
    other = toy_flow()
    other["eval_time_s"], other["versions"] = 9.9, {"torch": "9"}
    assert {r.tier for r in compare_run("flow", committed, {0: other})} == {BIT}


def test_three_seeds_give_an_interval_of_training_noise():
    fids = {0: 10.0, 1: 12.0, 2: 11.5}
    committed = {seed: image_gan(fid, seed) for seed, fid in fids.items()}
    # the interval, computed here independently: mean ± 3 x sample std (n - 1)
    mean = sum(fids.values()) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in fids.values()) / 2)
    lo, hi = mean - 3 * std, mean + 3 * std
    interval = seed_interval(list(fids.values()))
    assert (interval.lo, interval.hi, interval.kind, interval.n_seeds) == (pytest.approx(lo), pytest.approx(hi), "seeds", 3)
    assert seed_interval([10.0, 12.0]) is None and seed_interval([1.0, 2.0, math.inf]) is None

    reproduced = copy.deepcopy(committed)
    reproduced[0]["scores"]["classifier"]["fid"] = hi - 0.01   # inside
    reproduced[1]["scores"]["classifier"]["fid"] = hi + 0.01   # outside
    rows = {(r.seed, r.figure): r for r in compare_run("gan", committed, reproduced)}
    inside, outside = rows[(0, "scores.classifier.fid")], rows[(1, "scores.classifier.fid")]
    assert inside.tier == WITHIN and inside.interval == [pytest.approx(lo), pytest.approx(hi)]
    assert "3 seeds (training noise)" in inside.tolerance and inside.tier_label == "within noise"
    assert outside.tier == OUTSIDE
    assert rows[(2, "scores.classifier.fid")].tier == BIT
    assert exit_status(list(rows.values())) == 1
    # K narrows the interval: with K = 1, seed 0's value lies outside
    narrow = {(r.seed, r.figure): r for r in compare_run("gan", committed, reproduced, k=1.0)}
    assert narrow[(0, "scores.classifier.fid")].tier == OUTSIDE
    assert narrow[(0, "scores.classifier.fid")].interval == [pytest.approx(mean - std), pytest.approx(mean + std)]


def test_re_running_one_seed_is_judged_by_the_interval_of_every_committed_seed():
    """`verify --seeds 0` (CI's cheap sample): only seed 0 comes back, its interval is still the 3 seeds'."""
    fids = {0: 10.0, 1: 12.0, 2: 11.5}
    committed = {seed: image_gan(fid, seed) for seed, fid in fids.items()}
    mean = sum(fids.values()) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in fids.values()) / 2)
    reproduced = {0: copy.deepcopy(committed[0])}
    reproduced[0]["scores"]["classifier"]["fid"] = mean + 2.9 * std   # inside the 3-seed interval, far from seed 0
    rows = compare_run("gan", committed, reproduced, seeds=[0])
    assert rows and {r.seed for r in rows} == {0}
    fid = next(r for r in rows if r.figure == "scores.classifier.fid")
    assert fid.tier == WITHIN and fid.interval == [pytest.approx(mean - 3 * std), pytest.approx(mean + 3 * std)]
    assert exit_status(rows) == 0
    # without `seeds` the seeds that were not re-run would count as missing figures
    assert exit_status(compare_run("gan", committed, reproduced)) == 1


def test_a_single_seed_figure_with_its_own_stderr_gets_a_test_set_noise_interval():
    committed = {0: toy_flow(nll=-0.55, stderr=0.008)}
    near, far = toy_flow(nll=-0.55 + 0.02), toy_flow(nll=-0.55 + 0.03)  # 3 x 0.008 = 0.024
    row = next(r for r in compare_run("flow", committed, {0: near}) if r.figure == "likelihood.exact.nll_nats")
    assert row.tier == WITHIN and row.interval_kind == "stderr"
    assert row.interval == [pytest.approx(-0.55 - 0.024), pytest.approx(-0.55 + 0.024)]
    assert "stderr" in row.tier_label and "not training noise" in row.tolerance
    rows = compare_run("flow", committed, {0: far})
    assert next(r for r in rows if r.figure == "likelihood.exact.nll_nats").tier == OUTSIDE
    assert exit_status(rows) == 1
    assert stderr_interval(1.0, None) is None and stderr_interval(1.0, 0.5, k=2).hi == 2.0


def test_a_single_seed_figure_without_noise_estimate_differs_with_no_interval():
    committed = {0: toy_flow()}
    reproduced = toy_flow()
    reproduced["scores"]["modes"]["modes_covered"] = 7
    rows = compare_run("flow", committed, {0: reproduced})
    row = next(r for r in rows if r.figure == "scores.modes.modes_covered")
    assert row.tier == NO_INTERVAL and row.interval is None
    assert row.tier_label == "differs, no interval (1 seed: needs >= 3 seeds)"
    assert exit_status(rows) == 0 and exit_status(rows, strict=True) == 1
    # two seeds are not enough for an interval either
    two = {s: image_gan(10.0 + s, s) for s in (0, 1)}
    moved = copy.deepcopy(two)
    moved[0]["scores"]["classifier"]["precision"] = 0.41
    row = next(r for r in compare_run("gan", two, moved) if r.figure == "scores.classifier.precision" and r.seed == 0)
    assert row.tier_label == "differs, no interval (2 seeds: needs >= 3 seeds)"


def test_exit_codes_missing_and_extra_figures():
    committed = {0: toy_flow()}
    lost = toy_flow()
    del lost["likelihood"]["exact"]["kl_nats"]
    rows = compare_run("flow", committed, {0: lost})
    assert next(r for r in rows if r.figure == "likelihood.exact.kl_nats").tier == OUTSIDE
    assert exit_status(rows) == 1
    # a figure only the reproduction has (newer code) contradicts nothing committed: fails only --strict
    extra = toy_flow()
    extra["scores"]["modes"]["new_figure"] = 1.0
    rows = compare_run("flow", committed, {0: extra})
    assert [r.tier for r in rows if r.figure == "scores.modes.new_figure"] == [NO_INTERVAL]
    assert (exit_status(rows), exit_status(rows, strict=True)) == (0, 1)
    assert classify(1.0, 1.0, None) == BIT and classify(math.nan, math.nan, None) == BIT
    assert classify(1.0, None, None) == OUTSIDE and classify(None, 1.0, None) == NO_INTERVAL
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["run", "seed", "figure", "committed", "reproduced", "tolerance", "tier"]


def test_select_runs_defaults_to_the_2d_toys_and_rotates_a_sample_with_the_commit():
    runs = {"vae_mnist": "mnist", "a": "toy_ring8", "b": "toy_grid25", "c": "toy_ring8", "d": "toy_moons",
            "e": "toy_ring8"}
    toys = ["a", "b", "c", "d", "e"]
    assert select_runs(runs, [], None, 7)[0] == toys
    assert select_runs(runs, ["vae_mnist", "a", "a"], None, 7)[0] == ["vae_mnist", "a"]
    with pytest.raises(GenbenchError, match="not in params.yaml `runs`: nope"):
        select_runs(runs, ["nope", "a"], None, 0)
    with pytest.raises(GenbenchError, match="--sample"):
        select_runs(runs, [], 0, 0)
    picks = [select_runs(runs, [], 2, commit)[0] for commit in range(3)]
    assert all(len(p) == 2 for p in picks) and picks[0] == ["a", "b"]
    assert select_runs(runs, [], 2, 1) == select_runs(runs, [], 2, 1)  # deterministic given the commit
    assert {r for p in picks for r in p} == set(toys)  # consecutive commits cover all of them
    assert select_runs(runs, [], 9, 3)[0] == toys
    # CI's budget: only the runs whose committed seeds took <= the limit, a run with no cost never
    costs = {"a": 50.0, "b": 500.0, "c": 120.0, "e": 121.0}
    assert select_runs(runs, [], None, 0, costs, 120.0)[0] == ["a", "c"]
    assert select_runs(runs, ["b"], None, 0, costs, 120.0)[0] == ["b"]  # named runs are not filtered
    with pytest.raises(GenbenchError, match="within the limit"):
        select_runs(runs, [], 1, 0, costs, 10.0)


def test_committed_cost_sums_the_seeds_stages():
    from genbench.verify import STAGE_OVERHEAD_S, committed_cost_s

    seed = {"train": {"train_time_s": 100.0}, "eval_time_s": 5.0, "sample": {"seconds": 2.0}}
    assert committed_cost_s([seed, seed, {"status": "diverged"}]) == 2 * 107.0 + 3 * STAGE_OVERHEAD_S


# --------------------------------------------------------------------------------------------------
# end to end: a copy on the ci profile with glow_ring8's metrics committed
# --------------------------------------------------------------------------------------------------
def git_commit(repo: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=genbench-test", "-c", "user.email=test@example.invalid",
                    "-c", "commit.gpgsign=false", "commit", "-q", "-m", message], cwd=repo, check=True)


def verify(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = tool_env(repo)
    return subprocess.run(["genbench", "verify", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_verify_reproduces_a_committed_2d_row_bit_for_bit(tmp_path, monkeypatch, capsys):
    """Same machine, same code: every figure of a committed 2-D row comes back bit for bit, from a clone
    of HEAD (the OUTSIDE and no-interval verdicts and their exit codes: the unit tests above)."""
    t0 = time.perf_counter()
    repo = copy_repo(tmp_path / "repo")
    set_profile(repo, "ci")  # and no dvc.lock (here and in verify's scratch clone of this copy)
    run(["genbench", "resolve"], repo)
    git_commit(repo, "ci profile (cpu-profile metrics of glow_ring8 still committed)")

    # user errors: one line, exit 2, nothing run (in this process: no start-up to pay)
    monkeypatch.chdir(repo)

    def refused(*args: str) -> str:
        assert main(["verify", *args]) == 2
        return capsys.readouterr().err

    assert "not in params.yaml `runs`: nope" in refused("nope", "glow_ring8")
    assert "glow_ring8 has no such seed" in refused("glow_ring8", "--seeds", "7")
    assert "produced on profile 'cpu'" in refused("glow_ring8")  # the committed file is the cpu profile's
    (repo / "metrics/glow_ring8-s0.json").unlink()
    git_commit(repo, "no metrics for glow_ring8")
    assert "metrics/glow_ring8-s0.json is not committed" in refused("glow_ring8")

    env = {**tool_env(repo), "GENBENCH_TRACKING": "off"}
    made = subprocess.run([str(BIN / "dvc"), "repro", "evaluate@glow_ring8-0"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    git_commit(repo, "ci metrics of glow_ring8")
    committed = json.loads((repo / "metrics/glow_ring8-s0.json").read_text())
    assert committed["profile"] == "ci"

    same = verify(repo, "glow_ring8", "--out", "verify.json")
    print(same.stdout)
    assert same.returncode == 0, same.stdout + same.stderr
    report = json.loads((repo / "verify.json").read_text())
    tiers = {row["figure"]: row["tier"] for row in report["rows"]}
    assert {"likelihood.exact.nll_nats", "likelihood.exact.kl_nats", "scores.modes.modes_covered"} <= set(tiers)
    assert set(tiers.values()) == {BIT}, tiers
    assert report["exit_status"] == 0 and report["jobs"] == ["glow_ring8-s0"]
    assert "warning" not in same.stderr  # the copy is committed: nothing unverified

    print(f"integration test: {time.perf_counter() - t0:.1f} s")


def test_scored_runs_figures_carry_their_own_stderrs():
    """A supervised run's test figures and a sentence-embedding run's correlations are verified like the
    generative ones, each with its own standard error (binomial, bootstrap over pairs) as its interval."""
    accuracy = {"test": {"n": 297, "accuracy": 0.98, "accuracy_stderr": 0.008, "cross_entropy": 0.07,
                         "cross_entropy_stderr": 0.01, "ece": 0.02}, "score_time_s": 3.0}
    assert figures(accuracy) == {"test.accuracy": 0.98, "test.cross_entropy": 0.07, "test.ece": 0.02}
    assert own_stderrs(accuracy) == {"test.accuracy": 0.008, "test.cross_entropy": 0.01}
    row = {"pooling": "cls", "method": "whitening", "fit": "all", "k": 256,
           "dev": {"n": 1500, "spearman": 0.8, "spearman_ci95": [0.78, 0.82], "spearman_stderr": 0.01, "pearson": 0.79},
           "test": {"n": 1379, "spearman": 0.75, "spearman_ci95": [0.73, 0.77], "spearman_stderr": 0.012, "pearson": 0.7}}
    sts = {"rows": [row], "dim": 384, "fitting_s": {"whitening": 0.1}}
    assert figures(sts) == {"sts.cls.whitening-all-256.dev.spearman": 0.8, "sts.cls.whitening-all-256.dev.pearson": 0.79,
                            "sts.cls.whitening-all-256.test.spearman": 0.75, "sts.cls.whitening-all-256.test.pearson": 0.7}
    assert own_stderrs(sts)["sts.cls.whitening-all-256.test.spearman"] == 0.012
    assert classify(0.75, 0.76, stderr_interval(0.75, 0.012)) == WITHIN


def test_the_machine_is_recorded_and_a_different_one_is_named_in_the_notes():
    """Figures record the CPU and torch's kernel set beside the software; verify names what differs (a file
    committed before `cpu` was recorded says so) and says nothing where both agree."""
    import torch
    from genbench.evaluate import library_versions
    from genbench.verify import provenance_notes
    here = library_versions()
    assert torch.backends.cpu.get_cpu_capability() in here["cpu"]
    assert provenance_notes("a-s0", {"versions": here}, {"versions": dict(here)}) == []
    other = {**here, "cpu": "Another CPU; torch CPU kernels AVX2"}
    (note,) = provenance_notes("a-s0", {"versions": other}, {"versions": here})
    assert note.startswith("a-s0: software or machine differs") and f"cpu Another CPU; torch CPU kernels AVX2 -> {here['cpu']}" in note
    assert "numpy" not in note and "python" not in note  # only what differs is named
    old = {k: v for k, v in here.items() if k != "cpu"}
    (note,) = provenance_notes("a-s0", {"versions": old}, {"versions": here})
    assert "cpu (not recorded) ->" in note and "noise tier applies" in note
    assert provenance_notes("a-s0", {}, {"versions": here}) == []  # nothing committed to compare with
