"""Theory checks as experiments: three claims from the literature, each measured with error bars.

  - `variance_check`: the biased (1/n) and unbiased (1/(n-1)) sample variances, their bias and MSE;
  - `hubness_check`: hubs (points among the k nearest neighbours of many others) appear as the dimension grows;
  - `gd_flow_check`: gradient descent follows the flow of L + (eta/4)||grad L||^2, not of L, to O(eta^2).

Each check is a pure, seeded, deterministic function of its config dataclass that returns a JSON-ready dict
(plain floats, ints, lists, strings and None). Every random draw comes from a torch.Generator seeded from
the config's `seed` and the coordinates of its cell (distribution and n; d and resample; problem and
instance), so a cell's numbers do not depend on which other cells are run. Everything is float64.
`config_problems` lists a config's bad settings (params.yaml is checked with it before anything runs);
each check raises them as one GenbenchError.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genbench import GenbenchError
from genbench.metrics.hubness import k_occurrence

DTYPE = torch.float64


# ==================================================================================================
# Shared helpers
# ==================================================================================================
def _generator(*parts: Any) -> torch.Generator:
    """A generator seeded from `parts` (the config's seed and a cell's coordinates) through SHA-256."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _mean_stderr(x: torch.Tensor | list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std with 1/(m-1), over sqrt(m)) of m values."""
    x = torch.as_tensor(x, dtype=DTYPE)
    return float(x.mean()), float(x.std() / math.sqrt(len(x)))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_list_problem(where: str, values: Any, low: int, high: float = math.inf) -> list[str]:
    if isinstance(values, list) and values and all(_is_int(v) and low <= v <= high for v in values):
        return []
    bound = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
    return [f"{where} must be a non-empty list of integers {bound}, got {values!r}"]


def _int_problem(where: str, value: Any, low: int, high: float = math.inf) -> list[str]:
    if _is_int(value) and low <= value <= high:
        return []
    return [f"{where} must be an integer {f'>= {low}' if high == math.inf else f'in [{low}, {high}]'}, got {value!r}"]


def _names_problem(where: str, values: Any, known: tuple[str, ...]) -> list[str]:
    if isinstance(values, list) and values and all(v in known for v in values):
        return []
    return [f"{where} must be a non-empty list of names from: {', '.join(known)}; got {values!r}"]


# ==================================================================================================
# 1. Biased and unbiased variance (Su, "简述无偏估计和有偏估计", kexue.fm)
# ==================================================================================================
VARIANCE_DISTRIBUTIONS = ("normal", "exponential", "bernoulli")


@dataclass
class VarianceCheckConfig:
    sizes: list[int] = field(default_factory=lambda: [2, 3, 5, 10, 30])   # sample sizes n (>= 2)
    replicates: int = 100000                                              # samples of size n per cell
    distributions: list[str] = field(default_factory=lambda: list(VARIANCE_DISTRIBUTIONS))
    bernoulli_p: float = 0.3
    seed: int = 0


def _variance_problems(cfg: VarianceCheckConfig, where: str) -> list[str]:
    out = _int_list_problem(f"{where}.sizes", cfg.sizes, 2) + _int_problem(f"{where}.replicates", cfg.replicates, 2)
    out += _names_problem(f"{where}.distributions", cfg.distributions, VARIANCE_DISTRIBUTIONS)
    if not 0 < cfg.bernoulli_p < 1:
        out.append(f"{where}.bernoulli_p must lie strictly between 0 and 1, got {cfg.bernoulli_p!r}")
    return out


def _draw(distribution: str, shape: tuple[int, int], p: float, generator: torch.Generator) -> torch.Tensor:
    """N(0, 1), exponential (rate 1) or Bernoulli(p) draws in float64."""
    if distribution == "normal":
        return torch.randn(shape, generator=generator, dtype=DTYPE)
    if distribution == "exponential":
        return torch.empty(shape, dtype=DTYPE).exponential_(1.0, generator=generator)
    return (torch.rand(shape, generator=generator, dtype=DTYPE) < p).to(DTYPE)


