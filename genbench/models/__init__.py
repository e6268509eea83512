"""The model registry and the protocol every model family follows.

A registered model takes one optimisation step from a batch of uint8 data (it owns its optimisers
and schedule), samples `n` items in the dataset's value range, and, where it has one, returns a
per-example log-likelihood in nats tagged with its kind (see genbench.metrics.likelihood).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from genbench import GenbenchError
from genbench.config import strict, from_dict


class Optimization:
    """What a model calls to take an optimiser step; the trainer owns AMP scaling and clipping."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler | None,
                 grad_clip: float | None):
        self.optimizers = optimizers
        self.scaler = scaler
        self.grad_clip = grad_clip

    def step(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        if self.grad_clip is not None:
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()


class GenerativeModel(nn.Module):
    """Base class of every registered model."""

    likelihood_kinds: tuple[str, ...] = ()

    def __init__(self, config: Any, data_shape: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.data_shape = tuple(data_shape)

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)}

    def training_step(self, x: torch.Tensor, step: int, opt: Optimization,
                      generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One optimisation step on a uint8 batch; returns detached scalars, `loss` among them."""
        raise NotImplementedError

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-example loss on held-out data, lower is better: selects the checkpoint kept."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` samples in the dataset's value range (uint8 images)."""
        raise NotImplementedError

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
        """Per-example log-likelihood (or its bound) of uint8 data, in nats, of the discrete data."""
        raise GenbenchError(f"{type(self).__name__} has no likelihood of kind {kind!r}")

    @torch.no_grad()
    def log_likelihood_table(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Named per-example log-likelihood bounds of a study (diffusion: the bound per variance and
        number of steps), reported as a table beside the leaderboard; none by default."""
        return {}

    def sample_variants(self, hubness) -> dict[str, "SamplerVariant | Callable"]:
        """Other samplers of the trained model, each scored as a row of its own; none by default."""
        return {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


@dataclass(frozen=True)
class SamplerVariant:
    """Another sampler of a trained model, scored as a row of its own (`run [name]`): `draw(n, generator)
    -> (samples, numeric details)`; `n` caps its sample count (None: as many as the extractors use);
    `info` is stored with its scores (e.g. which table cell it fills)."""

    draw: Callable[[int, torch.Generator], tuple[torch.Tensor, dict]]
    n: int | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    cls: type[GenerativeModel]
    config_cls: type
    data_kinds: tuple[str, ...]
    paper: str

    def config_problems(self, raw: dict, where: str) -> list[str]:
        problems: list[str] = []
        from_dict(self.config_cls, raw, where, problems)
        return problems

    def build(self, raw: dict, data_shape: tuple[int, ...]) -> GenerativeModel:
        return self.cls(strict(self.config_cls, raw, f"model_config of {self.name}"), data_shape)


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, config: type, data_kinds: tuple[str, ...], paper: str
                   ) -> Callable[[type[GenerativeModel]], type[GenerativeModel]]:
    def decorate(cls: type[GenerativeModel]) -> type[GenerativeModel]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice ({MODELS[name].cls.__name__}, {cls.__name__})")
        MODELS[name] = ModelSpec(name, cls, config, data_kinds, paper)
        return cls

    return decorate


def build_model(name: str, model_config: dict, data_shape: tuple[int, ...]) -> GenerativeModel:
    if name not in MODELS:
        raise GenbenchError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name].build(model_config, data_shape)


# Importing a family module registers its models.
from genbench.models import accuracy, catvae, diffusion, dim, ebm, flows, fvae, gans, glann, sentence, vae, vq  # noqa: E402,F401
