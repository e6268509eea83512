"""The claims table: each checkable claim of the papers behind the suite, the two figures it compares
with their uncertainty, n and seeds, and a verdict among holds / does not hold / inconclusive.

A claim says figure A is better than figure B (lower FID, KID or bits/dim; higher precision). With
d = B - A (sign-flipped where higher is better) and s = sqrt(u_A^2 + u_B^2), the verdict is

    holds            d >  Z s
    does not hold    d < -Z s
    inconclusive     otherwise ("at this n": a difference inside the noise is never "does not hold")

with Z = 2 and u the standard error of each side:
  - a figure over >= 3 seeds: its sample std over the seeds / sqrt(seeds) (training noise);
  - one seed: a likelihood's stderr over the test examples, or KID's std over its subsets when the
    subsets are smaller than the set (sampling noise only); FID has no interval at one seed, so claims on
    it are judged by the KID of the same samples.
Where the two sides are scored on the same test items (STS-B's pairs), s is the paired bootstrap standard
error of the difference itself (plus the seeds' spread of the difference when one side is trained), not the
sides' errors combined as if independent.
An agreement claim (the theory checks: a measured figure equals a predicted one, e.g. an estimator's mean
equals the true variance, a fitted slope equals 2) states a tolerance delta. It holds when the whole interval
d +- Z s lies inside +-delta, does not hold when the whole interval lies outside it, and is inconclusive
otherwise (an equivalence test: "inside the noise" alone never makes it hold, a coarse interval stays open); one
between two trained models (DIM against a supervised encoder) needs >= 3 seeds a side like any other.
A claim between two trained models depends on training randomness: with fewer than 3 seeds per side it is
"inconclusive: N seed(s), needs >= 3" whatever the sampling noise says (the row still shows how many
sampling-noise standard errors apart the figures are). A claim between two samplers or bounds of the same
network needs no seeds. Compared figures must share n and reference set, or the row says they do not. A
reference set is what determines it (`reference_set`): its split, its size and the extractor's weights, not
the bytes of its feature file, which also record the CPU's float kernels.
"""
from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable

from genbench.io import read_json
from genbench.layout import metrics_path

Z = 2.0
MIN_SEEDS = 3
COUNT_ROUNDING_STD = 1 / math.sqrt(12)  # the std of an integer count's rounding error (uniform on +-1/2)


@dataclass
class Figure:
    """One side of a claim: its value (mean over seeds), standard error, and what the error measures."""
    label: str
    value: float
    stderr: float | None
    noise: str  # "training (3 seeds)", "test-set", "KID subsets", "none"
    n: int | None
    seeds: int
    reference: str | None = None


@dataclass
class Claim:
    claim: str
    source: str
    better: Figure  # the side the claim says is better
    worse: Figure
    lower_is_better: bool = True
    needs_seeds: bool = True  # a comparison of two trained models (not two samplers of one network)
    runs: tuple[str, ...] = ()  # the runs whose metrics it reads
    # the standard error of the difference itself, where the two sides share their sampling noise (a paired
    # bootstrap over the same test pairs): used instead of combining the sides' errors as if independent
    difference_stderr: float | None = None
    # an agreement claim: `better` is the measured figure, `worse` the predicted one, equal within +- tolerance
    tolerance: float | None = None


def agreement_verdict(c: Claim) -> tuple[str, float | None]:
    """An agreement claim's verdict by the equivalence rule of the module docstring; z = d / s."""
    d = c.better.value - c.worse.value
    s = math.sqrt(sum((f.stderr or 0.0) ** 2 for f in (c.better, c.worse)))
    z = d / s if s else None
    if abs(d) + Z * s <= c.tolerance:
        return "holds", z
    if abs(d) - Z * s > c.tolerance:
        return "does not hold", z
    return "inconclusive at this n", z


def verdict(c: Claim) -> tuple[str, float | None]:
    """(verdict, distance in standard errors) of a claim, by the rule of the module docstring."""
    if c.tolerance is not None:
        seeds = min(c.better.seeds, c.worse.seeds)
        if c.needs_seeds and seeds < MIN_SEEDS:
            return f"inconclusive: {seeds} seed(s), needs >= {MIN_SEEDS}", None
        return agreement_verdict(c)
    if c.better.n != c.worse.n:
        return f"not comparable: n {c.better.n} vs {c.worse.n}", None
    if c.better.reference != c.worse.reference:
        return f"not comparable: reference {c.better.reference} vs {c.worse.reference}", None
    d = (c.worse.value - c.better.value) * (1 if c.lower_is_better else -1)
    errors = [f.stderr for f in (c.better, c.worse)]
    s = math.sqrt(sum(e * e for e in errors)) if all(e is not None for e in errors) else None
    if c.difference_stderr is not None:
        s = c.difference_stderr
    z = d / s if s else None
    seeds = min(c.better.seeds, c.worse.seeds)
    if c.needs_seeds and seeds < MIN_SEEDS:
        return f"inconclusive: {seeds} seed(s), needs >= {MIN_SEEDS}", z
    if z is None:
        return "inconclusive: no interval", None
    if z > Z:
        return "holds", z
    if z < -Z:
        return "does not hold", z
    return "inconclusive at this n", z


# --------------------------------------------------------------------------------------------------
# figures from the metrics files
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _read(path: str, mtime_ns: int) -> dict[str, Any]:
    """A metrics file, read once per version (every claim on a run reads the same files)."""
    return read_json(path)


