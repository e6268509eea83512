"""GLANN: generative latent nearest neighbours, a non-adversarial image generator in two stages.

==================================================================================================
Hoshen, Li & Malik 2019, "Non-Adversarial Image Synthesis with Generative Latent Nearest Neighbors";
its two parts: GLO — Bojanowski, Joulin, Lopez-Paz & Szlam 2018, "Optimizing the Latent Space of
Generative Networks"; IMLE — Li & Malik 2018, "Implicit Maximum Likelihood Estimation".
==================================================================================================
Stage 1, GLO (Bojanowski et al., eq. 2-3). Every training image x_i owns a learnable code z_i in R^d
(d = `latent_dim`) on the unit sphere; codes and a generator G are fitted jointly,

    min_{G, z}  (1/N) sum_i  Lap1(G(z_i), x_i)    subject to  |z_i|_2 = 1,

by Adam (separate learning rates for the codes and for G, `glo_code_lr` / `glo_generator_lr`), each code
projected back onto the sphere z_i <- z_i / |z_i| after every step (the paper's constraint, kept exactly).
Codes start as Gaussian draws projected onto the sphere (the paper also tries a PCA start; we do not).
The codes' Adam is "lazy": only the rows of the batch move, each row with its own moments and step count
(a code's moments are not decayed, and it does not drift, while it is absent from the batch).

The loss is the paper's Laplacian-pyramid L1 (sec. 3.3, after Ling & Okada 2006):

    Lap1(x, x') = sum_j 2^{2j} |L^j(x) - L^j(x')|_1

with L^j the j-th level of the Laplacian pyramid (j = 0 the finest, full-size band; the last level the
low-pass residual), |.|_1 the SUM of absolute values over the level's entries. A level j has 4^{-j} as
many entries as the image, so the weight 2^{2j} makes every level count as the mean absolute difference
of its coefficients; we divide by the image's number of entries C*H*W, so Lap1 here = sum_j mean|dL^j| per
example. (A reimplementation found while checking this weighs per-level MEANS by 2^{-2j}, i.e. sums
unweighted; we follow the formula as printed.) Pyramid (Burt & Adelson 1983): G^0 = x,
G^{j+1} = down(blur(G^j)), L^j = G^j - up(G^{j+1}), L^{last} = G^{last}; blur = the separable 5-tap
binomial [1, 4, 6, 4, 1] / 16 with replicated borders, down = every second pixel (odd sides round up),
up = bilinear resize to the finer level's size. It is invertible exactly: G^j = L^j + up(G^{j+1}).
Images live in [-1, 1] (genbench.models.nn.to_signed_unit); `lap_levels` levels (3: 28 -> 14 -> 7).

G is the suite's image GAN generator (genbench.models.gans.ImageGenerator, the DCGAN-style network every
image GAN here uses), imported, not copied: with the same `latent_dim` and `hidden` as a GAN run it has
the same parameters, so "GLANN against GANs of the same generator" compares equal networks.

Stage 2, IMLE (Li & Malik 2018, Algorithm 1; GLANN sec. 3.2). With G and the codes frozen, a small MLP
T: R^{noise_dim} -> R^d learns to map e ~ N(0, I) onto the distribution of the codes: at each step, for a
batch of B codes draw m = `imle_candidates_per_code` * B noise vectors, map them, pair every code with its
NEAREST mapped point (Euclidean, brute force) and minimise

    (1/B) sum_i |z_i - P(T(e_{nn(i)}))|^2,     nn(i) = argmin_k |z_i - P(T(e_k))|,

gradient into T only. P projects onto the sphere (the GLO space is the sphere): T's outputs are projected
in training as in sampling, so what is trained is what is sampled. Sampling: x = G(P(T(e))), e ~ N(0, I).

Schedule (as the codebook family's `ae_steps`): steps < `glo_steps` train GLO, later steps IMLE until
train.steps. `train.lr` is not used: the three learning rates are model_config fields.

Checkpoints: the codes are a parameter of N rows, N known only when the trainer attaches the training
set (`attach_training_set`, below); a freshly built model holds 0 rows and `_load_from_state_dict` resizes
them to the stored shape, so genbench.train.load_trained and a resumed run both load. Two phases, two
losses, and no per-image code for held-out images: the trainer keeps the LAST checkpoint (runs have a
fixed length, no patience). `validation_loss` still returns a held-out figure for inspection: each image's
Lap1 distance to the nearest of `val_samples` generated images (lower: the samples cover it better).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genbench import GenbenchError
from genbench.models import GenerativeModel, Optimization, register_model
from genbench.models.gans import ImageGenerator, mlp
from genbench.models.nn import from_signed_unit, to_signed_unit


# --------------------------------------------------------------------------------------------------
# the Laplacian pyramid and the Lap1 loss (Bojanowski et al. 2018, sec. 3.3)
# --------------------------------------------------------------------------------------------------
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def blur(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> the same, smoothed by the separable 5-tap binomial kernel (borders replicated);
    the kernel sums to 1, so a constant image stays constant."""
    c = x.shape[1]
    k = _BINOMIAL.to(x.device, x.dtype)
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def downsample(x: torch.Tensor) -> torch.Tensor:
    return blur(x)[..., ::2, ::2]


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[L^0 (finest band, full size), ..., L^{levels-2}, G^{levels-1} (the low-pass residual)]."""
    pyramid, g = [], x
    for _ in range(levels - 1):
        coarser = downsample(g)
        pyramid.append(g - upsample(coarser, g.shape[-2:]))
        g = coarser
    pyramid.append(g)
    return pyramid


def reconstruct(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """The inverse of laplacian_pyramid: G^j = L^j + up(G^{j+1}), from the residual down."""
    g = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        g = band + upsample(g, band.shape[-2:])
    return g


def lap1(x: torch.Tensor, y: torch.Tensor, levels: int) -> torch.Tensor:
    """Per-example Lap1(x, y) = sum_j 4^j |L^j(x) - L^j(y)|_1, divided by C*H*W (see the module docstring)."""
    total = x.new_zeros(x.shape[0])
    for j, (a, b) in enumerate(zip(laplacian_pyramid(x, levels), laplacian_pyramid(y, levels))):
        total = total + 4.0 ** j * (a - b).abs().flatten(1).sum(1)
    return total / x[0].numel()


def pairwise_lap1(x: torch.Tensor, y: torch.Tensor, levels: int) -> torch.Tensor:
    """(len(x), len(y)) matrix of lap1(x_a, y_b), each pyramid built once."""
    total = x.new_zeros(len(x), len(y))
    for j, (a, b) in enumerate(zip(laplacian_pyramid(x, levels), laplacian_pyramid(y, levels))):
        total = total + 4.0 ** j * torch.cdist(a.flatten(1), b.flatten(1), p=1)
    return total / x[0].numel()


# --------------------------------------------------------------------------------------------------
# IMLE (Li & Malik 2018): nearest mapped point of every code, and the objective
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def nearest_mapped(codes: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """(B,) index of the nearest row of `mapped` (m, d) to each row of `codes` (B, d), Euclidean,
    brute force (exact differences, not the |a|^2 - 2ab + |b|^2 shortcut)."""
    return torch.cdist(codes, mapped, compute_mode="donot_use_mm_for_euclid_dist").argmin(1)


def imle_loss(codes: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """(1/B) sum_i |z_i - mapped_{nn(i)}|^2; the assignment is fixed, the gradient reaches `mapped` only."""
    nearest = mapped[nearest_mapped(codes.detach(), mapped.detach())]
    return (codes.detach() - nearest).pow(2).sum(1).mean()


def project_to_sphere(z: torch.Tensor) -> torch.Tensor:
    return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)


# --------------------------------------------------------------------------------------------------
# the GLO optimiser: Adam for G, row-lazy Adam for the codes
# --------------------------------------------------------------------------------------------------
class GLOAdam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015) on the generator (dense; L2 weight decay) and on the codes, whose gradient is
    sparse (F.embedding(sparse=True)): only the batch's rows are updated, each with its own moments and
    step count for the bias correction. One optimiser, so the trainer's Optimization (AMP, clipping) and
    checkpoints treat it as any other."""

    def __init__(self, generator_params, codes: nn.Parameter, generator_lr: float, code_lr: float,
                 betas: tuple[float, float], weight_decay: float, eps: float = 1e-8):
        super().__init__([{"params": list(generator_params), "lr": generator_lr, "lazy": False,
                           "weight_decay": weight_decay},
                          {"params": [codes], "lr": code_lr, "lazy": True, "weight_decay": 0.0}],
                         {"betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            (b1, b2), eps, lr = group["betas"], group["eps"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if group["lazy"]:
                    if not state:
                        state["row_steps"] = torch.zeros(p.shape[0], device=p.device, dtype=p.dtype)
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    grad = p.grad.coalesce() if p.grad.is_sparse else p.grad.to_sparse(1).coalesce()
                    rows, g = grad.indices()[0], grad.values()
                    t = state["row_steps"][rows] + 1
                    state["row_steps"][rows] = t
                    m = state["exp_avg"][rows].mul_(b1).add_(g, alpha=1 - b1)
                    v = state["exp_avg_sq"][rows].mul_(b2).addcmul_(g, g, value=1 - b2)
                    state["exp_avg"][rows], state["exp_avg_sq"][rows] = m, v
                    m_hat = m / (1 - b1 ** t)[:, None]
                    v_hat = v / (1 - b2 ** t)[:, None]
                    p[rows] -= lr * m_hat / (v_hat.sqrt() + eps)
                else:
                    if not state:
                        state["step"] = torch.zeros((), dtype=torch.float32)
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    g = p.grad if not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])
                    state["step"] += 1
                    t = float(state["step"])
                    state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                    state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = (state["exp_avg_sq"] / (1 - b2 ** t)).sqrt_().add_(eps)
                    p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1 ** t))
        return None


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------
@dataclass
class GLANNConfig:
    latent_dim: int = 64              # d: the GLO code = the GAN generator's input (the MNIST GANs' 64)
    hidden: int = 32                  # the GAN generator's width (the MNIST GANs' 32)
    lap_levels: int = 3               # Laplacian pyramid levels (28 -> 14 -> 7)
    glo_steps: int = 3000             # GLO steps; IMLE trains from there to train.steps
    glo_generator_lr: float = 1.0e-3
    glo_code_lr: float = 1.0e-2
    noise_dim: int = 64               # IMLE's noise e ~ N(0, I)
    imle_hidden: int = 256            # T: an MLP of `imle_layers` hidden layers of this width
    imle_layers: int = 2
    imle_candidates_per_code: int = 10
    imle_lr: float = 1.0e-3
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    val_samples: int = 256            # generated images the validation figure compares each image with


