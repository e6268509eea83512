"""The faster feature path: genbench's Inception forward vs torch-fidelity's, the per-process extractor
cache (same bits as a fresh extractor), and evaluate's sharing across the sample sets of a run (same
numbers as scoring each set alone). No timings."""
from collections import Counter

import numpy as np
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.utils import create_feature_extractor

from genbench import evaluate, refstats
from genbench.bench_features import feature_benchmark, format_feature_benchmark
from genbench.config import load as load_params
from genbench.data import load_split
from genbench.layout import classifier_path, prepared_dir
from genbench.metrics import classifier as clf
from genbench.metrics import fid
from genbench.tracking import Tracker

FEATURES = ["64", "192", "768", "2048"]


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    return fid.convert_inception_weights(tmp_path_factory.mktemp("weights") / "inception-v3-tf2015.pt")


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32), (1, 3, 299, 299), (2, 3, 512, 300), (1, 2, 5, 9)])
def test_separable_resize_is_torch_fidelitys_bit_for_bit(shape):
    x = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(sum(shape))).float()
    for size in (299, 7):
        theirs = interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)
        assert torch.equal(fid.resize_bilinear_like_tf1(x, size), theirs)


def test_inception_forward_matches_torch_fidelitys(inception_weights):
    """Same layers, same resize bits: the same features, bit for bit (so no committed figure moves)."""
    ours = fid.FeatureExtractorInceptionV3TF2015("ours", FEATURES, feature_extractor_weights_path=inception_weights)
    theirs = FeatureExtractorInceptionV3("theirs", FEATURES, feature_extractor_weights_path=str(inception_weights))
    pool3_only = fid.FeatureExtractorInceptionV3TF2015("ours", ["2048"], feature_extractor_weights_path=inception_weights)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for shape in [(2, 1, 28, 28), (1, 3, 32, 32), (1, 3, 299, 299)]:
            x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
            expected = theirs(x.expand(-1, 3, -1, -1))
            got = ours(x)
            for name, a, b in zip(FEATURES, got, expected):
                assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape, (shape, name)
                assert torch.equal(a, b), (shape, name, float((a - b).abs().max()))
                assert b.abs().max() > 0.1  # not trivially small
            assert torch.equal(pool3_only(x)[0], got[-1])  # stops at pool3: the same bits


def test_cached_extractor_gives_the_features_of_a_fresh_one(inception_weights, tmp_path):
    fid._EXTRACTORS.clear()
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    first = fid.extract_features(images, fid.INCEPTION_EXTRACTOR, inception_weights, batch_size=3, progress=False)
    model = fid.feature_extractor(fid.INCEPTION_EXTRACTOR, inception_weights)
    assert fid.feature_extractor(fid.INCEPTION_EXTRACTOR, str(inception_weights)) is model  # built once
    again = fid.extract_features(images, fid.INCEPTION_EXTRACTOR, inception_weights, batch_size=2, progress=False)
    fresh = create_feature_extractor(fid.INCEPTION_EXTRACTOR, ["2048"], cuda=False, verbose=False,
                                     feature_extractor_weights_path=str(inception_weights))
    with torch.no_grad():
        (expected,) = fresh(images)
    assert np.array_equal(first, expected.double().numpy())
    assert np.array_equal(again, first)  # cached, and independent of the batch size
    # another weights file, or the same file rewritten, is another extractor
    copy = tmp_path / "inception.pt"
    copy.write_bytes(inception_weights.read_bytes())
    assert np.array_equal(fid.extract_features(images, fid.INCEPTION_EXTRACTOR, copy, progress=False), first)
    assert fid.feature_extractor(fid.INCEPTION_EXTRACTOR, copy) is not model
    state = torch.load(copy)
    state["Conv2d_1a_3x3.conv.weight"] *= 2
    torch.save(state, copy)
    changed = fid.extract_features(images, fid.INCEPTION_EXTRACTOR, copy, progress=False)
    assert not np.array_equal(changed, first)
    assert len(fid._EXTRACTORS) <= fid._EXTRACTORS_KEPT