def _metrics(params, run: str) -> list[dict[str, Any]]:
    """The completed metrics files of every seed of `run` that ran."""
    seeds = params.seeds + (params.repeat.seeds if run in params.repeat.runs else [])
    out = []
    for seed in seeds:
        path = metrics_path(run, seed)
        if path.exists() and (m := _read(str(path.resolve()), path.stat().st_mtime_ns)).get("status") == "completed":
            out.append(m)
    return out


def _combine(label: str, values: list[tuple[float, float | None]], noise: str, n: int | None,
             reference: str | None = None) -> Figure:
    """Mean over seeds; with >= 3 seeds the error is training noise, with one the figure's own error, with two
    (too few to estimate training noise) the mean and its own (sampling) error, sqrt(sum err^2) / 2: no verdict
    that needs training noise is drawn from fewer than MIN_SEEDS seeds (`verdict`)."""
    mean = statistics.fmean(v for v, _ in values)
    if len(values) >= MIN_SEEDS:
        return Figure(label, mean, statistics.stdev(v for v, _ in values) / math.sqrt(len(values)),
                      f"training ({len(values)} seeds)", n, len(values), reference)
    errors = [e for _, e in values]
    if any(e is None for e in errors):
        return Figure(label, mean, None, "none", n, len(values), reference)
    err = math.sqrt(sum(e * e for e in errors)) / len(errors)
    return Figure(label, mean, err, noise if len(values) == 1 else f"{noise} ({len(values)} seeds' mean)", n,
                  len(values), reference)


def likelihood_figure(params, run: str, kind: str, label: str) -> Figure | None:
    found = [m["likelihood"][kind] for m in _metrics(params, run) if kind in m.get("likelihood", {})]
    if not found or "bits_per_dim" not in found[0]:
        return None
    return _combine(label, [(f["bits_per_dim"], f.get("stderr")) for f in found], "test-set", found[0]["n"],
                    "test split")


def sample_figure(params, run: str, extractor: str, key: str, label: str, variant: str | None = None) -> Figure | None:
    """KID (with its subset std when the subsets are smaller than the set), FID or precision of a run's
    main samples or of one variant's, per extractor."""
    found = []
    for m in _metrics(params, run):
        if variant and variant not in m.get("variants", {}):
            continue
        scores = m["variants"][variant]["scores"] if variant else m.get("scores", {})
        if extractor in scores:
            found.append(scores[extractor])
    if not found:
        return None
    s0 = found[0]
    informative = key == "kid_mean" and s0.get("kid_subset_size", 0) < s0["protocol"]["n_gen"]
    values = [(s[key], s["kid_std"] if informative else None) for s in found]
    return _combine(label, values, "KID subsets", s0["protocol"]["n_gen"], reference_set(s0["protocol"]))


def reference_set(protocol: dict[str, Any]) -> str:
    """The reference set of a score: split, size and extractor weights (what the refstats stage reads).
    Not the feature file's hash (`reference_sha256`, kept in the protocol as provenance): the same images and
    weights give features that differ in their last bits from one CPU's float kernels to another's (the
    committed MNIST references were made on an AVX-512 machine, this suite's GLANN rows on an AVX2 one).
    Measured on MNIST's classifier reference: oneDNN's SSE4.1 kernels against its AVX2 ones changed 18.6 % of
    the feature values by at most 1.7e-7 relative, GLANN's FID[classifier] by 1e-6 (141.722042 -> .722043) and
    its KID by 2e-5 (681 +- 105), precision and recall not at all: far inside any seed's noise."""
    return (f"{protocol['reference_split']} n={protocol.get('n_ref', '?')} "
            f"weights {protocol.get('weights_sha256', '?')[:12]}")


# --------------------------------------------------------------------------------------------------
# the claims
# --------------------------------------------------------------------------------------------------
def _runs_of(params, model: str) -> list[str]:
    return [name for name, r in params.runs.items() if r.model == model]


