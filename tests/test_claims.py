"""The claims table's verdicts: three-valued, with the uncertainty each side carries (genbench/claims.py)."""
from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import pytest

from genbench.claims import MIN_SEEDS, Z, Claim, Figure, claims_table, reference_set, verdict
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


@pytest.mark.parametrize("measured, stderr, expected", [
    (1.01, 0.005, "holds"),                    # interval [1.00, 1.02] inside 1 +- 0.03
    (1.00, 0.02, "inconclusive at this n"),    # centred, but the interval [0.96, 1.04] is wider than the tolerance
    (1.025, 0.005, "inconclusive at this n"),  # [1.015, 1.035] straddles the edge
    (1.10, 0.01, "does not hold"),             # [1.08, 1.12] entirely outside
    (0.90, 0.01, "does not hold"),
])
def test_an_agreement_claim_holds_only_when_its_whole_interval_lies_inside_the_tolerance(measured, stderr, expected):
    predicted = Figure("predicted", 1.0, 0.0, "exact", 100, 1)
    c = Claim("mean = 1", "test", fig(measured, stderr), predicted, needs_seeds=False, tolerance=0.03)
    v, z = verdict(c)
    assert v == expected
    assert z == pytest.approx((measured - 1.0) / stderr)


def test_theory_claims_and_section_read_the_theory_metrics(tmp_path, monkeypatch):
    """The theory checks' claims come from metrics/theory-<check>.json: a slope of 1.98 +- 0.01 agrees with the
    order 2, one of 1.5 does not; a skewness growing with d holds; a planted biased 'unbiased' estimator fails."""
    from genbench.claims import theory_claims
    from genbench.theory_report import theory_sections

    monkeypatch.chdir(tmp_path)
    row = {"distribution": "normal", "n": 2, "replicates": 1000, "unbiased_ratio": 1.2, "unbiased_ratio_stderr": 0.01,
           "biased_ratio": 0.5, "biased_ratio_stderr": 0.01, "expected_biased_ratio": 0.5, "unbiased_mse": 2.0,
           "unbiased_mse_stderr": 0.05, "biased_mse": 0.75, "biased_mse_stderr": 0.02, "mse_difference": -1.25,
           "mse_difference_stderr": 0.04, "ml_sigma_mean": 0.564, "ml_sigma_stderr": 0.002, "ml_sigma_expected": 0.5642}
    write_json("metrics/theory-variance.json", {"result": {"rows": [row, {**row, "n": 5}]}})
    hub = {"k": 5, "n": 500, "resamples": 3}
    write_json("metrics/theory-hubness.json", {"result": {"rows": [
        {**hub, "d": 2, "skewness_mean": 0.1, "skewness_stderr": 0.05, "correlation_mean": -0.02, "correlation_stderr": 0.01},
        {**hub, "d": 256, "skewness_mean": 5.0, "skewness_stderr": 0.5, "correlation_mean": -0.9, "correlation_stderr": 0.01}]}})
    write_json("metrics/theory-gdflow.json", {"result": {"rows": [], "ode_check": 1e-12, "fits": [
        {"problem": "mlp", "instances": 5, "plain_slope_mean": 1.5, "plain_slope_stderr": 0.01,
         "modified_slope_mean": 1.98, "modified_slope_stderr": 0.01}]}})
    params = SimpleNamespace(theory={"variance": {}, "hubness": {}, "gdflow": {}})
    verdicts = {c.claim.rsplit(" (", 1)[0]: verdict(c)[0] for c in theory_claims(params)}
    assert verdicts["the 1/(n-1) variance estimator is unbiased"] == "does not hold"   # 1.2 +- 0.02 vs 1 +- 0.03
    assert verdicts["the 1/n variance estimator is biased by (n-1)/n = 0.5"] == "inconclusive at this n"  # +-0.02 > 0.015
    assert verdicts["for the normal the 1/n estimator has the lower MSE"] == "holds"
    assert verdicts["the k-occurrence's skewness grows with dimension"] == "holds"
    assert verdicts["hubs lie near the data mean: Spearman(N_k, distance to mean) < 0"] == "holds"
    assert verdicts["GD's distance to the gradient flow of L falls as eta^1"] == "does not hold"
    assert verdicts["GD's distance to the flow of L + (eta/4)|grad L|^2 falls as eta^2"] == "holds"
    md, rows = theory_sections(params)
    assert "## Theory checks" in md and {r["table"] for r in rows} == {"variance", "hubness", "gdflow_fit"}


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