def normal_ml_sigma_mean(n: int, sigma: float) -> float:
    """E[sigma_ML] for n normal draws, sigma sqrt(2/n) Gamma(n/2) / Gamma((n-1)/2): sigma_ML^2 = (1/n) sum
    (x - mean)^2 = sigma^2 chi^2_{n-1} / n, and E[chi_{n-1}] = sqrt(2) Gamma(n/2) / Gamma((n-1)/2)."""
    return sigma * math.sqrt(2 / n) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


def variance_check(cfg: VarianceCheckConfig) -> dict:
    """Bias and MSE of S^2 = sum (x - mean)^2 / (n - 1) (unbiased) and of sum (x - mean)^2 / n (biased; the
    maximum-likelihood estimate for a normal), and the bias of sigma_ML = sqrt(biased), after Su's post:
    E[S^2_biased] = (n-1)/n sigma^2, and for a normal MSE(S^2) = 2 sigma^4/(n-1) (Var of sigma^2 chi^2_{n-1}
    /(n-1)) while MSE(S^2_biased) = 2(n-1) sigma^4/n^2 + sigma^4/n^2 = (2n-1) sigma^4/n^2 is smaller.

    One row per (distribution, n) from `replicates` independent samples of size n. The MSE difference
    biased - unbiased is taken per replicate (both estimators on the same sample): its standard error is
    that of a paired difference. The closed forms (`*_exact`, `ml_sigma_expected`) are given for the normal.
    """
    _raise(_variance_problems(cfg, "variance"))
    p = cfg.bernoulli_p
    rows = []
    for dist in cfg.distributions:
        var = {"normal": 1.0, "exponential": 1.0, "bernoulli": p * (1 - p)}[dist]
        sigma = math.sqrt(var)
        normal = dist == "normal"
        for n in cfg.sizes:
            x = _draw(dist, (cfg.replicates, n), p, _generator(cfg.seed, "variance", dist, n))
            ss = ((x - x.mean(dim=1, keepdim=True)) ** 2).sum(dim=1)
            unbiased, biased = ss / (n - 1), ss / n
            unbiased_se, biased_se = (unbiased - var) ** 2, (biased - var) ** 2
            (um, us), (bm, bs) = _mean_stderr(unbiased), _mean_stderr(biased)
            (uem, ues), (bem, bes) = _mean_stderr(unbiased_se), _mean_stderr(biased_se)
            dm, ds = _mean_stderr(biased_se - unbiased_se)
            mlm, mls = _mean_stderr(biased.sqrt())
            rows.append({
                "distribution": dist, "n": n, "replicates": cfg.replicates, "true_variance": var, "true_sigma": sigma,
                "unbiased_mean": um, "unbiased_stderr": us, "biased_mean": bm, "biased_stderr": bs,
                "unbiased_ratio": um / var, "unbiased_ratio_stderr": us / var,
                "biased_ratio": bm / var, "biased_ratio_stderr": bs / var, "expected_biased_ratio": (n - 1) / n,
                "unbiased_mse": uem, "unbiased_mse_stderr": ues, "biased_mse": bem, "biased_mse_stderr": bes,
                "mse_difference": dm, "mse_difference_stderr": ds,
                "ml_sigma_mean": mlm, "ml_sigma_stderr": mls,
                "ml_sigma_expected": normal_ml_sigma_mean(n, sigma) if normal else None,
                "unbiased_mse_exact": 2 * var**2 / (n - 1) if normal else None,
                "biased_mse_exact": (2 * n - 1) * var**2 / n**2 if normal else None,
            })
    return {"rows": rows}


# ==================================================================================================
# 2. Hubness (Su, "“维度灾难”之Hubness现象浅析", kexue.fm; Radovanovic, Nanopoulos & Ivanovic 2010,
#    "Hubs in Space: Popular Nearest Neighbors in High-Dimensional Data", JMLR 11)
# ==================================================================================================
@dataclass
class HubnessCheckConfig:
    n: int = 2000                                                          # points per sample
    ks: list[int] = field(default_factory=lambda: [5, 10])                # neighbourhood sizes k
    dims: list[int] = field(default_factory=lambda: [2, 8, 32, 128, 512])
    resamples: int = 5                                                     # independent samples per d
    seed: int = 0


def _hubness_problems(cfg: HubnessCheckConfig, where: str) -> list[str]:
    out = _int_problem(f"{where}.n", cfg.n, 2)
    if not out:
        out += _int_list_problem(f"{where}.ks", cfg.ks, 1, cfg.n - 1)
    return out + _int_list_problem(f"{where}.dims", cfg.dims, 1) + _int_problem(f"{where}.resamples", cfg.resamples, 2)