def _pairs(params, better_model: str, worse_model: str) -> list[tuple[str, str]]:
    """Runs of the two models on the same dataset: per dataset, each model's first run in params.yaml (its
    main run; later ones are studies of a setting: the beta-VAE sweep, Glow with W = exp(A))."""
    def first(model: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in _runs_of(params, model):
            out.setdefault(params.runs[r].dataset, r)
        return out

    worse = first(worse_model)
    return [(r, worse[dataset]) for dataset, r in first(better_model).items() if dataset in worse]


def _extractors(params) -> list[str]:
    return list(params.eval.extractors)


def claims(params) -> list[Claim]:
    out: list[Claim] = []

    def add(text: str, source: str, better: Figure | None, worse: Figure | None, runs: tuple[str, ...],
            **kw) -> None:
        if better is not None and worse is not None:
            out.append(Claim(text, source, better, worse, runs=runs, **kw))

    # likelihood orderings of the flow papers, and f-VAE over the VAE (bits/dim on the test split)
    for better, worse, kind_b, kind_w, source in (
            ("glow", "realnvp", "exact", "exact", "Kingma & Dhariwal 2018 (Glow), Table 2"),
            ("realnvp", "nice", "exact", "exact", "Dinh et al. 2017 (Real NVP), Table 1 vs Dinh et al. 2014"),
            ("fvae", "vae", "elbo", "elbo", "Su & Wu 2018 (f-VAEs), sec. 4")):
        for rb, rw in _pairs(params, better, worse):
            add(f"{better} has lower bits/dim than {worse} ({params.runs[rb].dataset}, {kind_b})", source,
                likelihood_figure(params, rb, kind_b, rb), likelihood_figure(params, rw, kind_w, rw), (rb, rw))
    # WGAN-div over WGAN-GP (sample quality), per extractor: KID of the same samples as the FID
    for rb, rw in _pairs(params, "wgan_div", "wgan_gp"):
        for e in _extractors(params):
            add(f"WGAN-div has lower KID[{e}] than WGAN-GP ({params.runs[rb].dataset})",
                "Wu et al. 2018 (WGAN-div), Table 1 (FID); Su, kexue.fm 6139",
                sample_figure(params, rb, e, "kid_mean", rb), sample_figure(params, rw, e, "kid_mean", rw), (rb, rw))
    # GAN-QP (no Lipschitz constraint, a quadratic potential) against WGAN-GP
    for rb, rw in _pairs(params, "gan_qp", "wgan_gp"):
        for e in _extractors(params):
            add(f"GAN-QP has lower KID[{e}] than WGAN-GP ({params.runs[rb].dataset})",
                "Su 2018 (GAN-QP), sec. 5: better FID than WGAN-GP without a Lipschitz constraint",
                sample_figure(params, rb, e, "kid_mean", rb), sample_figure(params, rw, e, "kid_mean", rw), (rb, rw))
    # GLANN (non-adversarial: GLO + IMLE) against every GAN objective with the same generator network
    for gan in ("sgan", "wgan_gp", "wgan_div", "gan_qp", "ogan"):
        for rb, rw in _pairs(params, "glann", gan):
            for e in _extractors(params):
                add(f"GLANN has lower KID[{e}] than {gan} ({params.runs[rb].dataset}; same generator network)",
                    "Hoshen, Li & Malik 2019 (GLANN), Table 1: lower FID than GANs of the same architecture",
                    sample_figure(params, rb, e, "kid_mean", rb), sample_figure(params, rw, e, "kid_mean", rw), (rb, rw))
    # samplers of one network: the hubness prior (quality up: KID and precision), the EBM's replay buffer
    for run, spec in params.runs.items():
        for e in _extractors(params):
            main_kid = sample_figure(params, run, e, "kid_mean", f"{run} plain")
            hub_kid = sample_figure(params, run, e, "kid_mean", f"{run} [hubness]", "hubness")
            add(f"hubness-prior samples have lower KID[{e}] than plain ones ({run})",
                "Liang, Wu, Lai & Qin 2022 (hubness prior), sec. 5", hub_kid, main_kid, (run,), needs_seeds=False)
            add(f"hubness-prior samples have higher precision[{e}] than plain ones ({run})",
                "Liang, Wu, Lai & Qin 2022 (hubness prior): the mechanism is precision up, diversity down",
                sample_figure(params, run, e, "precision", f"{run} [hubness]", "hubness"),
                sample_figure(params, run, e, "precision", f"{run} plain"), (run,), lower_is_better=False,
                needs_seeds=False)
            add(f"replay-buffer samples have lower KID[{e}] than fresh Langevin chains ({run})",
                "Du & Mordatch 2019 (IGEBM), sec. 3.3", sample_figure(params, run, e, "kid_mean", f"{run} [buffer]", "buffer"),
                sample_figure(params, run, e, "kid_mean", f"{run} plain"), (run,), needs_seeds=False)
    for run in _runs_of(params, "tarflow"):  # the same draws with and without the denoising step
        for e in _extractors(params):
            add(f"TARFLOW's denoising step improves KID[{e}] ({run})", "Zhai et al. 2024 (TARFLOW), sec. 2.5 and Table 5",
                sample_figure(params, run, e, "kid_mean", f"{run} denoised"),
                sample_figure(params, run, e, "kid_mean", f"{run} [no-denoise]", "no-denoise"), (run,), needs_seeds=False)
    for run in _runs_of(params, "ogan"):
        add(f"O-GAN's discriminator is an encoder: G(E(x)) is closer to x than G(z) for a random z "
            f"({params.runs[run].dataset}, MSE)", "Su 2019 (O-GAN), sec. 3-4 (reconstructions, Fig. 3)",
            study_figure(params, run, "encoder", "reconstruction_mse", f"{run} G(E(x))"),
            study_figure(params, run, "encoder", "random_code_mse", f"{run} G(z), random z"), (run,), needs_seeds=False)
    for run in _runs_of(params, "iresnet"):
        ms = _metrics(params, run)
        study = ms[0].get("studies", {}).get("logdet_truncation") if ms else None
        if study:
            n_train, n_eval = study["series_terms_train"], study["series_terms_eval"]
            add(f"i-ResNet's log-det truncation bias falls as series terms grow: |bias| at {n_eval} terms < at "
                f"{n_train} ({params.runs[run].dataset})", "Behrmann et al. 2019 (i-ResNet), sec. 3.2, Theorem 3",
                logdet_figure(params, run, n_eval), logdet_figure(params, run, n_train), (run,), needs_seeds=False)
    out += diffusion_claims(params)
    out += accuracy_claims(params)
    out += sts_claims(params)
    out += catvae_claims(params)
    out += codebook_claims(params)
    out += theory_claims(params)
    out += rate_distortion_claims(params)
    out += representation_claims(params)
    return out


REPRESENTATION_CLOSE = 2.0  # "close to supervised": within 2 accuracy points (published: 75.21 vs 75.39)


def representation_claims(params) -> list[Claim]:
    """Hjelm et al.'s Table 1 ordering, per dataset, on the linear probe's test accuracy: DIM(L) (InfoNCE where
    it ran, else JSD) above the VAE's and the random encoder's features, and within REPRESENTATION_CLOSE points of
    the supervised encoder (an agreement claim); trained models on both sides, so >= 3 seeds a side."""
    from genbench.representation_report import objective_label, representation_metrics

    by: dict[tuple[str, str], str] = {}
    for run, spec in params.runs.items():
        ms = representation_metrics(params, run) if spec.model == "dim" else []
        if ms:
            by.setdefault((spec.dataset, objective_label(ms[0])), run)

    def fig(run: str) -> Figure:
        ms = representation_metrics(params, run)
        return _combine(f"{run} linear probe %", [(100 * m["linear_probe"]["accuracy"],
                                                   100 * m["linear_probe"]["accuracy_stderr"]) for m in ms],
                        "test-set", ms[0]["probe_test_n"], "test split")

    out: list[Claim] = []
    source = "Hjelm et al. 2019 (Deep InfoMax), Table 1 (CIFAR-10, conv: DIM(L) InfoNCE 75.21, VAE 60.71, supervised 75.39)"
    for dataset in dict.fromkeys(d for d, _ in by):
        local = by.get((dataset, "local/infonce")) or by.get((dataset, "local/jsd"))
        if local is None:
            continue
        for rival, what in (("vae", "the VAE's"), ("random", "a random encoder's")):
            if (dataset, rival) in by:
                out.append(Claim(f"DIM(L) features beat {what} on a linear probe ({dataset}, test accuracy %)", source,
                                 fig(local), fig(by[(dataset, rival)]), lower_is_better=False,
                                 runs=(local, by[(dataset, rival)])))
        if (dataset, "supervised") in by:
            out.append(Claim(f"DIM(L) features come within {REPRESENTATION_CLOSE:g} points of a supervised encoder's on a "
                             f"linear probe ({dataset}, test accuracy %)", source, fig(local),
                             fig(by[(dataset, "supervised")]), runs=(local, by[(dataset, "supervised")]),
                             tolerance=REPRESENTATION_CLOSE))
        # Table 1's two orderings among DIM's own objectives: the local objective above the global one with the
        # same estimator (the paper's "structure matters"), and InfoNCE above JSD for the local one
        table1 = "Hjelm et al. 2019 (Deep InfoMax), Table 1: DIM(L) above DIM(G) with each estimator; InfoNCE the best DIM(L)"
        for better, worse, what in (("local/jsd", "global/jsd", "DIM(L) features beat DIM(G)'s, both with the JSD estimator"),
                                    ("local/infonce", "local/jsd", "DIM(L) with InfoNCE beats DIM(L) with JSD")):
            if (dataset, better) in by and (dataset, worse) in by:
                out.append(Claim(f"{what}, on a linear probe ({dataset}, test accuracy %)", table1,
                                 fig(by[(dataset, better)]), fig(by[(dataset, worse)]), lower_is_better=False,
                                 runs=(by[(dataset, better)], by[(dataset, worse)])))
    return out


def rate_distortion_claims(params) -> list[Claim]:
    """The beta sweep of the VAE (genbench/models/vae.py): the ELBO's own point beta = 1 has the lowest test
    -ELBO = R + D of the sweep (against every other beta), and raising beta switches latent units off (active
    units, each beta against the next); two trained models per claim, so >= 3 seeds a side."""
    from genbench.rate_distortion_report import studies, sweep_runs

    def fig(run: str, beta: float, key: str) -> Figure | None:
        found = studies(params, run)
        if not found:
            return None
        values = [(s[key]["nats"], s[key]["stderr"]) if key != "active_units" else (float(s[key]), None)
                  for s in found]
        figure = _combine(f"beta={beta:g} {'-ELBO' if key == 'neg_elbo' else 'active units'}", values, "test-set",
                          found[0]["n"], "test split")
        if key == "active_units":  # a count: its rounding error (1/sqrt(12) per seed) floors the seeds' spread
            floor = COUNT_ROUNDING_STD / math.sqrt(figure.seeds)
            figure.stderr = max(figure.stderr or 0.0, floor)
        return figure

    out: list[Claim] = []
    for dataset, pairs in sweep_runs(params).items():
        source = "Higgins et al. 2017; Alemi et al. 2018; Su, kexue.fm 'VAE + information bottleneck'"
        at_one = [run for beta, run in pairs if beta == 1.0]
        elbo = fig(at_one[0], 1.0, "neg_elbo") if at_one else None
        for beta, run in pairs:
            other = fig(run, beta, "neg_elbo")
            if elbo and other and run != at_one[0]:
                out.append(Claim(f"the ELBO's own beta = 1 reaches a lower test -ELBO than beta = {beta:g} ({dataset}, nats)",
                                 source, elbo, other, runs=(at_one[0], run)))
        for (low, low_run), (high, high_run) in zip(pairs, pairs[1:]):
            fewer, more = fig(high_run, high, "active_units"), fig(low_run, low, "active_units")
            if fewer and more:
                out.append(Claim(f"raising beta {low:g} -> {high:g} switches latent units off ({dataset}, active units)",
                                 source, fewer, more, runs=(low_run, high_run)))
    return out


def configured_codes(spec) -> tuple[str, int]:
    """A codebook run's quantizer and codebook size as its configuration sets them (genbench.models.vq)."""
    from genbench.models.vq import CodebookConfig
    cfg = CodebookConfig(**spec.model_config)
    return cfg.quantizer, cfg.codes


def codebook_claims(params) -> list[Claim]:
    """FSQ against the VQ run of the nearest configured codebook size on the same dataset (chosen among the
    profile's runs, not among those that have run: a rival still pending leaves the claim out rather than
    pairing FSQ with a size it was not matched with): FSQ uses more of its codebook (test usage %), and
    reconstructs no worse (test MSE: "inconclusive" reads as "similar"); >= 3 seeds a side."""
    runs = [(run, spec) for run, spec in params.runs.items() if spec.model == "codebook"]
    out: list[Claim] = []
    source = "Mentzer et al. 2024 (FSQ), sec. 4: ~100 % codebook usage against ~81 % for VQ, similar reconstruction"
    for run, spec in runs:
        quantizer, codes = configured_codes(spec)
        vq_runs = [(r, configured_codes(s)[1]) for r, s in runs
                   if s.dataset == spec.dataset and configured_codes(s)[0] == "vq"]
        if quantizer != "fsq" or not vq_runs:
            continue
        rival = min(vq_runs, key=lambda item: abs(math.log(item[1] / codes)))[0]
        fsq, vq = ([m["studies"]["codebook"] for m in _metrics(params, r) if "codebook" in m.get("studies", {})]
                   for r in (run, rival))
        if not fsq or not vq:
            continue

        def fig(label: str, studies: list[dict], key: str) -> Figure:
            values = [(s[key], None) if not isinstance(s[key], dict) else (s[key]["mean"], s[key]["stderr"])
                      for s in studies]
            return _combine(label, values, "test-set", studies[0]["n"], "test split")

        sizes = f"{fsq[0]['codes']} vs {vq[0]['codes']} codes, {spec.dataset}"
        out.append(Claim(f"FSQ uses more of its codebook than VQ ({sizes}, test usage %)", source,
                         fig(f"{run} usage %", fsq, "usage_percent"), fig(f"{rival} usage %", vq, "usage_percent"),
                         lower_is_better=False, runs=(run, rival)))
        out.append(Claim(f"FSQ reconstructs at least as well as VQ ({sizes}, test MSE; inconclusive = similar)", source,
                         fig(f"{run} MSE", fsq, "reconstruction_mse"), fig(f"{rival} MSE", vq, "reconstruction_mse"),
                         runs=(run, rival)))
    return out


def catvae_claims(params) -> list[Claim]:
    """Jang et al.'s ordering of the estimators in test -ELBO (Gumbel-Softmax lowest; >= 3 seeds a side), and
    the estimator study's claim on the GS-trained network: as tau falls the GS gradient's bias falls and its
    variance grows (smallest against largest tau of the study; errors over images, or over seeds)."""
    by_estimator: dict[tuple[str, str], str] = {}
    for run, spec in params.runs.items():
        if spec.model == "catvae":
            by_estimator[(spec.dataset, spec.model_config.get("estimator", "gs"))] = run
    out: list[Claim] = []
    for (dataset, estimator), run in by_estimator.items():
        if estimator != "gs":
            continue
        gs = binarized_figure(params, run, f"{run} -ELBO")
        for other in ("sf", "st", "st-gs"):
            rival = by_estimator.get((dataset, other))
            worse = binarized_figure(params, rival, f"{rival} -ELBO") if rival else None
            if gs and worse:
                out.append(Claim(f"Gumbel-Softmax trains a lower test -ELBO than {other.upper()} ({dataset}, binarized, "
                                 "nats)", "Jang, Gu & Poole 2017, Table 1 (VAE: GS 101.5, ST-GS 107.8, SF 110.6, ST 110.9)",
                                 gs, worse, runs=(run, rival)))
        rows = [m["studies"]["estimator_study"]["rows"] for m in _metrics(params, run)
                if "estimator_study" in m.get("studies", {})]
        taus = sorted({r["tau"] for r in rows[0] if r["estimator"] == "gs"}) if rows else []
        if len(taus) < 2:
            continue
        low, high = taus[0], taus[-1]

        def side(key: str, tau: float) -> Figure:
            found = [next(r for r in rs if r["estimator"] == "gs" and r["tau"] == tau) for rs in rows]
            return _combine(f"GS tau={tau:g} {key}", [(r[key], r[f"{key}_stderr"]) for r in found], "test-set",
                            found[0]["examples"], "test split")

        source = "Jang et al. 2017, sec. 2-3: the relaxation's bias vanishes and its variance grows as tau -> 0"
        out.append(Claim(f"as tau falls ({high:g} -> {low:g}) the Gumbel-Softmax gradient's squared bias falls ({run})",
                         source, side("bias2", low), side("bias2", high), needs_seeds=False, runs=(run,)))
        out.append(Claim(f"as tau falls ({high:g} -> {low:g}) the Gumbel-Softmax gradient's variance grows ({run})",
                         source, side("variance", low), side("variance", high), lower_is_better=False,
                         needs_seeds=False, runs=(run,)))
    return out


def binarized_figure(params, run: str, label: str) -> Figure | None:
    """Test -ELBO (nats, fixed binarization) of a categorical-VAE run: mean over seeds, or one seed's stderr."""
    found = [m["studies"]["binarized"]["elbo"] for m in _metrics(params, run) if "binarized" in m.get("studies", {})]
    if not found:
        return None
    return _combine(label, [(f["nll_nats"], f["stderr"]) for f in found], "test-set", found[0]["n"],
                    "test split (binarized)")


def accuracy_claims(params) -> list[Claim]:
    """EXACT against cross-entropy in test accuracy, per dataset (mean over seeds, training noise)."""
    by_objective: dict[tuple[str, str], str] = {}
    for run, spec in params.runs.items():
        if spec.model == "classify":
            by_objective[(spec.dataset, spec.model_config.get("objective", "cross-entropy"))] = run
    out = []
    for (dataset, objective), exact in by_objective.items():
        ce = by_objective.get((dataset, "cross-entropy"))
        if objective != "exact" or ce is None:
            continue
        better, worse = accuracy_figure(params, exact), accuracy_figure(params, ce)
        if better is not None and worse is not None:
            out.append(Claim(f"EXACT >= cross-entropy in test accuracy ({dataset})",
                             "Karpukhin et al. 2022 (EXACT), Table 2: MNIST 99.67 vs 99.64 (SGD), CIFAR-10 96.73 vs "
                             "96.23 (ASAM)", better, worse, lower_is_better=False, runs=(exact, ce)))
    return out


# Su et al. 2021, Table 1 (STS-B test Spearman x 100, BERT-base, first-last-avg, fitted on all STS-B sentences)
PUBLISHED_STS = {"raw": 59.04, "flow": 70.72, "whitening": 71.34, "whitening-256": 71.43}
STS_CLAIMS = ("whitening >= flow", "whitening-256 >= whitening")


def sts_claims(params) -> list[Claim]:
    """BERT-whitening >= BERT-flow and whitening-256 >= whitening in STS-B test Spearman, per pooling. The
    sides share the test pairs, so the verdict uses the paired bootstrap standard error of the difference;
    the flow's side also varies with its training seed (>= 3 seeds: their spread is added)."""
    out = []
    for run, spec in params.runs.items():
        ms = [m for m in _metrics(params, run) if m.get("kind") == "sts"]
        if spec.model != "bertflow" or not ms:
            continue
        for comparison in ms[0]["comparisons"]:
            pooling, claim = comparison["pooling"], comparison["claim"]
            if claim not in STS_CLAIMS:  # the other k's differences stay in the metrics file
                continue
            sides = []
            for side in ("better", "worse"):
                method, fit, k = comparison[side]
                rows = [next(r for r in m["rows"] if (r["pooling"], r["method"], r["fit"], r["k"]) == (pooling, method, fit, k))
                        for m in ms]
                label = f"{method}{'' if k == ms[0]['dim'] else f'-{k}'} ({pooling}, fit {fit})"
                values = [(100 * r["test"]["spearman"], 100 * r["test"]["spearman_stderr"]) for r in rows]
                sides.append(_combine(label, values, "bootstrap over pairs", rows[0]["test"]["n"], "test") if method == "flow"
                             else Figure(label, values[0][0], values[0][1], "bootstrap over pairs (no training noise)",
                                         rows[0]["test"]["n"], len(ms), "test"))
            diffs = [next(c for c in m["comparisons"] if (c["pooling"], c["claim"]) == (pooling, claim)) for m in ms]
            paired = 100 * statistics.fmean(c["difference_stderr"] for c in diffs)
            trained = "flow" in claim
            per_seed = [sides[0].value - 100 * next(r for r in m["rows"] if (r["pooling"], r["method"], r["fit"], r["k"])
                                                    == (pooling, *comparison["worse"]))["test"]["spearman"] for m in ms]
            spread = statistics.stdev(per_seed) / math.sqrt(len(ms)) if trained and len(ms) >= MIN_SEEDS else 0.0
            published = " vs ".join(f"{PUBLISHED_STS[key]:.2f}" for key in
                                    (("whitening", "flow") if trained else ("whitening-256", "whitening")))
            out.append(Claim(f"{claim} in STS-B test Spearman x 100 ({pooling}, {ms[0]['encoder']})",
                             f"Su et al. 2021, Table 1: BERT-base first-last-avg {published}", *sides,
                             lower_is_better=False, needs_seeds=trained, runs=(run,),
                             difference_stderr=math.sqrt(paired ** 2 + spread ** 2)))
    return out


def accuracy_figure(params, run: str) -> Figure | None:
    """Test accuracy (%) of a supervised run: mean over its seeds; one seed: its binomial stderr."""
    ms = [m for m in _metrics(params, run) if "test" in m]
    if not ms:
        return None
    values = [(100 * m["test"]["accuracy"], 100 * m["test"]["accuracy_stderr"]) for m in ms]
    return _combine(f"{run} accuracy %", values, "test-set", ms[0]["test"]["n"], "test")


def study_figure(params, run: str, study: str, key: str, label: str) -> Figure | None:
    """A mean with its standard error over test examples from a metrics file's `studies` (per seed)."""
    found = [m["studies"][study] for m in _metrics(params, run) if study in m.get("studies", {})]
    if not found:
        return None
    return _combine(label, [(f[key]["mean"], f[key]["stderr"]) for f in found], "test-set", found[0]["n"],
                    "test split")


def logdet_figure(params, run: str, terms: int) -> Figure | None:
    """The mean |truncation bias| of i-ResNet's log-det at `terms` series terms, over the study's examples."""
    rows = [r for m in _metrics(params, run) for r in m.get("studies", {}).get("logdet_truncation", {}).get("rows", [])
            if r["terms"] == terms]
    if not rows:
        return None
    return _combine(f"{terms} terms", [(r["abs_truncation_bias"], r["abs_truncation_bias_stderr"]) for r in rows],
                    "test-set", rows[0]["examples"], "test split")


def diffusion_claims(params) -> list[Claim]:
    """Orderings of the diffusion tables (one network): DDIM eta = 0 vs 1 and the analytic samplers at each
    step count S (KID of equal-n cells), and the NLL bounds' variances at each K (stderr over test images)."""
    out: list[Claim] = []
    for run in _runs_of(params, "ddpm"):
        ms = _metrics(params, run)
        if not ms:
            continue
        m = ms[0]
        cells = {(v["sample"]["sampler"], int(v["sample"]["steps"])): name
                 for name, v in m.get("variants", {}).items() if v["sample"].get("table") == "steps"}
        for better, worse, text, source in (
                ("ddim-eta0", "ddim-eta1", "DDIM (eta = 0) beats eta = 1", "Song, Meng & Ermon 2021, Table 1"),
                ("analytic-ddim", "ddim-eta0", "Analytic-DDIM beats DDIM", "Bao et al. 2022, Table 2"),
                ("sn-ddim", "analytic-ddim", "SN-DDIM beats Analytic-DDIM", "Bao et al. 2022b")):
            for steps in sorted({s for _, s in cells}):
                if (better, steps) in cells and (worse, steps) in cells:
                    for e in _extractors(params):
                        fb = sample_figure(params, run, e, "kid_mean", f"{better} S={steps}", cells[(better, steps)])
                        fw = sample_figure(params, run, e, "kid_mean", f"{worse} S={steps}", cells[(worse, steps)])
                        if fb and fw:
                            out.append(Claim(f"{text} in KID[{e}] at S = {steps} ({run})", source, fb, fw,
                                             needs_seeds=False, runs=(run,)))
        for name, v in m.get("variants", {}).items():  # Skip-Tuning against the same sampler untuned
            sk = v["sample"].get("rho_bottom") if v["sample"].get("table") == "skip" else None
            plain = cells.get((v["sample"].get("sampler"), int(v["sample"].get("steps") or 0)))
            if sk is None or plain is None:
                continue
            for e in _extractors(params):
                fb = sample_figure(params, run, e, "kid_mean", f"{name}", name)
                fw = sample_figure(params, run, e, "kid_mean", f"{plain}", plain)
                if fb and fw:
                    out.append(Claim(f"Skip-Tuning (rho_bottom {sk}) improves {v['sample']['sampler']} in KID[{e}] at "
                                     f"S = {v['sample']['steps']} ({run})", "Ma et al. 2024 (Skip-Tuning), Table 1",
                                     fb, fw, needs_seeds=False, runs=(run,)))
        table = m.get("nll_table") or {}
        bound: Callable[[str, int], Figure | None] = lambda kind, k: (  # noqa: E731
            Figure(f"{kind} K={k}", table[f"{kind}_K{k}"]["bits_per_dim"], table[f"{kind}_K{k}"]["stderr"],
                   "test-set", table[f"{kind}_K{k}"]["n"], 1, "test split") if f"{kind}_K{k}" in table else None)
        for k in sorted({int(name.rsplit("_K", 1)[1]) for name in table}):
            for better, worse, source in (("analytic-ddpm", "ddpm-beta", "Bao et al. 2022, Table 1"),
                                          ("analytic-ddpm", "ddpm-beta-tilde", "Bao et al. 2022, Table 1"),
                                          ("npr-ddpm", "analytic-ddpm", "Bao et al. 2022b")):
                fb, fw = bound(better, k), bound(worse, k)
                if fb and fw:
                    out.append(Claim(f"{better}'s bound is lower than {worse}'s at K = {k} ({run})", source,
                                     fb, fw, needs_seeds=False, runs=(run,)))
    return out


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------
def _side(f: Figure) -> str:
    err = f" ± {f.stderr:.3g}" if f.stderr is not None else ""
    return f"{f.label}: {f.value:.4g}{err}"


def claims_table(params, stale_runs: set[str] = frozenset(), pending_runs: set[str] = frozenset()
                 ) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown lines of the claims table and its rows (for claims.csv)."""
    rows = []
    for c in claims(params):
        v, z = verdict(c)
        rows.append({"claim": c.claim, "source": c.source, "better": _side(c.better), "worse": _side(c.worse),
                     "uncertainty": f"{c.better.noise} / {c.worse.noise}" + (
                         "" if c.difference_stderr is None else f"; difference ± {c.difference_stderr:.3g} (paired)")
                     + ("" if c.tolerance is None else f"; agreement within ± {c.tolerance:.3g}"), "n": f"{c.better.n} / {c.worse.n}",
                     "seeds": f"{c.better.seeds} / {c.worse.seeds}",
                     "standard_errors_apart": None if z is None else round(z, 2),
                     "verdict": v + (" (stale figures)" if set(c.runs) & stale_runs else "")
                     + (" (seeds pending)" if set(c.runs) & pending_runs else "")})
    if not rows:
        return [], rows
    md = ["## Claims checked", "",
          f"Each claim compares the side it says is better with the other: holds when they are more than {Z:g} "
          "standard errors apart in its favour, does not hold when more than that against it, inconclusive "
          f"otherwise. A comparison of two trained models needs >= {MIN_SEEDS} seeds a side (training noise); "
          "samplers and bounds of one network are judged on sampling noise. One seed's FID has no interval, so "
          "sample-quality claims use the KID of the same samples and its std over subsets. An agreement claim (a "
          "measured figure against a predicted one, in the 'claimed better' and 'other' columns) holds when its "
          f"interval (± {Z:g} s.e.) lies inside its stated tolerance, does not hold when it lies outside.", "",
          "| claim | source | claimed better | other | uncertainty | n | seeds | s.e. apart | verdict |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        z = "—" if r["standard_errors_apart"] is None else f"{r['standard_errors_apart']:.1f}"
        md.append(f"| {r['claim']} | {r['source']} | {r['better']} | {r['worse']} | {r['uncertainty']} | {r['n']} "
                  f"| {r['seeds']} | {z} | **{r['verdict']}** |")
    return md + [""], rows



# --------------------------------------------------------------------------------------------------
# the theory checks (genbench/theory.py): simulations against stated identities and rates
# --------------------------------------------------------------------------------------------------
THEORY_RELATIVE_TOLERANCE = 0.03   # an estimator's mean against its predicted value: within 3 %
THEORY_SLOPE_TOLERANCE = 0.15      # a fitted convergence order against 1 or 2


def theory_result(check: str) -> dict[str, Any] | None:
    """The `result` of metrics/theory-<check>.json, or None when the check has not run."""
    from genbench.layout import theory_metrics_path

    path = theory_metrics_path(check)
    return _read(str(path.resolve()), path.stat().st_mtime_ns)["result"] if path.exists() else None


def _exact(label: str, value: float, n: int | None) -> Figure:
    return Figure(label, value, 0.0, "exact", n, 1)


def theory_claims(params) -> list[Claim]:
    """Su's posts as checks: the variance estimators' bias (smallest n, where it is largest), the normal's MSE
    ordering and ML sigma; hubness against dimension (smallest vs largest d, per k); gradient descent against
    the plain and the modified gradient flow (fitted orders 1 and 2, per problem)."""
    out: list[Claim] = []
    if "variance" in params.theory and (result := theory_result("variance")):
        source = "Su, kexue.fm 'biased and unbiased estimators'; E[S^2_(n-1)] = s^2, E[S^2_n] = (n-1)/n s^2"
        for dist in dict.fromkeys(r["distribution"] for r in result["rows"]):
            row = min((r for r in result["rows"] if r["distribution"] == dist), key=lambda r: r["n"])
            n, reps = row["n"], row["replicates"]

            def measured(key: str, label: str, value: str | None = None) -> Figure:
                return Figure(label, row[value or key], row[f"{key}_stderr"], "replicates", reps, 1)

            for key, predicted, name in (("unbiased_ratio", 1.0, "1/(n-1)"),
                                         ("biased_ratio", row["expected_biased_ratio"], "1/n")):
                what = "is unbiased" if key == "unbiased_ratio" else f"is biased by (n-1)/n = {predicted:.3g}"
                out.append(Claim(f"the {name} variance estimator {what} ({dist}, n={n}; mean / true variance)", source,
                                 measured(key, f"{name} mean / variance"), _exact("predicted", predicted, reps),
                                 needs_seeds=False, tolerance=THEORY_RELATIVE_TOLERANCE * predicted))
            if dist == "normal":
                out.append(Claim(f"for the normal the 1/n estimator has the lower MSE (n={n})", source,
                                 measured("biased_mse", "1/n MSE"), measured("unbiased_mse", "1/(n-1) MSE"),
                                 needs_seeds=False, difference_stderr=row["mse_difference_stderr"]))
                expected = row["ml_sigma_expected"]
                out.append(Claim(f"the ML sigma of a normal is biased low: E = sigma sqrt(2/n) G(n/2)/G((n-1)/2) "
                                 f"= {expected:.4g} (n={n})", source, measured("ml_sigma", "mean ML sigma", "ml_sigma_mean"),
                                 _exact("closed form", expected, reps), needs_seeds=False,
                                 tolerance=THEORY_RELATIVE_TOLERANCE * expected))
    if "hubness" in params.theory and (result := theory_result("hubness")):
        source = "Radovanovic et al. 2010 (Hubs in Space), sec. 3-4; Su, kexue.fm 'hubness'"
        for k in dict.fromkeys(r["k"] for r in result["rows"]):
            rows = sorted((r for r in result["rows"] if r["k"] == k), key=lambda r: r["d"])
            low, high = rows[0], rows[-1]

            def fig(r: dict[str, Any], key: str, label: str) -> Figure:
                return Figure(label, r[f"{key}_mean"], r[f"{key}_stderr"], f"resamples ({r['resamples']})",
                              r["n"], 1)

            out.append(Claim(f"the k-occurrence's skewness grows with dimension (k={k}, d {low['d']} -> {high['d']})",
                             source, fig(high, "skewness", f"d={high['d']}"), fig(low, "skewness", f"d={low['d']}"),
                             lower_is_better=False, needs_seeds=False))
            out.append(Claim(f"hubs lie near the data mean: Spearman(N_k, distance to mean) < 0 (k={k}, d={high['d']})",
                             source, fig(high, "correlation", f"d={high['d']}"),
                             _exact("no relation", 0.0, high["n"]), needs_seeds=False))
    if "gdflow" in params.theory and (result := theory_result("gdflow")):
        source = "Barrett & Dherin 2021 (Implicit Gradient Regularization), Theorem 3.1; Su, kexue.fm 'optimizers as dynamics'"
        for fit in result["fits"]:
            for flow, order in (("plain", 1.0), ("modified", 2.0)):
                label = "the gradient flow of L" if flow == "plain" else "the flow of L + (eta/4)|grad L|^2"
                out.append(Claim(f"GD's distance to {label} falls as eta^{order:g} ({fit['problem']}; fitted log-log slope)",
                                 source, Figure("fitted slope", fit[f"{flow}_slope_mean"], fit[f"{flow}_slope_stderr"],
                                                f"instances ({fit['instances']})", fit["instances"], 1),
                                 _exact("order", order, fit["instances"]), needs_seeds=False,
                                 tolerance=THEORY_SLOPE_TOLERANCE))
    return out
