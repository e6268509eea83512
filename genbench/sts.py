"""The sentence-embedding runs' stages (genbench.models.sentence) on STS-B.

train (`train_flows`): encode every distinct sentence once with the frozen encoder; for each pooling, fit
BERT-flow's Glow to the vectors of the fitted sentences (model_config.fit: "all" = train + dev + test, the
papers' setting; "train" = leak-free) through the one trainer, in runs/<job>/<pooling>/ (resume, divergence,
checkpoint kept on the validation NLL of `val_sentences` fitted sentences held out by the seed).

score (`score_job`): per pooling, each pair's cosine similarity of
  raw        the encoder's vectors;
  whitening  whitened vectors (Su et al. 2021), fitted on all sentences and on the train sentences only,
             at the full dimension and each k of model_config.whitening_dims;
  flow       the flow's Gaussian-space latents (Li et al. 2020);
against the gold scores: Spearman's rank correlation (the papers' figure) and Pearson's, on dev and test,
each with a 95 % percentile bootstrap interval over pairs and its bootstrap standard error; paired
bootstrap intervals (the same resampled pairs) for the differences the claims compare. -> metrics/<job>.json
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.config import Params, strict
from genbench.data import load_split
from genbench.data.sts import decode_pairs
from genbench.evaluate import code_version, library_versions
from genbench.io import write_json
from genbench.layout import job_name, metrics_path, prepared_dir, run_dir
from genbench.models import MODELS
from genbench.models.sentence import BertFlowConfig, encode, fit_whitening, informative_dims, load_encoder, whiten
from genbench.score import TrialTracker
from genbench.tracking import Tracker
from genbench.train import Job, load_trained, read_outcome, select_device, train

SPLITS = {"train": "train", "dev": "val", "test": "test"}  # STS-B's files -> the prepared splits


# --------------------------------------------------------------------------------------------------
# Sentences and their vectors
# --------------------------------------------------------------------------------------------------
class Corpus:
    """The distinct sentences of every split, and each split's pairs as indices into them."""

    def __init__(self, data_dir: Path):
        self.sentences: list[str] = []
        position: dict[str, int] = {}
        self.pairs: dict[str, np.ndarray] = {}
        self.gold: dict[str, np.ndarray] = {}
        for name, split in SPLITS.items():
            x, y = load_split(data_dir, split)
            index = []
            for pair in decode_pairs(x.numpy()):
                index.append([position.setdefault(s, len(position)) for s in pair])
            self.sentences += list(position)[len(self.sentences):]
            self.pairs[name] = np.asarray(index, dtype=np.int64).reshape(-1, 2)
            self.gold[name] = y.numpy().astype(np.float64)

    def fitted(self, fit: str) -> np.ndarray:
        """Sentence indices fitted by whitening / the flow: every sentence, or the train split's only."""
        return np.arange(len(self.sentences)) if fit == "all" else np.unique(self.pairs["train"])


def encode_corpus(corpus: Corpus, config, setting: str, progress: bool) -> tuple[dict[str, torch.Tensor], dict]:
    tokenizer, model = load_encoder(config.encoder, setting)
    t0 = time.perf_counter()
    vectors = encode(corpus.sentences, tokenizer, model, config.poolings, batch_size=config.encode_batch_size,
                     max_length=config.max_length, progress=progress)
    seconds = time.perf_counter() - t0
    return vectors, {"sentences": len(corpus.sentences), "encode_s": seconds,
                     "sentences_per_s": len(corpus.sentences) / max(seconds, 1e-9),
                     "encoder_parameters": sum(p.numel() for p in model.parameters()),
                     "dim": model.config.hidden_size, "layers": model.config.num_hidden_layers}