def test_reference_set_is_what_determines_it_not_the_feature_file_bytes():
    """Two scores against the same split, size and extractor weights compare, whatever CPU wrote the reference
    features (their file hash differs in its last bits); another split, size or extractor does not."""
    base = {"reference_split": "test", "n_ref": 10000, "weights_sha256": "ab" * 32, "reference_sha256": "cd" * 32}
    assert reference_set(base) == reference_set({**base, "reference_sha256": "ef" * 32})
    for key, other in (("weights_sha256", "12" * 32), ("n_ref", 1000), ("reference_split", "val")):
        assert reference_set(base) != reference_set({**base, key: other})
    a, b = fig(10.0, 0.1, reference=reference_set(base)), fig(12.0, 0.1, reference=reference_set({**base, "n_ref": 1000}))
    assert verdict(Claim("a lower", "x", a, b))[0].startswith("not comparable: reference")
    assert not verdict(Claim("a lower", "x", a, fig(12.0, 0.1, reference=reference_set(base))))[0].startswith("not")


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
                             eval=SimpleNamespace(extractors={"classifier": None}), theory={})
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
                             repeat=SimpleNamespace(seeds=[], runs=[]), eval=SimpleNamespace(extractors={}), theory={})
    _, table = claims_table(params)
    by_run = {r["claim"].split("(")[0].split(":")[0]: r for r in table}
    encoder = by_run["O-GAN's discriminator is an encoder"]
    assert encoder["verdict"] == "holds" and encoder["n"] == "1000 / 1000"
    assert encoder["standard_errors_apart"] == pytest.approx(3.9 / math.hypot(0.01, 0.1), abs=0.01)
    logdet = by_run["i-ResNet's log-det truncation bias falls as series terms grow"]
    assert logdet["verdict"] == "inconclusive at this n"  # 0.31 against 0.30: inside the noise, not "does not hold"


