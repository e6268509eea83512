"""Discrete latent variables: the categorical VAE and its gradient estimators.

==================================================================================================
Categorical VAE — Jang, Gu & Poole 2017, "Categorical Reparameterization with Gumbel-Softmax"
(sec. 2-3, the VAE of sec. 4.3); Maddison, Mnih & Teh 2017, "The Concrete Distribution".
==================================================================================================
Binarized MNIST x in {0, 1}^784, N = 20 categorical latents of K = 10 classes, a uniform prior
p(z) = prod_n 1/K, q(z|x) = prod_n Cat(pi_n(x)), p(x|z) = prod_d Bernoulli(x_d; sigmoid(decoder(z))_d);
encoder 784-512-256-(N K), decoder (N K)-256-512-784, ReLU (the paper's MLPs).

  ELBO       L(x)   = E_q[log p(x|z)] - KL(q(z|x) || p(z)),   KL = sum_n sum_k pi_nk log(K pi_nk)  (closed form)
  IW bound   L_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)]     (Burda et al. 2016, eq. 8)

The KL term is differentiated exactly; the estimators differ in the gradient of E_q[log p(x|z)]:

  sf     score function (REINFORCE) with a learned input-dependent baseline b(x) (Mnih & Gregor 2014):
         (log p(x|z) - b(x)) grad log q(z|x), z ~ Cat(pi); b trained to minimise (log p(x|z) - b(x))^2
  st     straight-through (Bengio et al. 2013): forward the one-hot sample z, backward as if z = pi
  gs     Gumbel-Softmax (Jang et al. eq. 1): y = softmax((log pi + g) / tau), g ~ Gumbel(0, 1), the decoder
         reads y (the relaxed objective; as tau -> 0, y -> one-hot(argmax(log pi + g)) ~ Cat(pi))
  st-gs  straight-through Gumbel-Softmax (Jang et al. sec. 2.2): forward one-hot(argmax y), backward through y

tau follows the paper's schedule tau = max(tau_min, tau_start exp(-r t)), updated every N steps.

Training binarizes each batch afresh (x_d ~ Bernoulli(pixel / 255), the trainer's generator); every
figure is computed on a fixed binarization (`fixed_binarization`: each image's draw is a function of
its bytes and `binarize_seed`, so it does not depend on batching or order). Reported: -ELBO and
-L_k in nats on the fixed binarization of the test split, with categorical (hard) samples: the bound
of the discrete model, whatever relaxation trained it.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genbench import GenbenchError
from genbench.models import GenerativeModel, Optimization, register_model
from genbench.models.vae import importance_weighted_bound

Estimator = Literal["sf", "st", "gs", "st-gs"]
ESTIMATORS: tuple[str, ...] = ("sf", "st", "gs", "st-gs")


# --------------------------------------------------------------------------------------------------
# binarized MNIST
# --------------------------------------------------------------------------------------------------
def dynamic_binarization(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 images -> float {0, 1}, each pixel ~ Bernoulli(x / 255), drawn afresh."""
    p = x.float() / 255.0
    return (torch.rand(p.shape, generator=generator, device=p.device) < p).float()


def fixed_binarization(x: torch.Tensor, seed: int) -> torch.Tensor:
    """The evaluation binarization: each image's uniforms come from a generator seeded by a hash of
    (seed, its bytes), so an image gets the same binary image in any batch, order or machine."""
    flat = x.detach().to("cpu", torch.uint8).flatten(1).contiguous()
    uniforms = torch.empty(flat.shape, dtype=torch.float32)
    for i, row in enumerate(flat.numpy()):
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, key=str(seed).encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
        uniforms[i] = torch.rand(row.shape, generator=g)
    return (uniforms < flat.float() / 255.0).float().view(x.shape).to(x.device)


# --------------------------------------------------------------------------------------------------
# categorical samples and their relaxations
# --------------------------------------------------------------------------------------------------
def gumbel_noise(shape, generator: torch.Generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))


def one_hot_argmax(y: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)


def gumbel_softmax(logits: torch.Tensor, tau: float, generator: torch.Generator, hard: bool = False
                   ) -> torch.Tensor:
    """y = softmax((logits + g) / tau) (Jang et al. eq. 1); hard: one-hot(argmax y) forward, y's gradient."""
    if not tau > 0:
        raise GenbenchError(f"the Gumbel-Softmax temperature must be > 0, got {tau!r}")
    y = torch.softmax((logits + gumbel_noise(logits.shape, generator, logits.device)) / tau, dim=-1)
    return straight_through(one_hot_argmax(y), y) if hard else y


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hard, soft):
        return hard.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """`hard` exactly in the forward pass (hard + soft - soft is not, in floating point), the
    gradient of `soft` in the backward pass."""
    return _StraightThrough.apply(hard.detach(), soft)