def flow_split(fitted: np.ndarray, val_sentences: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) sentence indices: a seeded permutation of the fitted ones, the first held out."""
    order = np.random.default_rng(seed).permutation(fitted)
    n_val = min(val_sentences, len(order) // 5)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def sentence_config(spec, run: str) -> BertFlowConfig:
    return strict(MODELS[spec.model].config_cls, spec.model_config, f"runs.{run}.model_config")


def flow_dims(corpus: Corpus, config, vectors: torch.Tensor) -> torch.Tensor:
    """The coordinates the flow models: those that vary over the fitted sentences (the same in both stages)."""
    return informative_dims(vectors[corpus.fitted(config.fit)])


def pooling_dir(run_folder: Path, pooling: str) -> Path:
    return Path(run_folder) / pooling


def train_flows(job: Job, run_folder: Path, tracker: Tracker) -> dict[str, Any]:
    """One BERT-flow per pooling; the summary (runs/<job>/outcome.json, written last) says how each ended."""
    config = sentence_config(job.spec, job.run)
    corpus = Corpus(Path(job.data_dir))
    vectors, encoding = encode_corpus(corpus, config, f"runs.{job.run}.model_config.encoder", job.harness.progress)
    train_ids, val_ids = flow_split(corpus.fitted(config.fit), config.val_sentences, job.seed)
    outcomes = {}
    for pooling in config.poolings:
        kept = flow_dims(corpus, config, vectors[pooling])
        print(f"[{job.name}] BERT-flow on {pooling} vectors: {len(train_ids)} sentences, {len(val_ids)} held out, "
              f"{int(kept.sum())} of {len(kept)} coordinates (the others are constant)")
        one = TrialTracker(tracker, f"{pooling}/")
        outcomes[pooling] = train(job, pooling_dir(run_folder, pooling), tracker=one,
                                  data=(vectors[pooling][train_ids][:, kept], vectors[pooling][val_ids][:, kept]))
        one.log_history(pooling_dir(run_folder, pooling) / "stats.jsonl")
    diverged = [p for p, o in outcomes.items() if o["status"] == "diverged"]
    summary = {"status": "diverged" if diverged else "completed", "flows": {p: o["status"] for p, o in outcomes.items()},
               "encoding": encoding, "fitted_sentences": len(train_ids) + len(val_ids),
               "message": f"BERT-flow diverged for {', '.join(diverged)}: lower runs.{job.run}.train.lr"
                          if diverged else None}
    write_json(Path(run_folder) / "outcome.json", summary)
    return summary


# --------------------------------------------------------------------------------------------------
# Correlations and their bootstrap intervals
# --------------------------------------------------------------------------------------------------
def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)  # ties share their mean rank, as in Spearman's definition


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (average ranks for ties)."""
    return float(_pearson_rows(_ranks(np.asarray(pred, float)), _ranks(np.asarray(gold, float))))


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(_pearson_rows(np.asarray(pred, float), np.asarray(gold, float)))


def resamples(n: int, count: int, seed: int) -> np.ndarray:
    """count x n indices of pairs drawn with replacement (the same draws for every method of a split)."""
    return np.random.default_rng(seed).integers(0, n, size=(count, n))


def bootstrap_spearman(pred: np.ndarray, gold: np.ndarray, draws: np.ndarray) -> np.ndarray:
    return _pearson_rows(_ranks(pred[draws]), _ranks(gold[draws]))


def correlation_figures(pred: np.ndarray, gold: np.ndarray, draws: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    boot = bootstrap_spearman(pred, gold, draws)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"n": len(gold), "spearman": spearman(pred, gold), "spearman_ci95": [float(lo), float(hi)],
            "spearman_stderr": float(boot.std(ddof=1)), "pearson": pearson(pred, gold)}, boot


def cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1, eps=1e-12).numpy()


# --------------------------------------------------------------------------------------------------
# The score stage
# --------------------------------------------------------------------------------------------------
def method_vectors(corpus: Corpus, config, vectors: torch.Tensor, flow) -> dict[tuple[str, str | None, int], Any]:
    """(method, fit, k) -> (all sentences' vectors in that method's space, fitting seconds)."""
    dim = vectors.shape[1]
    out: dict[tuple[str, str | None, int], Any] = {("raw", None, dim): (vectors.double(), 0.0)}
    for fit in ("all", "train"):
        t0 = time.perf_counter()
        mu, w = fit_whitening(vectors[corpus.fitted(fit)])  # one fit: each k keeps W's first k columns
        seconds = time.perf_counter() - t0
        for k in [dim] + [k for k in config.whitening_dims if k < dim]:
            out[("whitening", fit, k)] = (whiten(vectors, mu, w[:, :k]), seconds)
    t0 = time.perf_counter()
    out[("flow", config.fit, dim)] = (flow.latents(vectors[:, flow_dims(corpus, config, vectors)]),
                                      time.perf_counter() - t0)
    return out