def test_discrete_latent_claims_and_sections_read_their_studies(tmp_path, monkeypatch):
    """The categorical VAE (GS against SF in -ELBO over 3 seeds; the estimator study's bias and variance at the
    smallest against the largest tau) and VQ against FSQ (usage, reconstruction), from synthetic metrics files;
    the report sections build their rows from the same files."""
    from genbench.discrete_report import catvae_sections, codebook_sections

    monkeypatch.chdir(tmp_path)
    protocol = {"n_gen": 1000, "reference_split": "test", "reference_sha256": "abc", "extractor": "classifier-mnist"}
    score = lambda fid: {"fid": fid, "kid_mean": 1.0, "kid_std": 0.1, "kid_subset_size": 100, "precision": 0.5,  # noqa: E731
                         "protocol": protocol}

    def study_rows(bias_scale):
        return [{"estimator": e, "tau": t, "draws": 1000, "examples": 100, "bias2": bias_scale * (t or 1) ** 2,
                 "bias2_stderr": 0.01, "bias": 0.0, "bias_noise_floor": 0.1, "variance": bias_scale / (t or 1),
                 "variance_stderr": 0.05, "exact_norm": 1.0, "baseline": False}
                for e, t in [("sf", None), ("st", None), ("gs", 0.1), ("gs", 2.0), ("st-gs", 0.1), ("st-gs", 2.0)]]

    for seed in range(3):
        for run, est, elbo in (("catvae_gs_mnist", "gs", 100.0 + seed), ("catvae_sf_mnist", "sf", 110.0 + seed)):
            write_json(tmp_path / "metrics" / f"{run}-s{seed}.json", {
                "status": "completed", "train": {"steps": 1000, "train_time_s": 10.0},
                "scores": {"classifier": score(50.0 + seed)}, "studies": {
                    "binarized": {"elbo": {"nll_nats": elbo, "stderr": 0.3, "n": 10000},
                                  "iwae": {"nll_nats": elbo - 4, "stderr": 0.3, "n": 10000, "k": 100}, "binarize_seed": 0},
                    "estimator_study": {"rows": study_rows(0.5 + 0.05 * seed), "trained_with": est}}})
        for run, quantizer, usage, mse in (("fsq1000_mnist", "fsq", 99.0 + 0.1 * seed, 0.010 + 0.001 * seed),
                                           ("vq1024_mnist", "vq", 60.0 + 5 * seed, 0.011 - 0.001 * seed),
                                           ("fsq4375_mnist", "fsq", 90.0, 0.009)):
            write_json(tmp_path / "metrics" / f"{run}-s{seed}.json", {
                "status": "completed", "scores": {"classifier": score(30.0)},
                "reconstruction": {"classifier": score(5.0)}, "studies": {"codebook": {
                    "n": 10000, "codes": {"fsq1000_mnist": 1000, "fsq4375_mnist": 4375}.get(run, 1024),
                    "quantizer": quantizer,
                    "usage_percent": usage, "perplexity": 500.0, "perplexity_fraction": 0.5,
                    "reconstruction_mse": {"mean": mse, "stderr": 1e-4}, "prior_nll_nats": {"mean": 80.0, "stderr": 0.5}}}})
    # a Fashion-MNIST run is scored by its own dataset's classifier: the section shows that column too
    fashion = {**protocol, "extractor": "classifier-fashion_mnist"}
    write_json(tmp_path / "metrics" / "vq1024_fashion-s0.json", {
        "status": "completed", "scores": {"classifier": {**score(40.0), "protocol": fashion}},
        "reconstruction": {"classifier": {**score(7.0), "protocol": fashion}}, "studies": {"codebook": {
            "n": 10000, "codes": 1024, "quantizer": "vq", "usage_percent": 50.0, "perplexity": 300.0,
            "perplexity_fraction": 0.3, "reconstruction_mse": {"mean": 0.02, "stderr": 1e-4},
            "prior_nll_nats": {"mean": 90.0, "stderr": 0.5}}}})
    spec = lambda model, dataset="mnist", **cfg: SimpleNamespace(model=model, dataset=dataset, model_config=cfg)  # noqa: E731
    runs = {"catvae_gs_mnist": spec("catvae", estimator="gs"), "catvae_sf_mnist": spec("catvae", estimator="sf"),
            "fsq1000_mnist": spec("codebook", levels=[8, 5, 5, 5]),
            "vq1024_mnist": spec("codebook", quantizer="vq", codebook_size=1024),
            "vq1024_fashion": spec("codebook", "fashion_mnist", quantizer="vq", codebook_size=1024),
            # the larger pair, its VQ side not run yet: FSQ's 4375 codes must not be compared with VQ's 1024
            "fsq4375_mnist": spec("codebook", levels=[7, 5, 5, 5, 5]),
            "vq4096_mnist": spec("codebook", quantizer="vq", codebook_size=4096)}
    params = SimpleNamespace(runs=runs, seeds=[0], repeat=SimpleNamespace(seeds=[1, 2], runs=list(runs)),
                             eval=SimpleNamespace(extractors={"classifier": None}), theory={})
    _, table = claims_table(params)
    by = {r["claim"].split(" (")[0]: r for r in table}
    gs_sf = by["Gumbel-Softmax trains a lower test -ELBO than SF"]
    assert gs_sf["verdict"] == "holds" and gs_sf["seeds"] == "3 / 3"   # 101 vs 111, seed std 1
    tau_rows = [r for r in table if r["claim"].startswith("as tau falls")]
    assert len(tau_rows) == 2 and all(r["verdict"] == "holds" for r in tau_rows)   # squared bias falls, variance grows
    assert by["FSQ uses more of its codebook than VQ"]["verdict"] == "holds"
    assert by["FSQ reconstructs at least as well as VQ"]["verdict"] == "inconclusive at this n"
    assert [r["claim"] for r in table if "4375" in r["claim"] or "4096" in r["claim"]] == []
    _, rows = catvae_sections(params)
    bound = {r["run"]: r for r in rows if r["table"] == "bound"}
    assert bound["catvae_gs_mnist"]["neg_elbo_nats"] == pytest.approx(101.0) and \
        bound["catvae_gs_mnist"]["published_neg_elbo"] == 101.5
    assert len([r for r in rows if r["table"] == "study" and r["run"] == "catvae_gs_mnist"]) == 6
    md, rows = codebook_sections(params)
    assert {r["run"]: round(r["usage_percent"], 2) for r in rows} == {"fsq1000_mnist": 99.1, "vq1024_mnist": 65.0,
                                                                      "vq1024_fashion": 50.0, "fsq4375_mnist": 90.0}
    assert rows[0]["recon_fid[classifier-mnist]"] == 5.0 and rows[0]["sample_fid[classifier-mnist]"] == 30.0
    header = next(line for line in md if line.startswith("| run |")).split(" | ")
    fashion_row = next(line for line in md if line.startswith("| vq1024_fashion |")).split(" | ")
    assert fashion_row[header.index("recon_fid[classifier-fashion_mnist]")] == "7.0"
    assert fashion_row[header.index("recon_fid[classifier-mnist]")] == "—"


