"""A small domain classifier whose penultimate layer gives FID/KID/PRC features for small images.

The usual practice for 28 x 28 data (MNIST, Fashion-MNIST), where Inception features say little and
cost much on CPU. Trained per dataset by a pipeline stage of its own; the weights file holds the
architecture config, the state_dict and free-form meta (dataset, split, accuracy, ...).

Input convention (training, features, torch-fidelity): uint8 N x C x H x W in {0..255}, with C, H, W
as trained (H, W >= 8); scaled inside to x / 127.5 - 1. The torch-fidelity extractor also accepts
3 channels for a 1-channel classifier (channel mean; exact for grey images stored as RGB).

Architecture: [conv3x3-ReLU] x 2, maxpool 2, [conv3x3-ReLU] x 2, adaptive avg pool to 4 x 4,
linear -> ReLU (the `features`, 128-d by default), linear -> class logits.
"""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from tqdm import tqdm

from genbench import GenbenchError
from genbench.io import atomic_path

CLASSIFIER_EXTRACTOR = "classifier"
CLASSIFIER_FORMAT = "genbench-classifier-v1"
CLASSIFIER_STAGE = "the classifier stage (genbench classifier / dvc repro)"


@dataclass(frozen=True)
class ClassifierConfig:
    in_channels: int
    height: int
    width: int
    num_classes: int
    channels: tuple[int, int] = (32, 64)
    feature_dim: int = 128
    pooled_size: int = 4


class DomainClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        self.body = nn.Sequential(
            nn.Conv2d(config.in_channels, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(config.pooled_size),
            nn.Flatten(),
            nn.Linear(c2 * config.pooled_size**2, config.feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """uint8 {0..255} -> float in [-1, 1]."""
        return x.float() / 127.5 - 1.0

    def features_and_logits(self, x_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(self.preprocess(x_uint8))
        return features, self.head(features)

    def forward(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """Class logits of uint8 images."""
        return self.features_and_logits(x_uint8)[1]


def _check_images(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4):
        raise GenbenchError(f"{what} images must be a uint8 tensor N x C x H x W, got {getattr(x, 'dtype', x)}.")
    if x.shape[2] < 8 or x.shape[3] < 8:
        raise GenbenchError(f"{what} images are {tuple(x.shape[2:])}: the classifier needs H, W >= 8.")
    if y.dim() != 1 or len(y) != len(x) or y.dtype.is_floating_point or (len(y) and y.min() < 0):
        raise GenbenchError(f"{what} labels must be N non-negative integers matching the {len(x)} images.")


@torch.no_grad()
def accuracy(model: DomainClassifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = sum(
        (model(xb.to(device)).argmax(1).cpu() == yb).sum().item()
        for xb, yb in zip(x.split(batch_size), y.split(batch_size))
    )
    return correct / len(x)


def train_classifier(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Adam on cross-entropy; batches drawn with replacement from a generator seeded with `seed`.

    Deterministic on CPU for a given seed and thread count (initialisation under a forked, seeded
    global RNG; batches from a private generator). Returns the model (eval mode, on CPU) and
    {val_accuracy, train_loss_last, steps, batch_size, lr, seed, num_train, num_val, wall_time_s}.
    """
    _check_images(train_x, train_y, "training")
    _check_images(val_x, val_y, "validation")
    if train_x.shape[1:] != val_x.shape[1:]:
        raise GenbenchError(
            f"Training images {tuple(train_x.shape[1:])} and validation images {tuple(val_x.shape[1:])} differ."
        )
    _, c, h, w = train_x.shape
    config = ClassifierConfig(in_channels=c, height=h, width=w, num_classes=int(max(train_y.max(), val_y.max())) + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(config)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    train_y = train_y.long()

    start, loss = time.perf_counter(), torch.tensor(float("nan"))
    for _ in tqdm(range(steps), disable=not progress, desc="classifier", unit="step"):
        idx = torch.randint(0, len(train_x), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(train_x[idx].to(device)), train_y[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.cpu().eval()
    metrics = {
        "val_accuracy": accuracy(model, val_x, val_y.long()),
        "train_loss_last": float(loss.item()),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "num_train": len(train_x),
        "num_val": len(val_x),
        "wall_time_s": time.perf_counter() - start,
    }
    return model, metrics


def save_classifier(path: str | Path, model: DomainClassifier, meta: dict[str, Any]) -> Path:
    """Atomically write {format, config, state_dict, meta}; equal models give equal bytes."""
    payload = {
        "format": CLASSIFIER_FORMAT,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta),
    }
    buffer = io.BytesIO()  # via a buffer: torch.save names the archive after the file otherwise
    torch.save(payload, buffer)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def load_classifier(path: str | Path) -> tuple[DomainClassifier, dict[str, Any]]:
    """(model in eval mode on CPU, meta) from :func:`save_classifier`; GenbenchError if missing/corrupt."""
    path = Path(path)
    if not path.is_file():
        raise GenbenchError(f"Classifier weights {path} are missing: run {CLASSIFIER_STAGE}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != CLASSIFIER_FORMAT:
            raise ValueError(f"format {payload.get('format')!r}, expected {CLASSIFIER_FORMAT!r}")
        config = dict(payload["config"])
        config["channels"] = tuple(config["channels"])
        model = DomainClassifier(ClassifierConfig(**config))
        model.load_state_dict(payload["state_dict"])
    except Exception as error:
        raise GenbenchError(
            f"Classifier weights {path} are corrupt ({type(error).__name__}: {error}): delete the file and "
            f"re-run {CLASSIFIER_STAGE}."
        ) from error
    model.requires_grad_(False)
    return model.eval(), dict(payload["meta"])


class FeatureExtractorClassifier(FeatureExtractorBase):
    """torch-fidelity feature extractor around a saved :class:`DomainClassifier`.

    `feature_extractor_weights_path` is the file from :func:`save_classifier`. Features: 'features'
    (penultimate, config.feature_dim; FID/KID/PRC default) and 'logits' (IS default).
    Input: uint8 N x C x H x W with H, W as trained; C as trained, or 3 for a 1-channel classifier
    (channel mean), or 1 for a 3-channel one (repeated).
    """

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise GenbenchError(
                f"The {CLASSIFIER_EXTRACTOR} feature extractor needs feature_extractor_weights_path: the file "
                f"written by {CLASSIFIER_STAGE}."
            )
        self.model, self.meta = load_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        raise NotImplementedError("the classifier extractor is not compiled")

    def forward(self, x):
        config = self.model.config
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4):
            raise GenbenchError("The classifier feature extractor expects uint8 images N x C x H x W.")
        if tuple(x.shape[2:]) != (config.height, config.width):
            raise GenbenchError(
                f"Images are {tuple(x.shape[2:])} but the classifier was trained on "
                f"{(config.height, config.width)}: use the classifier of this dataset."
            )
        if x.shape[1] == 3 and config.in_channels == 1:
            x = x.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
        elif x.shape[1] == 1 and config.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != config.in_channels:
            raise GenbenchError(f"Images have {x.shape[1]} channels, the classifier {config.in_channels}.")
        features, logits = self.model.features_and_logits(x)
        out = {"features": features, "logits": logits}
        return tuple(out[name].float() for name in self.features_list)