def score_job(params: Params, run: str, seed: int, tracker: Tracker) -> dict[str, Any]:
    spec = params.run(run)
    folder = run_dir(run, seed)
    t0 = time.perf_counter()
    summary = read_outcome(folder)
    config = sentence_config(spec, run)
    record: dict[str, Any] = {"job": job_name(run, seed), "run": run, "seed": seed, "model": spec.model,
                              "dataset": spec.dataset, "profile": params.profile, "kind": "sts",
                              "encoder": config.encoder, "fit": config.fit, "code_version": code_version(),
                              "versions": library_versions()}
    if summary["status"] != "completed":
        record.update(status="diverged", message=summary.get("message"))
        write_json(metrics_path(run, seed), record)
        return record
    corpus = Corpus(prepared_dir(params.data.root, spec.dataset))
    vectors, encoding = encode_corpus(corpus, config, f"runs.{run}.model_config.encoder", params.harness.progress)
    device = select_device(params.harness)
    draws = {split: resamples(len(corpus.gold[split]), config.bootstrap, params.eval.seed + i)
             for i, split in enumerate(("dev", "test"))}
    rows, comparisons, fit_seconds = [], [], {}
    for pooling in config.poolings:
        flow, _ = load_trained(pooling_dir(folder, pooling), device)
        boots = {}
        for (method, fit, k), (space, seconds) in method_vectors(corpus, config, vectors[pooling], flow).items():
            row = {"pooling": pooling, "method": method, "fit": fit, "k": k}
            fit_seconds.setdefault(method, []).append(seconds)
            for split in ("dev", "test"):
                pairs = corpus.pairs[split]
                figures, boot = correlation_figures(cosine(space[pairs[:, 0]], space[pairs[:, 1]]),
                                                    corpus.gold[split], draws[split])
                row[split] = figures
                boots[(method, fit, k, split)] = boot
            rows.append(row)
        dim = vectors[pooling].shape[1]
        for better, worse, claim in ((("whitening", config.fit, dim), ("flow", config.fit, dim), "whitening >= flow"),
                                     *[(("whitening", "all", k), ("whitening", "all", dim), f"whitening-{k} >= whitening")
                                       for k in config.whitening_dims if k < dim]):
            diff = boots[(*better, "test")] - boots[(*worse, "test")]
            lo, hi = np.percentile(diff, [2.5, 97.5])
            comparisons.append({"pooling": pooling, "claim": claim, "split": "test", "better": list(better),
                                "worse": list(worse), "difference_ci95": [float(lo), float(hi)],
                                "difference_stderr": float(diff.std(ddof=1))})
    flows = {p: read_outcome(pooling_dir(folder, p)) for p in config.poolings}
    constant = {p: int((~flow_dims(corpus, config, vectors[p])).sum()) for p in config.poolings}
    record.update(status="completed", dim=encoding["dim"], rows=rows, comparisons=comparisons, encoding=encoding,
                  constant_coordinates=constant,
                  flows={p: {k: o.get(k) for k in ("steps", "selected_step", "selected_val_loss", "stopped_early",
                                                  "train_time_s", "parameters")} for p, o in flows.items()},
                  fitting_s={m: float(np.mean(s)) for m, s in fit_seconds.items()},
                  fitted_sentences={fit: int(len(corpus.fitted(fit))) for fit in ("all", "train")},
                  bootstrap=config.bootstrap, score_time_s=time.perf_counter() - t0)
    write_json(metrics_path(run, seed), record)
    tracker.log_metrics({f"{r['pooling']}/{r['method']}{'' if r['fit'] is None else '-' + r['fit']}-{r['k']}/"
                         f"{split}_spearman": r[split]["spearman"] for r in rows for split in ("dev", "test")})
    return record