def test_score_samples_shares_work_across_sets_with_identical_numbers(workdir, monkeypatch):
    """A run's samples and a variant: scored one at a time with nothing shared (the old way) and with
    the reference and extractor shared (evaluate_job's way) give equal dicts."""
    params = load_params(workdir / "params.yaml")
    train_x, train_y = load_split(prepared_dir(params.data.root, "mnist"), "train")
    model, _ = clf.train_classifier(train_x, train_y, train_x[:50], train_y[:50], steps=3, batch_size=32,
                                    lr=1e-3, seed=0, progress=False)
    clf.save_classifier(classifier_path("mnist"), model, {"dataset": "mnist"})
    refstats.compute_refstats(params, "mnist", Tracker())
    gen = torch.Generator().manual_seed(3)
    sets = {"samples.npz": torch.randint(0, 256, (120, 1, 28, 28), dtype=torch.uint8, generator=gen),
            "samples-hubness.npz": train_x[:100]}
    protocol = {"sampler": "test", "ema": False, "training_seed": 0, "sampling_seed": 0}
    extractors = evaluate.scoring_extractors(params, "vae_mnist", 0)
    assert extractors == ["classifier"]

    separately = {}
    for name, x in sets.items():
        fid._EXTRACTORS.clear()
        separately[name] = evaluate.score_samples(params, "vae_mnist", "mnist", x, "cpu", protocol, extractors)

    calls = Counter()
    build, read = fid.create_feature_extractor, fid.load_reference

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(fid, "create_feature_extractor", counted("built", build))
    monkeypatch.setattr(fid, "load_reference", counted("read", read))
    fid._EXTRACTORS.clear()
    references = {}  # as evaluate_job: one dict for all the sets of the run
    shared = {name: evaluate.score_samples(params, "vae_mnist", "mnist", x, "cpu", protocol, extractors, references)
              for name, x in sets.items()}
    assert calls == {"built": 1, "read": 1}
    assert shared == separately
    assert shared["samples.npz"]["classifier"]["n_gen"] == 100  # tiny.yaml's n_gen caps the 120
    assert shared["samples.npz"] != shared["samples-hubness.npz"]


def test_feature_benchmark_runs_and_compares_like_with_like(inception_weights):
    result = feature_benchmark(n_images=3, repeats=1, batch_sizes=[2, 3], weights_path=inception_weights)
    assert [row["batch_size"] for row in result["rows"]] == [2, 3] and result["best_batch_size"] in (2, 3)
    assert all(row["genbench"]["median"] > 0 and row["torch_fidelity"]["median"] > 0 for row in result["rows"])
    assert result["max_abs_feature_diff"] < 1e-4  # the same images and weights on both sides
    table = format_feature_benchmark(result)
    assert "torch-fidelity" in table and len(table.splitlines()) == 3 + 2 + 2


def test_scoring_extractors_follow_each_extractors_runs_and_the_repeat_and_variant_lists():
    """Which extractors score a sample set: those whose `runs` (when set) name the run; for a repeat seed only
    `eval.repeat_extractors`; for a variant set only `eval.variant_extractors`."""
    from types import SimpleNamespace

    from genbench.config import ExtractorOptions

    def params(repeat=None, variant=None):
        extractors = {"classifier": ExtractorOptions(), "inception-v3-tf2015": ExtractorOptions(runs=["vae_mnist"])}
        return SimpleNamespace(seeds=[0], eval=SimpleNamespace(extractors=extractors, repeat_extractors=repeat,
                                                               variant_extractors=variant))

    assert evaluate.scoring_extractors(params(), "vae_mnist", 0) == ["classifier", "inception-v3-tf2015"]
    assert evaluate.scoring_extractors(params(), "sgan_mnist", 0) == ["classifier"]
    assert evaluate.scoring_extractors(params(repeat=["classifier"]), "vae_mnist", 1) == ["classifier"]
    assert evaluate.scoring_extractors(params(repeat=["classifier"]), "vae_mnist", 0) == \
        ["classifier", "inception-v3-tf2015"]
    assert evaluate.scoring_extractors(params(variant=["classifier"]), "vae_mnist", 0, variant=True) == ["classifier"]
    only_inception = SimpleNamespace(seeds=[0], eval=SimpleNamespace(
        extractors={"inception-v3-tf2015": ExtractorOptions(runs=["vae_mnist"])}, repeat_extractors=None,
        variant_extractors=None))
    assert evaluate.scoring_extractors(only_inception, "sgan_mnist", 0) == []