def test_representation_claims_and_section_read_the_probe_figures(tmp_path, monkeypatch):
    """DIM(L) against the VAE's, a random and a supervised encoder's features on the linear probe, over 3 seeds
    (synthetic metrics): clearly above VAE and random (holds), within 2 points of supervised (agreement holds);
    with one seed a side every claim is inconclusive; the section's rows carry Hjelm et al.'s figures."""
    from genbench.representation_report import representation_sections

    monkeypatch.chdir(tmp_path)
    # (objective, estimator): linear-probe accuracy; DIM(L)-JSD 0.1 point under InfoNCE, inside the noise of
    # 3 seeds at a 0.14-point test-set stderr each (inconclusive); DIM(G)-JSD far under DIM(L)-JSD (holds)
    accuracy = {("local", "infonce"): 0.980, ("local", "jsd"): 0.979, ("global", "jsd"): 0.900, ("vae", None): 0.930,
                ("random", None): 0.850, ("supervised", None): 0.985}
    runs = {}
    for (objective, estimator), acc in accuracy.items():
        run = f"dim_{objective}_{estimator or 'none'}_mnist"
        runs[run] = SimpleNamespace(model="dim", dataset="mnist", model_config={"objective": objective})
        for seed in range(3):
            probe = {"accuracy": acc + 0.001 * seed, "accuracy_stderr": 0.0014, "n": 10000}
            write_json(tmp_path / "metrics" / f"{run}-s{seed}.json", {
                "status": "completed", "kind": "representation", "objective": objective,
                "estimator": estimator, "feature_dim": 64, "probe_train_n": 10000,
                "probe_test_n": 10000, "linear_probe": probe, "mlp_probe": probe})
    params = SimpleNamespace(runs=runs, seeds=[0], repeat=SimpleNamespace(seeds=[1, 2], runs=list(runs)),
                             eval=SimpleNamespace(extractors={}), theory={})
    _, table = claims_table(params)
    by = {r["claim"].split(" on a linear")[0]: r["verdict"] for r in table if r["claim"].startswith("DIM(L)")}
    assert by == {"DIM(L) features beat the VAE's": "holds", "DIM(L) features beat a random encoder's": "holds",
                  "DIM(L) features come within 2 points of a supervised encoder's": "holds",
                  "DIM(L) features beat DIM(G)'s, both with the JSD estimator,": "holds",
                  "DIM(L) with InfoNCE beats DIM(L) with JSD,": "inconclusive at this n"}
    one_seed = SimpleNamespace(**{**vars(params), "repeat": SimpleNamespace(seeds=[1, 2], runs=[])})
    _, table = claims_table(one_seed)
    assert [r["verdict"] for r in table if r["claim"].startswith("DIM(L)")] == \
        ["inconclusive: 1 seed(s), needs >= 3"] * 5
    _, rows = representation_sections(params)
    local = next(r for r in rows if r["objective"] == "local/infonce")
    assert local["linear_accuracy"] == pytest.approx(98.1) and local["published_cifar10"] == 75.21