def sample_one_hot(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """z ~ Cat(softmax(logits)) as one-hot vectors (the Gumbel-max trick: argmax(logits + g))."""
    return one_hot_argmax(logits + gumbel_noise(logits.shape, generator, logits.device))


def categorical_kl_to_uniform(log_q: torch.Tensor) -> torch.Tensor:
    """KL(Cat(q) || uniform over K) per example, summed over the latents: sum q (log q + log K)."""
    k = log_q.shape[-1]
    return (log_q.exp() * (log_q + math.log(k))).sum((-2, -1))


def gaussian_gradient_estimates(mu: float, sigma: float, draws: int, generator: torch.Generator
                                ) -> dict[str, tuple[float, float]]:
    """d/dmu E_{x ~ N(mu, sigma^2)}[x^2] (exactly 2 mu) estimated from `draws` samples two ways: the
    reparameterisation x = mu + sigma eps, d x^2 / d mu = 2 x; and the score function
    x^2 d/dmu log N(x; mu, sigma^2) = x^2 (x - mu) / sigma^2. (mean, standard error) of each."""
    means = torch.full((draws,), float(mu), dtype=torch.float64, requires_grad=True)   # one leaf per draw
    x = means + sigma * torch.randn(draws, generator=generator, dtype=torch.float64)
    (pathwise,) = torch.autograd.grad(x.pow(2).sum(), means)
    xs = x.detach()
    score = xs.pow(2) * (xs - mu) / sigma**2
    return {name: (float(v.mean()), float(v.std() / math.sqrt(draws))) for name, v in
            (("reparameterization", pathwise), ("score_function", score))}


def annealed_temperature(step: int, start: float, minimum: float, rate: float, every: int) -> float:
    """tau = max(tau_min, tau_start exp(-r t)), t rounded down to a multiple of `every` (Jang et al. sec. 4)."""
    return max(minimum, start * math.exp(-rate * (step // every) * every))


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------
@dataclass
class CategoricalVAEConfig:
    estimator: Estimator = "gs"
    latents: int = 20              # N categorical variables
    classes: int = 10              # K classes each
    hidden: list[int] | None = None  # encoder widths, mirrored by the decoder (None: [512, 256])
    start_tau: float = 1.0
    min_tau: float = 0.5
    anneal_rate: float = 1.0e-4    # r: tau = max(min_tau, start_tau exp(-r t))
    anneal_every: int = 500        # N: steps between temperature updates
    baseline_hidden: int = 100     # sf: the baseline network's width
    binarize_seed: int = 0         # the fixed evaluation binarization (see fixed_binarization)
    study_taus: list[float] | None = None  # the estimator study's temperatures (None: 0.1 .. 2)
    study_draws: int = 1000        # draws per estimator in the study
    study_examples: int = 100      # test images in the study's fixed batch


def mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@register_model("catvae", config=CategoricalVAEConfig, data_kinds=("image",),
                paper="Jang, Gu & Poole 2017, Categorical Reparameterization with Gumbel-Softmax "
                      "(Maddison et al. 2017, The Concrete Distribution)")
class CategoricalVAE(GenerativeModel):
    def __init__(self, config: CategoricalVAEConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        if config.estimator not in ESTIMATORS:
            raise GenbenchError(f"model_config.estimator: unknown estimator {config.estimator!r}; "
                                f"expected one of {', '.join(ESTIMATORS)}")
        if not config.start_tau > 0 or not config.min_tau > 0:
            raise GenbenchError(f"model_config.start_tau and min_tau must be > 0, got {config.start_tau!r} "
                                f"and {config.min_tau!r}")
        if config.classes < 2:
            raise GenbenchError(f"model_config.classes must be >= 2, got {config.classes}")
        d = math.prod(data_shape)
        hidden = list(config.hidden or [512, 256])
        self.codes = config.latents * config.classes
        self.encoder = mlp([d] + hidden + [self.codes])
        self.decoder = mlp([self.codes] + hidden[::-1] + [d])
        if config.estimator == "sf":
            self.baseline = mlp([d, config.baseline_hidden, 1])
        self.register_buffer("tau", torch.tensor(config.start_tau))

    # q(z|x) and p(x|z) ---------------------------------------------------------------------------
    def logits(self, xb: torch.Tensor) -> torch.Tensor:
        """Encoder logits of q(z|x), shape (B, N, K), for binary images xb."""
        return self.encoder(xb.flatten(1)).view(-1, self.config.latents, self.config.classes)

    def log_px_given_z(self, xb: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli log-likelihood of binary images (B,) given codes z (B, N, K), one-hot or relaxed."""
        logits = self.decoder(z.flatten(1))
        return -F.binary_cross_entropy_with_logits(logits, xb.flatten(1), reduction="none").sum(1)

    def temperature(self, step: int) -> float:
        c = self.config
        return annealed_temperature(step, c.start_tau, c.min_tau, c.anneal_rate, c.anneal_every)

    def codes_for_training(self, logits: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
        """The decoder's input under the configured estimator (sf: a plain one-hot sample)."""
        est = self.config.estimator
        if est == "gs":
            return gumbel_softmax(logits, tau, generator)
        if est == "st-gs":
            return gumbel_softmax(logits, tau, generator, hard=True)
        z = sample_one_hot(logits.detach(), generator)
        if est == "st":
            return straight_through(z, torch.softmax(logits, -1))
        return z  # sf

    # bounds (categorical samples: the discrete model's bounds) ------------------------------------
    def elbo(self, xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        logits = self.logits(xb)
        z = sample_one_hot(logits, generator)
        return self.log_px_given_z(xb, z) - categorical_kl_to_uniform(torch.log_softmax(logits, -1))

    def iwae(self, xb: torch.Tensor, k: int, generator: torch.Generator, chunk: int = 50) -> torch.Tensor:
        log_q_all = torch.log_softmax(self.logits(xb), -1)
        log_prior = -self.config.latents * math.log(self.config.classes)

        def log_weights(m: int) -> torch.Tensor:
            log_q = log_q_all.repeat_interleave(m, 0)
            z = sample_one_hot(log_q, generator)
            return self.log_px_given_z(xb.repeat_interleave(m, 0), z) + log_prior - (z * log_q).sum((1, 2))

        return importance_weighted_bound(log_weights, k, chunk)

    # protocol -----------------------------------------------------------------------------------
    def training_step(self, x, step, opt: Optimization, generator):
        xb = dynamic_binarization(x, generator)
        tau = self.temperature(step)
        self.tau.fill_(tau)
        logits = self.logits(xb)
        log_q = torch.log_softmax(logits, -1)
        kl = categorical_kl_to_uniform(log_q)
        z = self.codes_for_training(logits, tau, generator)
        recon = self.log_px_given_z(xb, z)
        objective = recon - kl
        loss = -objective.mean()
        out = {"tau": torch.tensor(tau)}
        if self.config.estimator == "sf":
            b = self.baseline(xb.flatten(1)).squeeze(1)
            signal = (recon - b).detach()
            log_q_z = (z * log_q).sum((1, 2))
            baseline_loss = (recon.detach() - b).pow(2).mean()
            loss = loss - (signal * log_q_z).mean() + baseline_loss
            out["baseline_mse"] = baseline_loss.detach()
        opt.step("model", loss)
        return {"loss": loss.detach(), "elbo_nats": objective.mean().detach(), **out}

    @torch.no_grad()
    def validation_loss(self, x, generator):
        return -self.elbo(fixed_binarization(x, self.config.binarize_seed), generator)

    @torch.no_grad()
    def sample(self, n, generator):
        """Decoded prior samples: z ~ uniform categorical, the image the Bernoulli means (x 255)."""
        c = self.config
        z = sample_one_hot(torch.zeros(n, c.latents, c.classes, device=self.device), generator)
        means = torch.sigmoid(self.decoder(z.flatten(1)))
        return (means * 255.0).round().to(torch.uint8).view(n, *self.data_shape)

    # the evaluation's figures -------------------------------------------------------------------
    @torch.no_grad()
    def binarized_bounds(self, x: torch.Tensor, generator: torch.Generator, iwae_k: int, batch: int
                         ) -> dict[str, torch.Tensor]:
        """Per-example ELBO and L_k (nats) on the fixed binarization of uint8 images x."""
        xb = fixed_binarization(x, self.config.binarize_seed)
        parts: dict[str, list[torch.Tensor]] = {"elbo": [], "iwae": []}
        for start in range(0, len(xb), batch):
            chunk = xb[start:start + batch].to(self.device)
            parts["elbo"].append(self.elbo(chunk, generator).double().cpu())
            parts["iwae"].append(self.iwae(chunk, iwae_k, generator).double().cpu())
        return {k: torch.cat(v) for k, v in parts.items()}

    def estimator_study(self, x: torch.Tensor, generator: torch.Generator) -> list[dict]:
        """Bias and variance of each estimator's gradient of E_q[log p(x|z)] with respect to the logits
        of one categorical variable (the first), the others held at one categorical sample, against the
        exact gradient from enumerating its K values; per temperature for GS and ST-GS. Per example:
        variance = the draws' mean squared distance to their mean (unbiased), squared bias = |mean of the
        draws - exact|^2 - variance / draws (unbiased for |E g - exact|^2: the draws' own noise removed);
        rows give the means over the examples with their standard errors, and bias = sqrt(mean squared bias)."""
        c = self.config
        taus = list(c.study_taus or [0.1, 0.2, 0.5, 1.0, 2.0])
        xb = fixed_binarization(x[:c.study_examples], c.binarize_seed).to(self.device)
        with torch.no_grad():
            logits = self.logits(xb)
            held = sample_one_hot(logits, generator)           # the other variables' sample, fixed
            b = (self.baseline(xb.flatten(1)).squeeze(1) if c.estimator == "sf"
                 else torch.zeros(len(xb), device=self.device))
        l0 = logits[:, 0, :]                                     # (B, K): the studied variable's logits

        def f(code0: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            """log p(x|z) with variable 0 set to code0 (M*B, K) and the others held, for the given rows."""
            z = torch.cat([code0.unsqueeze(1), held[rows, 1:, :]], 1)
            return self.log_px_given_z(xb[rows], z)

        batch_rows = torch.arange(len(xb), device=self.device)
        # exact: d/dl sum_k softmax(l)_k f(e_k)
        with torch.no_grad():
            eye = torch.eye(c.classes, device=self.device)
            values = torch.stack([f(eye[k].expand(len(xb), -1), batch_rows) for k in range(c.classes)], 1)
        leaf = l0.detach().clone().requires_grad_(True)
        (torch.softmax(leaf, -1) * values).sum().backward()
        exact = leaf.grad.detach()

        draws = c.study_draws
        rows = batch_rows.repeat(draws)                          # draw-major: (M*B,)

        def estimates(kind: str, tau: float | None) -> torch.Tensor:
            leaf = l0.detach().repeat(draws, 1).requires_grad_(True)
            if kind == "sf":
                with torch.no_grad():
                    code = sample_one_hot(leaf, generator)
                    signal = f(code, rows) - b[rows]
                surrogate = signal * (code * torch.log_softmax(leaf, -1)).sum(1)
            elif kind == "st":
                code = straight_through(sample_one_hot(leaf.detach(), generator), torch.softmax(leaf, -1))
                surrogate = f(code, rows)
            else:
                surrogate = f(gumbel_softmax(leaf, tau, generator, hard=kind == "st-gs"), rows)
            (grad,) = torch.autograd.grad(surrogate.sum(), leaf)
            return grad.view(draws, len(xb), c.classes)

        rows_out = []
        cases = [("sf", None), ("st", None)] + [(k, t) for k in ("gs", "st-gs") for t in taus]
        for kind, tau in cases:
            g = estimates(kind, tau)
            mean = g.mean(0)
            variance = (g - mean).pow(2).sum(2).mean(0) * draws / (draws - 1)
            # E|mean - exact|^2 = |bias|^2 + variance / draws: subtract the Monte Carlo part
            bias2 = (mean - exact).pow(2).sum(1) - variance / draws
            n = len(xb)
            rows_out.append({
                "estimator": kind, "tau": tau, "draws": draws, "examples": n,
                "bias2": float(bias2.mean()), "bias2_stderr": float(bias2.std() / math.sqrt(n)),
                "bias": math.sqrt(max(float(bias2.mean()), 0.0)),
                "variance": float(variance.mean()), "variance_stderr": float(variance.std() / math.sqrt(n)),
                # the Monte Carlo part removed from |mean - exact|: an unbiased estimator's whole distance
                "bias_noise_floor": float((variance / draws).sqrt().mean()),
                "exact_norm": float(exact.norm(dim=1).mean()), "baseline": kind == "sf" and c.estimator == "sf",
            })
        return rows_out

    @staticmethod
    def gaussian_check(seed: int) -> dict:
        """The two estimators on a case with a closed-form gradient (reported beside the study)."""
        mu, sigma, draws = 1.5, 1.0, 100_000
        generator = torch.Generator().manual_seed(seed)
        return {"mu": mu, "sigma": sigma, "draws": draws, "exact": 2 * mu,
                **{k: {"mean": m, "stderr": e} for k, (m, e) in gaussian_gradient_estimates(mu, sigma, draws,
                                                                                             generator).items()}}
