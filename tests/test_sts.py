"""Sentence embeddings on STS-B (genbench.data.sts, genbench.models.sentence, genbench.sts): the archive's
source and checksum, whitening's defining properties, BERT-flow's log-determinant, the correlations against
scipy, the encoder's poolings and its errors, and a tiny train + score through the command line."""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from genbench import GenbenchError
from genbench.data import load_split, prepare, sts
from genbench.data.base import LoadRequest
from genbench.models import build_model
from genbench.models.sentence import (PACKAGED_ENCODER, encode, fit_whitening, informative_dims, load_encoder,
                                      pool, whiten)
from genbench.sts import (bootstrap_spearman, correlation_figures, flow_split, pearson, resamples, spearman)
from tests.test_data import http_mirror, isolated_env  # noqa: F401  (fixtures: no network, private cache)

REPO = Path(__file__).resolve().parents[1]
# the canonical archive: in $GENBENCH_DATA_DIR (scripts/env.sh sets it) or the workplace's ../shared/data; read at
# import, before the data fixtures clear the variable
SHARED_ARCHIVE = Path(os.environ.get("GENBENCH_DATA_DIR") or REPO.parent / "shared" / "data") / "stsbenchmark" / \
    "Stsbenchmark.tar.gz"


def fake_archive(path: Path, sizes=sts.OFFICIAL_SIZES) -> bytes:
    """An archive laid out like Stsbenchmark.tar.gz with generated pairs (some lines with extra fields)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for split, member in sts.MEMBERS.items():
            lines = []
            for i in range(sizes[split]):
                extra = "\tsrc-a\tsrc-b" if i % 7 == 0 else ""
                lines.append(f"main-news\tfile\t2016\t{i:04d}\t{rng.uniform(0, 5):.3f}\t{split} sentence {i} é.\t"
                             f"the other {split} sentence {i % 13}.{extra}")
            data = ("\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(member)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


# ------------------------------------------------------------------------------ data

def test_archive_checksum_refuses_a_corrupted_copy_by_name(tmp_path):
    fake_archive(tmp_path / "Stsbenchmark.tar.gz")  # not the canonical bytes
    with pytest.raises(GenbenchError, match=r"Stsbenchmark\.tar\.gz.*sha256"):
        sts.load(LoadRequest(local_dir=tmp_path, allow_download=False))


def test_missing_archive_says_where_it_looked(tmp_path):
    with pytest.raises(GenbenchError, match=r"stsbenchmark: raw files \[Stsbenchmark\.tar\.gz\] not found"):
        sts.load(LoadRequest(allow_download=False))


def test_download_path_prepares_the_splits(tmp_path, monkeypatch, http_mirror):  # noqa: F811
    served, url = http_mirror
    (served / "stsbenchmark").mkdir()
    content = fake_archive(served / "stsbenchmark" / "Stsbenchmark.tar.gz")
    import hashlib

    monkeypatch.setattr(sts, "SOURCE", sts.SOURCE.with_pins({"Stsbenchmark.tar.gz": hashlib.sha256(content).hexdigest()}))
    monkeypatch.setenv("GENBENCH_MIRROR_URL", url)
    manifest = prepare("stsbenchmark", tmp_path / "out", val_size=0, test_limit=50)
    assert manifest["located"]["source"] == "download"
    assert manifest["sizes"] == {"train": 5749, "val": 50, "test": 50}
    x, y = load_split(tmp_path / "out", "val")
    pairs = sts.decode_pairs(x.numpy())
    assert pairs[3] == ("dev sentence 3 é.", "the other dev sentence 3.") and y.dtype == torch.float32
    x, _ = load_split(tmp_path / "out", "test")
    assert sts.decode_pairs(x.numpy())[0][0] == "test sentence 0 é."  # the test file, not the dev file
    with pytest.raises(GenbenchError, match="val_size must be 0"):
        prepare("stsbenchmark", tmp_path / "other", val_size=10)


@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason="the canonical archive is in ../shared/data/stsbenchmark")
def test_canonical_archive_has_the_benchmark_sizes():
    splits = sts.read_archive(SHARED_ARCHIVE)
    assert {k: len(v[0]) for k, v in splits.items()} == {"train": 5749, "dev": 1500, "test": 1379}
    assert splits["train"][0][0] == ("A plane is taking off.", "An air plane is taking off.")
    assert all(0 <= g <= 5 for _, gold in splits.values() for g in gold)
    encoded = sts.encode_pairs(splits["test"][0])
    assert sts.decode_pairs(encoded) == splits["test"][0]


# ------------------------------------------------------------------------------ whitening (Su et al. 2021)

def anisotropic(n=2000, d=16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g) * torch.logspace(-2, 1, d)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mixing.double() + 3.0).float()


def test_whitening_gives_zero_mean_and_identity_covariance():
    x = anisotropic()
    for k in (None, 8):
        mu, w = fit_whitening(x, k)
        z = whiten(x, mu, w)
        dim = k or x.shape[1]
        assert z.shape == (len(x), dim)
        assert torch.allclose(z.mean(0), torch.zeros(dim, dtype=torch.float64), atol=1e-5)
        cov = (z - z.mean(0)).T @ (z - z.mean(0)) / len(z)
        assert torch.allclose(cov, torch.eye(dim, dtype=torch.float64), atol=1e-5)


def test_whitening_is_invariant_to_an_invertible_affine_map_up_to_rotation():
    x = anisotropic(d=8).double()  # in float64: the map's own rounding would show in float32
    g = torch.Generator().manual_seed(1)
    a = torch.randn(8, 8, generator=g, dtype=torch.float64) + 3 * torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    y = x @ a + b
    zx, zy = whiten(x, *fit_whitening(x)), whiten(y, *fit_whitening(y))
    cos = lambda z: torch.nn.functional.cosine_similarity(z[:500], z[500:1000], dim=1)  # noqa: E731
    assert torch.allclose(cos(zx), cos(zy), atol=1e-6)
    rotation = torch.linalg.lstsq(zx, zy).solution  # zy = zx R with R orthogonal
    assert torch.allclose(rotation.T @ rotation, torch.eye(8, dtype=torch.float64), atol=1e-6)


def test_a_constant_coordinate_is_not_amplified():
    """all-MiniLM-L6-v2's [CLS] vectors have constant coordinates: whitening gives them no weight (instead of
    1/sqrt(rounding noise)) and the flow leaves them out."""
    x = anisotropic(d=8)
    x[:, 3] = 0.25
    mu, w = fit_whitening(x)
    z = whiten(x, mu, w)
    assert torch.isfinite(z).all() and z.abs().max() < 10 and int((w.abs().sum(0) == 0).sum()) == 1
    cov = z.T @ z / len(z)
    assert torch.allclose(cov[:7, :7], torch.eye(7, dtype=torch.float64), atol=1e-5)
    assert informative_dims(x).tolist() == [True, True, True, False, True, True, True, True]


# ------------------------------------------------------------------------------ BERT-flow (Li et al. 2020)

def test_bertflow_logdet_matches_the_brute_force_jacobian():
    torch.manual_seed(0)
    model = build_model("bertflow", {"steps_per_level": 3, "hidden_channels": 16}, (6,)).double()
    x = torch.randn(64, 6, dtype=torch.float64) * 2 + 1
    model.train()
    model.network.log_prob(model.model_input(x, None))  # ActNorm's data-dependent initialisation
    model.eval()
    for p in model.parameters():  # move off the identity start (zero-initialised coupling outputs)
        p.data.add_(0.1 * torch.randn_like(p))
    ctx = model.context(None)
    _, log_pz, logdet = model.network.forward_latents(model.model_input(x[:5], None), ctx)
    for i in range(5):
        def f(v):
            zs, _, _ = model.network.forward_latents(model.model_input(v[None], None), ctx)
            return torch.cat([z.flatten() for z in zs])
        jac = torch.autograd.functional.jacobian(f, x[i])
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac)[1], atol=1e-8)
    latents = model.latents(x[:5].float())
    expected = -0.5 * (latents ** 2).sum(1) - 3 * math.log(2 * math.pi)
    assert torch.allclose(log_pz.float(), expected.float(), atol=1e-4)  # a standard Gaussian prior on z


def test_bertflow_refuses_unknown_settings():
    with pytest.raises(GenbenchError, match="poolings"):
        build_model("bertflow", {"poolings": ["mean"]}, (6,))
    with pytest.raises(GenbenchError, match="fit must be"):
        build_model("bertflow", {"fit": "dev"}, (6,))
    with pytest.raises(GenbenchError, match="invconv: BERT-flow's invertible linear map is the LU form only"):
        build_model("bertflow", {"invconv": "exp"}, (6,))


def test_flow_split_holds_out_fitted_sentences_by_seed():
    fitted = np.arange(100, 600)
    train, val = flow_split(fitted, 50, seed=3)
    assert len(val) == 50 and not set(train) & set(val) and set(train) | set(val) == set(fitted)
    assert np.array_equal(flow_split(fitted, 50, seed=3)[1], val)
    assert not np.array_equal(flow_split(fitted, 50, seed=4)[1], val)


# ------------------------------------------------------------------------------ correlations

def test_spearman_and_pearson_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    gold = np.round(rng.uniform(0, 5, 300), 1)  # many ties, as in STS-B's gold scores
    pred = gold + rng.normal(0, 1.5, 300)
    pred[:40] = 0.25
    assert spearman(pred, gold) == pytest.approx(stats.spearmanr(pred, gold).statistic, abs=1e-12)
    assert pearson(pred, gold) == pytest.approx(stats.pearsonr(pred, gold).statistic, abs=1e-12)
    draws = resamples(300, 200, seed=1)
    boot = bootstrap_spearman(pred, gold, draws)
    assert boot[7] == pytest.approx(stats.spearmanr(pred[draws[7]], gold[draws[7]]).statistic, abs=1e-12)
    figures, _ = correlation_figures(pred, gold, draws)
    lo, hi = figures["spearman_ci95"]
    assert lo < figures["spearman"] < hi and figures["n"] == 300


# ------------------------------------------------------------------------------ the encoder

def test_encoder_folder_missing_names_the_setting(tmp_path):
    with pytest.raises(GenbenchError, match=r"runs\.x\.model_config\.encoder: encoder folder .*missing-bert"):
        load_encoder(str(tmp_path / "missing-bert"), "runs.x.model_config.encoder")


def test_poolings_mask_padding_and_name_their_layers():
    tokenizer, model = load_encoder(PACKAGED_ENCODER, "test")
    sentences = ["A man.", "A man is playing a large flute on a stage in front of many people."]
    together = encode(sentences, tokenizer, model, ["last-avg", "first-last-avg", "embed-last-avg", "cls"],
                      batch_size=2)
    alone = encode(sentences[:1], tokenizer, model, ["last-avg", "first-last-avg", "embed-last-avg", "cls"],
                   batch_size=1)
    for p in together:  # the short sentence, padded in the pair, gets the vector it gets alone
        assert torch.allclose(together[p][0], alone[p][0], atol=1e-5)
    states = [torch.randn(1, 3, 4) for _ in range(3)]
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(pool(states, mask, "first-last-avg"), ((states[1] + states[2]) / 2)[:, :2].mean(1))
    assert torch.allclose(pool(states, mask, "embed-last-avg"), ((states[0] + states[2]) / 2)[:, :2].mean(1))
    assert torch.allclose(pool(states, mask, "cls"), states[2][:, 0])


# ------------------------------------------------------------------------------ the stages

def test_train_and_score_a_tiny_job(tmp_path, monkeypatch):
    if not SHARED_ARCHIVE.is_file():
        pytest.skip("the canonical archive is in ../shared/data/stsbenchmark")
    import yaml

    params = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())  # its harness, eval, report
    params["repeat"] = {"runs": [], "seeds": []}
    params["data"]["datasets"]["stsbenchmark"] = {"val_size": 0, "train_limit": 40, "test_limit": 30,
                                                  "local_dir": str(SHARED_ARCHIVE.parent)}
    params["runs"] = {"sts_tiny": {
        "model": "bertflow", "dataset": "stsbenchmark",
        "train": {"steps": 12, "batch_size": 16, "checkpoint_every": 4, "log_every": 4, "val_every": 4, "val_n": 20},
        "model_config": {"poolings": ["last-avg", "cls"], "val_sentences": 20, "bootstrap": 50, "steps_per_level": 2,
                         "hidden_channels": 16, "whitening_dims": [64, 1000]}}}
    params["profiles"] = {"tiny": {}}
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    monkeypatch.chdir(tmp_path)
    cli = [sys.executable, "-m", "genbench.cli"]
    env = {"PYTHONPATH": str(REPO), "GENBENCH_TRACKING": "off", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    for args in (["prepare", "--dataset", "stsbenchmark"], ["train", "--run", "sts_tiny", "--seed", "0"],
                 ["score", "--run", "sts_tiny", "--seed", "0"]):
        done = subprocess.run(cli + args, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    m = json.loads((tmp_path / "metrics" / "sts_tiny-s0.json").read_text())
    assert m["status"] == "completed" and m["dim"] == 384
    methods = {(r["pooling"], r["method"], r["fit"], r["k"]) for r in m["rows"]}
    assert methods == {(p, *rest) for p in ("last-avg", "cls") for rest in
                       [("raw", None, 384), ("whitening", "all", 384), ("whitening", "all", 64),
                        ("whitening", "train", 384), ("whitening", "train", 64), ("flow", "all", 384)]}
    for r in m["rows"]:
        assert r["test"]["n"] == 30 and r["dev"]["n"] == 30 and -1 <= r["test"]["spearman"] <= 1
    assert {c["claim"] for c in m["comparisons"]} == {"whitening >= flow", "whitening-64 >= whitening"}
    assert m["fitted_sentences"]["all"] > m["fitted_sentences"]["train"]
    # the score stage again gives the same figures (encoding, whitening and bootstrap are deterministic)
    first = m["rows"]
    subprocess.run(cli + ["score", "--run", "sts_tiny", "--seed", "0"], env=env, check=True, capture_output=True)
    assert json.loads((tmp_path / "metrics" / "sts_tiny-s0.json").read_text())["rows"] == first
    # the report: its section, table and figure, and the claims (one seed: the flow claim waits for seeds)
    subprocess.run(cli + ["report"], env=env, check=True, capture_output=True)
    board = (tmp_path / "reports" / "leaderboard.md").read_text()
    assert "## Sentence embeddings on STS-B" in board and (tmp_path / "reports" / "figures" / "sts.png").is_file()
    assert "| cls | whitening-64 (train only) |" in board
    assert "whitening >= flow in STS-B test Spearman x 100 (cls" in board and "needs >= 3" in board
    assert (tmp_path / "reports" / "sts.csv").read_text().count("last-avg") == 6