@register_model("glann", config=GLANNConfig, data_kinds=("image",),
                paper="Hoshen, Li & Malik 2019, Non-Adversarial Image Synthesis with Generative Latent Nearest "
                      "Neighbors (GLO: Bojanowski et al. 2018; IMLE: Li & Malik 2018)")
class GLANN(GenerativeModel):
    likelihood_kinds = ()
    checkpoint_selection = "last"   # two phases, two losses, no per-image code for held-out images
    per_example = True              # training_step receives (x, index): the codes are per training image

    def __init__(self, config: GLANNConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape)
        for name in ("latent_dim", "hidden", "lap_levels", "glo_steps", "noise_dim", "imle_hidden", "imle_layers",
                     "imle_candidates_per_code", "val_samples"):
            if getattr(config, name) < 1:
                raise GenbenchError(f"model_config.{name} must be >= 1, got {getattr(config, name)!r}")
        for name in ("glo_generator_lr", "glo_code_lr", "imle_lr"):
            if not getattr(config, name) > 0:
                raise GenbenchError(f"model_config.{name} must be > 0, got {getattr(config, name)!r}")
        if len(config.adam_betas) != 2 or not all(0 <= b < 1 for b in config.adam_betas):
            raise GenbenchError(f"model_config.adam_betas must be two numbers in [0, 1), got {config.adam_betas!r}")
        if len(data_shape) != 3 or data_shape[1] % 4 or data_shape[2] % 4:
            raise GenbenchError(f"GLANN's generator (the DCGAN one) needs images with sides divisible by 4, "
                                f"got {data_shape}")
        if min(data_shape[1:]) < 2 ** (config.lap_levels - 1):
            raise GenbenchError(f"model_config.lap_levels {config.lap_levels} is too many for {data_shape[1]}x"
                                f"{data_shape[2]} images")
        self.generator = ImageGenerator(config.latent_dim, data_shape, config.hidden)
        self.mapping = mlp(config.noise_dim, config.imle_hidden, config.latent_dim, layers=config.imle_layers)
        self.codes = nn.Parameter(torch.empty(0, config.latent_dim))   # one row per image: attach_training_set

    # the per-example codes ---------------------------------------------------------------------------
    def attach_training_set(self, n: int) -> None:
        """Called by the trainer once, before configure_optimizers: n codes, Gaussian draws projected onto
        the sphere (from torch's global RNG, which the trainer has seeded)."""
        codes = project_to_sphere(torch.randn(n, self.config.latent_dim))
        self.codes = nn.Parameter(codes.to(self.generator.net[0].weight.device))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        stored = state_dict.get(prefix + "codes")
        if stored is not None and stored.shape != self.codes.shape:  # a fresh model holds no codes yet
            self.codes = nn.Parameter(torch.empty(stored.shape, dtype=self.codes.dtype, device=self.codes.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def configure_optimizers(self, lr, weight_decay):
        if len(self.codes) == 0:
            raise GenbenchError("GLANN trains one code per training image: call attach_training_set(n) before "
                                "configure_optimizers (genbench.train does)")
        c = self.config
        betas = tuple(c.adam_betas)
        return {"glo": GLOAdam(self.generator.parameters(), self.codes, c.glo_generator_lr, c.glo_code_lr, betas,
                               weight_decay),
                "imle": torch.optim.Adam(self.mapping.parameters(), lr=c.imle_lr, betas=betas,
                                         weight_decay=weight_decay)}

    # the two stages --------------------------------------------------------------------------------
    def mapped(self, e: torch.Tensor) -> torch.Tensor:
        """P(T(e)): noise -> a point of the GLO sphere."""
        return project_to_sphere(self.mapping(e))

    def training_step(self, batch, step, opt: Optimization, generator):
        x, index = batch
        c = self.config
        if step < c.glo_steps:
            target = to_signed_unit(x)
            z = F.embedding(index, self.codes, sparse=True)
            loss = lap1(self.generator(z), target, c.lap_levels).mean()
            opt.step("glo", loss)
            with torch.no_grad():  # the constraint |z_i| = 1, restored after every step
                self.codes[index] = project_to_sphere(self.codes[index])
            return {"loss": loss.detach(), "lap1": loss.detach()}
        codes = self.codes[index].detach()
        e = torch.randn((c.imle_candidates_per_code * len(codes), c.noise_dim), generator=generator,
                        device=codes.device)
        loss = imle_loss(codes, self.mapped(e))
        opt.step("imle", loss)
        return {"loss": loss.detach(), "imle": loss.detach()}

    @torch.no_grad()
    def generate(self, z: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
        return torch.cat([from_signed_unit(self.generator(z[i:i + chunk])) for i in range(0, len(z), chunk)])

    @torch.no_grad()
    def sample(self, n, generator):
        e = torch.randn((n, self.config.noise_dim), generator=generator, device=self.device)
        return self.generate(self.mapped(e))

    @torch.no_grad()
    def validation_loss(self, x, generator):
        """Each held-out image's Lap1 distance to the nearest of `val_samples` generated images (not used to
        select checkpoints: the last one is kept)."""
        e = torch.randn((self.config.val_samples, self.config.noise_dim), generator=generator, device=self.device)
        samples = self.generator(self.mapped(e))
        return pairwise_lap1(to_signed_unit(x), samples, self.config.lap_levels).min(1).values