def skewness(x: torch.Tensor) -> float:
    """Standardised third moment, population form E[(x - mu)^3] / sigma^3 with sigma^2 = E[(x - mu)^2]
    (the S_{N_k} of Radovanovic et al. 2010, section 3)."""
    c = x.to(DTYPE) - x.to(DTYPE).mean()
    return float((c**3).mean() / (c**2).mean() ** 1.5)


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..m of a 1-D tensor; tied values share the average of the ranks they span."""
    order = torch.argsort(x, stable=True)
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    average = counts.cumsum(0).to(DTYPE) - (counts.to(DTYPE) - 1) / 2   # mean of start+1 .. end
    ranks = torch.empty(len(x), dtype=DTYPE)
    ranks[order] = average[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation: the Pearson correlation of the average ranks."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def hubness_check(cfg: HubnessCheckConfig) -> dict:
    """The k-occurrence N_k(x) (how many other points count x among their k nearest neighbours) of i.i.d.
    N(0, I_d) points grows right-skewed as d grows: hubs appear; and the hubs are the points near the data
    mean (Radovanovic et al. 2010, sections 3-4, Fig. 1 and Table 1; Su's post). N_k is computed by the
    suite's hubness latent sampler's code (genbench.metrics.hubness.k_occurrence).

    One row per (d, k): over `resamples` independent samples of n points, the skewness of N_k and the
    Spearman correlation between N_k(x) and ||x - sample mean|| (negative: hubs lie near the mean), each as
    mean, standard error (std over resamples / sqrt(resamples)) and the per-resample values.
    """
    _raise(_hubness_problems(cfg, "hubness"))
    rows = []
    for d in cfg.dims:
        skews: dict[int, list[float]] = {k: [] for k in cfg.ks}
        corrs: dict[int, list[float]] = {k: [] for k in cfg.ks}
        for r in range(cfg.resamples):
            x = torch.randn((cfg.n, d), generator=_generator(cfg.seed, "hubness", d, r), dtype=DTYPE)
            to_mean = (x - x.mean(dim=0)).norm(dim=1)
            for k in cfg.ks:
                counts = k_occurrence(x, k).to(DTYPE)
                skews[k].append(skewness(counts))
                corrs[k].append(spearman(counts, to_mean))
        for k in cfg.ks:
            (sm, ss), (cm, cs) = _mean_stderr(skews[k]), _mean_stderr(corrs[k])
            rows.append({"d": d, "k": k, "n": cfg.n, "resamples": cfg.resamples,
                         "skewness_mean": sm, "skewness_stderr": ss, "skewness_values": skews[k],
                         "correlation_mean": cm, "correlation_stderr": cs, "correlation_values": corrs[k]})
    return {"rows": rows}


# ==================================================================================================
# 3. Gradient descent and its modified flow (Su, "从动力学角度看优化算法", kexue.fm; Barrett & Dherin 2021,
#    "Implicit Gradient Regularization", ICLR, Theorem 3.1)
# ==================================================================================================
GDFLOW_PROBLEMS = ("quadratic", "mlp")
QUADRATIC_SPECTRUM = (0.5, 2.0)   # the quadratic's Hessian eigenvalues: uniform on this interval
DIGITS_EXAMPLES = 1797            # examples in scikit-learn's load_digits


@dataclass
class GDFlowCheckConfig:
    """Defaults: eta in {0.02, 0.01, 0.005, 0.0025} over the horizon T = 1 (50 to 400 steps). The quadratic's
    Hessian eigenvalues lie in [0.5, 2]; the digits MLP's largest at init is 2.1 to 2.8 (power iteration on
    the five default instances). So lambda eta <= 0.06: GD is stable (lambda eta < 2) and monotone (< 1), and
    the next terms of both expansions (relative size ~ lambda eta and lambda^2 eta T) are a few per cent: in
    the asymptotic regime. Measured: slopes 1.003 and 1.999 (quadratic), 1.002 and 1.996 (MLP), 4 to 5 s on
    one thread (the MLP's 750 GD steps per instance dominate). The ODE tolerances keep the integration error
    (~1e-11) far below the smallest modified-flow error (~4e-7)."""

    learning_rates: list[float] = field(default_factory=lambda: [0.02, 0.01, 0.005, 0.0025])
    horizon: float = 1.0              # T; T / eta must be an integer for every eta
    instances: int = 5                # random problem instances per problem (for the intervals)
    problems: list[str] = field(default_factory=lambda: list(GDFLOW_PROBLEMS))
    quadratic_dim: int = 10
    mlp_hidden: int = 16
    mlp_examples: int = 500           # the first examples of load_digits
    rtol: float = 1e-10               # solve_ivp (DOP853) tolerances
    atol: float = 1e-12
    seed: int = 0


def _steps(horizon: float, eta: float) -> int | None:
    """T / eta when it is an integer (to 1e-9 relative), else None."""
    steps = round(horizon / eta)
    return steps if steps >= 1 and abs(steps * eta - horizon) <= 1e-9 * horizon else None


def _gdflow_problems(cfg: GDFlowCheckConfig, where: str) -> list[str]:
    out = []
    etas = cfg.learning_rates
    if not (isinstance(etas, list) and len(etas) >= 2 and len(set(etas)) == len(etas)
            and all(isinstance(e, (int, float)) and e > 0 for e in etas)):
        out.append(f"{where}.learning_rates must be a list of at least two distinct positive numbers, got {etas!r}")
    elif not (isinstance(cfg.horizon, (int, float)) and cfg.horizon > 0):
        out.append(f"{where}.horizon must be positive, got {cfg.horizon!r}")
    else:
        bad = [eta for eta in etas if _steps(cfg.horizon, eta) is None]
        if bad:
            out.append(f"{where}.horizon / eta must be a whole number of steps for every eta in learning_rates; "
                       f"horizon {cfg.horizon} is not a multiple of {bad}")
    out += _int_problem(f"{where}.instances", cfg.instances, 2)
    out += _names_problem(f"{where}.problems", cfg.problems, GDFLOW_PROBLEMS)
    out += _int_problem(f"{where}.quadratic_dim", cfg.quadratic_dim, 1)
    out += _int_problem(f"{where}.mlp_hidden", cfg.mlp_hidden, 1)
    out += _int_problem(f"{where}.mlp_examples", cfg.mlp_examples, 1, DIGITS_EXAMPLES)
    for key in ("rtol", "atol"):
        if not (isinstance(getattr(cfg, key), (int, float)) and getattr(cfg, key) > 0):
            out.append(f"{where}.{key} must be positive, got {getattr(cfg, key)!r}")
    return out


def gradient_descent(gradient: Callable[[torch.Tensor], torch.Tensor], theta0: torch.Tensor, eta: float,
                     steps: int) -> torch.Tensor:
    """theta_{k+1} = theta_k - eta grad L(theta_k), `steps` times."""
    theta = theta0.clone()
    for _ in range(steps):
        theta = theta - eta * gradient(theta)
    return theta


def integrate_flow(gradient: Callable[[torch.Tensor], torch.Tensor], theta0: torch.Tensor, horizon: float, *,
                   rtol: float, atol: float) -> torch.Tensor:
    """theta(T) of the flow d theta/dt = -gradient(theta), theta(0) = theta0, by scipy's solve_ivp (DOP853)."""
    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        return -gradient(torch.from_numpy(y)).numpy()

    from scipy.integrate import solve_ivp  # here: scipy.integrate costs ~0.5 s, and params validation imports this module
    sol = solve_ivp(rhs, (0.0, horizon), theta0.numpy(), method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise GenbenchError(f"gdflow: solve_ivp failed ({sol.message}); loosen gdflow.rtol / gdflow.atol")
    return torch.from_numpy(sol.y[:, -1].copy())


class Quadratic:
    """L(theta) = 1/2 theta^T A theta: grad L = A theta, H grad L = A^2 theta."""

    def __init__(self, a: torch.Tensor):
        self.a = a

    @classmethod
    def random(cls, dim: int, generator: torch.Generator) -> Quadratic:
        """A = Q diag(lambda) Q^T: Q orthogonal (QR of a Gaussian matrix), lambda uniform on QUADRATIC_SPECTRUM."""
        q, _ = torch.linalg.qr(torch.randn((dim, dim), generator=generator, dtype=DTYPE))
        low, high = QUADRATIC_SPECTRUM
        lam = low + (high - low) * torch.rand(dim, generator=generator, dtype=DTYPE)
        a = q @ torch.diag(lam) @ q.T
        return cls((a + a.T) / 2)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        return self.a @ theta

    def modified_gradient(self, theta: torch.Tensor, eta: float) -> torch.Tensor:
        """grad of L + (eta/4)||grad L||^2: grad L + (eta/2) H grad L = (A + (eta/2) A^2) theta."""
        g = self.a @ theta
        return g + eta / 2 * (self.a @ g)

    def flows(self, theta0: torch.Tensor, eta: float, horizon: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The plain flow exp(-A T) theta0 and the modified flow exp(-(A + (eta/2) A^2) T) theta0, in closed
        form through the eigendecomposition A = V diag(lambda) V^T."""
        lam, v = torch.linalg.eigh(self.a)
        c = v.T @ theta0
        plain = v @ (torch.exp(-lam * horizon) * c)
        modified = v @ (torch.exp(-(lam + eta / 2 * lam**2) * horizon) * c)
        return plain, modified


def load_digits_subset(examples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `examples` of scikit-learn's load_digits: 8x8 images with pixels 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data[:examples] / 16.0, dtype=DTYPE)
    return x, torch.tensor(digits.target[:examples], dtype=torch.long)


class DigitsMLP:
    """Full-batch softmax cross-entropy of a one-hidden-layer tanh MLP (64 -> hidden -> 10) as a function of
    one flat float64 parameter vector theta = (W1, b1, W2, b2); gradients and Hessian-vector products by
    autograd (H v = grad of (grad L . v), double backward)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, hidden: int):
        self.x, self.y, self.hidden = x, y, hidden
        d, h = x.shape[1], hidden
        self.shapes = [(d, h), (h,), (h, 10), (10,)]
        self.size = sum(math.prod(s) for s in self.shapes)

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """Weights N(0, 1/fan_in) (LeCun), biases zero."""
        d, h = self.x.shape[1], self.hidden
        w1 = torch.randn((d, h), generator=generator, dtype=DTYPE) / math.sqrt(d)
        w2 = torch.randn((h, 10), generator=generator, dtype=DTYPE) / math.sqrt(h)
        return torch.cat([w1.flatten(), torch.zeros(h, dtype=DTYPE), w2.flatten(), torch.zeros(10, dtype=DTYPE)])

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = (t.view(s) for t, s in zip(theta.split([math.prod(s) for s in self.shapes]), self.shapes))
        return F.cross_entropy(torch.tanh(self.x @ w1 + b1) @ w2 + b2, self.y)

    def _grad(self, theta: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        theta = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.loss(theta), theta, create_graph=create_graph)
        return theta, g

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        return self._grad(theta, False)[1]

    def hessian_vector_product(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        theta, g = self._grad(theta, True)
        (hv,) = torch.autograd.grad(g @ v, theta)
        return hv

    def modified_gradient(self, theta: torch.Tensor, eta: float) -> torch.Tensor:
        """grad L + (eta/2) H grad L, the gradient of L + (eta/4)||grad L||^2."""
        theta, g = self._grad(theta, True)
        (hg,) = torch.autograd.grad(g @ g.detach(), theta)
        return g.detach() + eta / 2 * hg


def _slope(etas: list[float], errors: list[float]) -> float:
    """Least-squares slope of log(error) on log(eta)."""
    return float(np.polyfit(np.log(etas), np.log(errors), 1)[0])


def gd_flow_check(cfg: GDFlowCheckConfig) -> dict:
    """Barrett & Dherin 2021 (Theorem 3.1; Su's post): GD with step eta, theta_{k+1} = theta_k - eta grad L,
    follows to O(eta^2) the gradient flow of the modified loss L~ = L + (eta/4)||grad L||^2, whose gradient
    is grad L + (eta/2) H grad L, rather than the flow of L: one step's local error is O(eta^2) against the
    plain flow and O(eta^3) against the modified one, so after k = T/eta steps (fixed horizon T)
    ||theta_GD(k) - theta_flow(k eta)|| scales as eta for the plain flow and as eta^2 for the modified.

    Problems: `quadratic`, L = 1/2 theta^T A theta (see Quadratic), where both flows have closed forms; they
    are also integrated with solve_ivp, and `ode_check` is the largest |ODE - closed form| (None without the
    quadratic); `mlp`, the digits MLP (DigitsMLP) from a random init per instance, both flows by solve_ivp.
    Per problem and instance the errors at T for each eta are fitted by a line in log-log: `fits` gives the
    slopes' mean and standard error over instances (expected: 1 for the plain flow, 2 for the modified).
    """
    _raise(_gdflow_problems(cfg, "gdflow"))
    etas, horizon = [float(e) for e in cfg.learning_rates], float(cfg.horizon)
    tol = {"rtol": cfg.rtol, "atol": cfg.atol}
    rows, fits, ode_check = [], [], None
    for problem in cfg.problems:
        plain_errors = [[0.0] * cfg.instances for _ in etas]
        modified_errors = [[0.0] * cfg.instances for _ in etas]
        digits = load_digits_subset(cfg.mlp_examples) if problem == "mlp" else None
        for i in range(cfg.instances):
            generator = _generator(cfg.seed, "gdflow", problem, i)
            if digits is None:
                model = Quadratic.random(cfg.quadratic_dim, generator)
                theta0 = torch.randn(cfg.quadratic_dim, generator=generator, dtype=DTYPE)
            else:
                model = DigitsMLP(*digits, cfg.mlp_hidden)
                theta0 = model.init(generator)
            plain = integrate_flow(model.gradient, theta0, horizon, **tol)
            for j, eta in enumerate(etas):
                gd = gradient_descent(model.gradient, theta0, eta, _steps(horizon, eta))
                modified = integrate_flow(partial(model.modified_gradient, eta=eta), theta0, horizon, **tol)
                if problem == "quadratic":
                    exact_plain, exact_modified = model.flows(theta0, eta, horizon)
                    gap = max(float((plain - exact_plain).abs().max()), float((modified - exact_modified).abs().max()))
                    ode_check = gap if ode_check is None else max(ode_check, gap)
                plain_errors[j][i] = float((gd - plain).norm())
                modified_errors[j][i] = float((gd - modified).norm())
        for j, eta in enumerate(etas):
            rows.append({"problem": problem, "eta": eta, "steps": _steps(horizon, eta),
                         "plain_error_mean": float(np.mean(plain_errors[j])),
                         "modified_error_mean": float(np.mean(modified_errors[j])),
                         "plain_errors": plain_errors[j], "modified_errors": modified_errors[j]})
        plain_slopes = [_slope(etas, [e[i] for e in plain_errors]) for i in range(cfg.instances)]
        modified_slopes = [_slope(etas, [e[i] for e in modified_errors]) for i in range(cfg.instances)]
        (pm, ps), (mm, ms) = _mean_stderr(plain_slopes), _mean_stderr(modified_slopes)
        fits.append({"problem": problem, "instances": cfg.instances,
                     "plain_slope_mean": pm, "plain_slope_stderr": ps, "plain_slopes": plain_slopes,
                     "modified_slope_mean": mm, "modified_slope_stderr": ms, "modified_slopes": modified_slopes})
    return {"rows": rows, "fits": fits, "ode_check": ode_check}


# ==================================================================================================
# Registry
# ==================================================================================================
def _raise(problems: list[str]) -> None:
    if problems:
        raise GenbenchError("; ".join(problems))


_PROBLEMS = {"variance": _variance_problems, "hubness": _hubness_problems, "gdflow": _gdflow_problems}


def config_problems(name: str, cfg: Any, where: str) -> list[str]:
    """The bad settings of check `name`'s config, each naming its key as `where.key` (empty when fine)."""
    return _PROBLEMS[name](cfg, where)


def run_check(name: str, cfg: Any) -> dict:
    """Run theory check `name` (a key of CHECKS) with its config."""
    return CHECKS[name][1](cfg)


CHECKS: dict[str, tuple[type, Callable[[Any], dict]]] = {
    "variance": (VarianceCheckConfig, variance_check),
    "hubness": (HubnessCheckConfig, hubness_check),
    "gdflow": (GDFlowCheckConfig, gd_flow_check),
}