def test_representation_section_carries_an_encoder_probed_at_evaluation(tmp_path, monkeypatch):
    """O-GAN's discriminator is probed by its evaluation (studies.representation, genbench.evaluate.model_studies):
    its row joins the representation table beside the DIM family's, mean ± std over its seeds, and no DIM claim
    takes it as a side."""
    from genbench.representation_report import representation_sections

    monkeypatch.chdir(tmp_path)
    runs = {"ogan_mnist": SimpleNamespace(model="ogan", dataset="mnist", model_config={}),
            "sgan_mnist": SimpleNamespace(model="sgan", dataset="mnist", model_config={})}
    for seed, acc in enumerate((0.90, 0.92, 0.94)):
        probe = {"accuracy": acc, "accuracy_stderr": 0.003, "n": 10000}
        write_json(tmp_path / "metrics" / f"ogan_mnist-s{seed}.json", {
            "status": "completed", "model": "ogan", "studies": {"encoder": {}, "representation": {
                "feature_dim": 128, "probe_train_n": 10000, "probe_test_n": 10000, "linear_probe": probe,
                "mlp_probe": {**probe, "accuracy": acc + 0.02}}}})
        write_json(tmp_path / "metrics" / f"sgan_mnist-s{seed}.json", {"status": "completed", "model": "sgan",
                                                                        "studies": {}})
    params = SimpleNamespace(runs=runs, seeds=[0], repeat=SimpleNamespace(seeds=[1, 2], runs=list(runs)),
                             eval=SimpleNamespace(extractors={}), theory={})
    md, rows = representation_sections(params)
    assert [(r["run"], r["objective"], r["seeds"]) for r in rows] == [("ogan_mnist", "ogan (encoder)", 3)]
    assert rows[0]["linear_accuracy"] == pytest.approx(92.0) and rows[0]["linear_accuracy_std"] == pytest.approx(2.0)
    assert rows[0]["mlp_accuracy"] == pytest.approx(94.0) and rows[0]["published_cifar10"] is None
    assert any("| mnist | ogan_mnist | ogan (encoder) | 3 | 92.00 ± 2.00 | 94.00 ± 2.00 | — |" == line for line in md)


def test_a_figure_over_seeds_is_their_mean_with_the_error_the_seeds_allow():
    """One seed: its value and own error; two (too few for training noise): the mean and the sampling error of
    the mean, sqrt(e1^2 + e2^2) / 2; three or more: the mean and the seeds' standard error (was: with two seeds
    the first seed's figure was shown)."""
    from genbench.claims import _combine

    one = _combine("x", [(10.0, 0.4)], "test-set", 100)
    assert (one.value, one.stderr, one.noise, one.seeds) == (10.0, 0.4, "test-set", 1)
    two = _combine("x", [(10.0, 0.3), (12.0, 0.4)], "test-set", 100)
    assert (two.value, two.seeds) == (11.0, 2) and two.stderr == pytest.approx(0.25)
    assert two.noise == "test-set (2 seeds' mean)"
    three = _combine("x", [(10.0, 0.3), (12.0, 0.4), (14.0, 0.1)], "test-set", 100)
    assert three.value == pytest.approx(12.0) and three.stderr == pytest.approx(2.0 / math.sqrt(3))
    assert three.noise == "training (3 seeds)"
    assert _combine("x", [(1.0, None), (3.0, 0.2)], "test-set", 100).stderr is None
