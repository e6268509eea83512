"""The claims table's verdicts: three-valued, with the uncertainty each side carries (genbench/claims.py)."""
from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import pytest

from genbench.claims import MIN_SEEDS, Z, Claim, Figure, claims_table, verdict
from genbench.io import write_json


def fig(value, stderr, seeds=1, n=100, label="x", reference="test"):
    return Figure(label, value, stderr, "test-set", n, seeds, reference)


@pytest.mark.parametrize("better, worse, expected", [
    (1.0, 1.0 + 3 * math.sqrt(2) * 0.1, "holds"),              # 3 s.e. apart in the claim's favour
    (1.0, 1.0 + 1 * math.sqrt(2) * 0.1, "inconclusive at this n"),
    (1.0, 1.0 - 1 * math.sqrt(2) * 0.1, "inconclusive at this n"),  # against, but inside the noise: never "does not hold"
    (1.0, 1.0 - 3 * math.sqrt(2) * 0.1, "does not hold"),
])
def test_a_difference_inside_the_noise_is_inconclusive(better, worse, expected):
    c = Claim("a < b", "test", fig(better, 0.1), fig(worse, 0.1), needs_seeds=False)
    v, z = verdict(c)
    assert v == expected
    assert z == pytest.approx((worse - better) / math.hypot(0.1, 0.1))


def test_higher_is_better_flips_the_sign_and_unequal_n_is_not_compared():
    c = Claim("precision up", "test", fig(0.6, 0.01), fig(0.5, 0.01), lower_is_better=False, needs_seeds=False)
    assert verdict(c)[0] == "holds"
    assert verdict(Claim("x", "t", fig(1.0, 0.1, n=200), fig(2.0, 0.1, n=1000), needs_seeds=False))[0] \
        .startswith("not comparable")


def test_two_trained_models_need_three_seeds_and_no_interval_is_inconclusive():
    far = Claim("a < b", "t", fig(1.0, 0.001), fig(5.0, 0.001))  # 2800 s.e. of test-set noise, 1 seed
    assert verdict(far)[0] == f"inconclusive: 1 seed(s), needs >= {MIN_SEEDS}"
    assert verdict(Claim("a < b", "t", fig(1.0, None), fig(5.0, None), needs_seeds=False))[0] == \
        "inconclusive: no interval"


def test_table_from_metrics_files_uses_the_seeds_std_and_refuses_a_kid_std_of_the_whole_set(tmp_path, monkeypatch):
    """Three seeds a side: the standard error is the seeds' std / sqrt(3), computed here independently;
    a KID whose subsets are the whole set carries no interval."""
    monkeypatch.chdir(tmp_path)

    def metrics(run, seed, kid, subset):
        protocol = {"n_gen": 1000, "reference_split": "test", "reference_sha256": "abc", "extractor": "classifier-mnist"}
        write_json(tmp_path / "metrics" / f"{run}-s{seed}.json", {"status": "completed", "likelihood": {}, "scores": {
            "classifier": {"kid_mean": kid, "kid_std": 5.0, "kid_subset_size": subset, "fid": 1.0, "precision": 0.5,
                           "protocol": protocol}}})

    div, gp = [10.0, 11.0, 12.0], [20.0, 22.0, 21.0]
    for seed, (a, b) in enumerate(zip(div, gp)):
        metrics("wgan_div_mnist", seed, a, 100)
        metrics("wgan_gp_mnist", seed, b, 100)
    run = lambda model: SimpleNamespace(model=model, dataset="mnist")  # noqa: E731
    params = SimpleNamespace(runs={"wgan_div_mnist": run("wgan_div"), "wgan_gp_mnist": run("wgan_gp")},
                             seeds=[0], repeat=SimpleNamespace(seeds=[1, 2], runs=["wgan_div_mnist", "wgan_gp_mnist"]),
                             eval=SimpleNamespace(extractors={"classifier": None}))
    _, rows = claims_table(params)
    [row] = rows
    se = math.hypot(statistics.stdev(div), statistics.stdev(gp)) / math.sqrt(3)
    assert row["standard_errors_apart"] == pytest.approx((statistics.fmean(gp) - statistics.fmean(div)) / se, abs=0.01)
    assert row["verdict"] == ("holds" if (statistics.fmean(gp) - statistics.fmean(div)) / se > Z else "inconclusive at this n")
    assert row["seeds"] == "3 / 3" and row["uncertainty"].startswith("training (3 seeds)")

    for seed in range(3):  # one seed left a side, its KID subsets the whole set: no interval
        (tmp_path / "metrics" / f"wgan_div_mnist-s{seed}.json").unlink()
    params.repeat.runs = []
    metrics("wgan_div_mnist", 0, 10.0, 1000)
    metrics("wgan_gp_mnist", 0, 20.0, 1000)
    _, rows = claims_table(params)
    assert rows[0]["verdict"] == f"inconclusive: 1 seed(s), needs >= {MIN_SEEDS}" and rows[0]["better"].endswith(": 10")


def test_study_claims_read_the_encoder_and_logdet_studies_of_the_metrics_files(tmp_path, monkeypatch):
    """O-GAN's encoder (reconstruction against a random code) and i-ResNet's truncation bias (evaluation
    against training series length) become rows with the examples' standard errors."""
    monkeypatch.chdir(tmp_path)
    write_json(tmp_path / "metrics" / "ogan_ring8-s0.json", {"status": "completed", "scores": {}, "studies": {
        "encoder": {"n": 1000, "reconstruction_mse": {"mean": 0.10, "stderr": 0.01},
                    "random_code_mse": {"mean": 4.0, "stderr": 0.1}, "latent_correlation": {"mean": 0.9, "stderr": 0.01}}}})
    rows = [{"terms": n, "abs_truncation_bias": b, "abs_truncation_bias_stderr": 0.01, "examples": 64}
            for n, b in ((5, 0.30), (20, 0.31))]
    write_json(tmp_path / "metrics" / "iresnet_ring8-s0.json", {"status": "completed", "scores": {}, "studies": {
        "logdet_truncation": {"rows": rows, "series_terms_train": 5, "series_terms_eval": 20}}})
    run = lambda model: SimpleNamespace(model=model, dataset="toy_ring8")  # noqa: E731
    params = SimpleNamespace(runs={"ogan_ring8": run("ogan"), "iresnet_ring8": run("iresnet")}, seeds=[0],
                             repeat=SimpleNamespace(seeds=[], runs=[]), eval=SimpleNamespace(extractors={}))
    _, table = claims_table(params)
    by_run = {r["claim"].split("(")[0].split(":")[0]: r for r in table}
    encoder = by_run["O-GAN's discriminator is an encoder"]
    assert encoder["verdict"] == "holds" and encoder["n"] == "1000 / 1000"
    assert encoder["standard_errors_apart"] == pytest.approx(3.9 / math.hypot(0.01, 0.1), abs=0.01)
    logdet = by_run["i-ResNet's log-det truncation bias falls as series terms grow"]
    assert logdet["verdict"] == "inconclusive at this n"  # 0.31 against 0.30: inside the noise, not "does not hold"
