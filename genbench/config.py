"""Typed configuration: params.yaml -> dataclasses, with a strict merge.

params.yaml is the one source of hyperparameters and of the evaluation protocol. It holds a base
configuration and named profiles (`ci`, `cpu`, `gpu`); the key `profile` picks one, whose values are
deep-merged over the base. Every key is checked against the dataclasses below: an unknown key, a
value of the wrong type or a bad value is reported by its dotted name with what is expected, all
problems at once, before anything runs.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from genbench import GenbenchError

DEFAULT_PARAMS = Path("params.yaml")


# --------------------------------------------------------------------------------------------------
# Sections of params.yaml
# --------------------------------------------------------------------------------------------------
@dataclass
class DatasetOptions:
    val_size: int = 5000  # carved from the training split with `data.split_seed`
    train_limit: int | None = None  # truncate the training split (tiny profiles only)
    test_limit: int | None = None  # truncate the test split (tiny profiles only)
    local_dir: str | None = None  # a folder holding the raw files; else GENBENCH_DATA_DIR/<name>


@dataclass
class DataConfig:
    root: str = "data/prepared"
    allow_download: bool = True
    split_seed: int = 0
    toy_train_size: int = 50000
    toy_test_size: int = 10000
    datasets: dict[str, DatasetOptions] = field(default_factory=dict)


@dataclass
class ClassifierConfig:
    """The per-dataset domain classifier whose penultimate features give the `classifier` FID."""

    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


@dataclass
class ExtractorOptions:
    n_gen: int = 10000  # generated samples scored with this extractor
    n_ref: int | None = None  # reference images (None: the whole reference split)


@dataclass
class EvalConfig:
    datasets: list[str] = field(default_factory=list)  # image datasets scored with FID/KID/PR
    # feature extractor -> sample counts (Inception is ~50x slower than the classifier on CPU)
    extractors: dict[str, ExtractorOptions] = field(default_factory=dict)
    reference_split: Literal["test", "val"] = "test"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prc_neighborhood: int = 3
    feature_batch_size: int = 200
    likelihood_n: int | None = None  # test examples for bits/dim (None: the whole split)
    iwae_k: int = 100  # importance samples for the IWAE bound
    sample_batch_size: int = 500
    seed: int = 1234  # seeds sampling and likelihood estimation (offset by the training seed)
    hubness: HubnessConfig | None = None  # also score GAN samples drawn with the hubness prior
    # extractors that score the `repeat` seeds (None: all); the first seeds always get every extractor
    repeat_extractors: list[str] | None = None
    # extractors that score a run's variant sample sets (hubness prior, sampler and step-count cells, ...),
    # among those its seed gets (None: the same as its main set); a smoke profile keeps Inception for main rows
    variant_extractors: list[str] | None = None


@dataclass
class HarnessConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # mixed precision, used on GPU only
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    on_divergence: Literal["record", "fail"] = "record"  # record: outcome kept, exit 0
    progress: bool = True


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    checkpoint_every: int = 500
    log_every: int = 50
    val_every: int = 0  # steps between validation passes (0: only at the end)
    val_n: int = 1000  # validation examples per pass; the best-on-validation checkpoint is kept


@dataclass
class RunEvalConfig:
    """Per-run caps on the evaluation's cost (slow samplers, slow likelihoods); recorded in the protocol."""

    n_gen: int | None = None          # at most this many generated samples for every extractor
    likelihood_n: int | None = None   # at most this many test examples for the likelihoods


@dataclass
class RunConfig:
    """One model on one dataset; trained once per seed in `seeds`."""

    model: str
    dataset: str
    train: TrainConfig = field(default_factory=TrainConfig)
    model_config: dict[str, Any] = field(default_factory=dict)  # checked by the model's dataclass
    eval: RunEvalConfig = field(default_factory=RunEvalConfig)


@dataclass
class RepeatConfig:
    """Runs that vary from seed to seed (GANs) are trained again with these seeds, on top of `seeds`:
    the leaderboard shows their mean and std over all of them."""

    runs: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


@dataclass
class HubnessConfig:
    """Hubness-prior latent sampling (Liang et al. 2022) in the sample stage of latent-variable GANs:
    keep z whose k-occurrence within a pool of draws is at least `threshold`."""

    k: int = 5
    threshold: int = 50
    pool: int = 10000


@dataclass
class ReportConfig:
    dir: str = "reports"
    grid_n: int = 64


@dataclass
class Params:
    profile: str
    seeds: list[int]
    data: DataConfig
    classifier: ClassifierConfig
    eval: EvalConfig
    harness: HarnessConfig
    report: ReportConfig
    runs: dict[str, RunConfig]
    repeat: RepeatConfig = field(default_factory=RepeatConfig)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(self, name: str) -> RunConfig:
        if name not in self.runs:
            raise GenbenchError(
                f"run '{name}' is not in params.yaml `runs`; known runs: {', '.join(sorted(self.runs))}"
            )
        return self.runs[name]

    def jobs(self) -> list[tuple[str, int]]:
        """Every (run, seed) pair: one training job each (`seeds`, then `repeat.seeds` for its runs)."""
        return [(name, seed) for name in self.runs
                for seed in self.seeds + (self.repeat.seeds if name in self.repeat.runs else [])]


# --------------------------------------------------------------------------------------------------
# Strict typed conversion
# --------------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, where: str, problems: list[str]) -> Any:
    """Convert `value` to type `tp`, appending a message per problem (dotted key + expectation)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = convert(arg, value, where, trial)
            if not trial:
                return out
        problems.append(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return None
    if origin is Literal:
        if value not in typing.get_args(tp):
            problems.append(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{where}: expected {_type_name(tp)}, got {value!r}")
            return []
        (item_tp,) = typing.get_args(tp)
        return [convert(item_tp, v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected {_type_name(tp)}, got {value!r}")
            return {}
        _, val_tp = typing.get_args(tp)
        return {str(k): convert(val_tp, v, f"{where}.{k}", problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, problems)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def from_dict(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """Build dataclass `cls` from a mapping; unknown and missing keys are problems."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{where or 'params'}: expected a mapping, got {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields:
            problems.append(
                f"{prefix}{key}: unknown key; expected one of: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], f"{prefix}{name}", problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{prefix}{name}: missing; expected {_type_name(hints[name])}")
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def strict(cls: type, data: Any, where: str) -> Any:
    """from_dict that raises one GenbenchError listing every problem."""
    problems: list[str] = []
    obj = from_dict(cls, data, where, problems)
    if problems:
        raise GenbenchError(_format(problems))
    return obj


def _format(problems: list[str], source: str = "params.yaml") -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"{source} has {len(problems)} problem(s):\n{lines}"


# --------------------------------------------------------------------------------------------------
# Loading and semantic checks
# --------------------------------------------------------------------------------------------------
def read_raw(path: str | Path = DEFAULT_PARAMS) -> dict:
    path = Path(path)
    if not path.exists():
        raise GenbenchError(f"{path} not found: run from the repository root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise GenbenchError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise GenbenchError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def resolve(raw: dict) -> dict:
    """Apply the selected profile over the base configuration."""
    profiles = raw.get("profiles") or {}
    name = raw.get("profile")
    if not isinstance(profiles, dict):
        raise GenbenchError(_format([f"profiles: expected a mapping of profile names, got {profiles!r}"]))
    if name not in profiles:
        raise GenbenchError(
            _format([f"profile: expected one of {', '.join(map(repr, profiles)) or '(none defined)'}, got {name!r}"])
        )
    override = profiles[name] or {}
    if not isinstance(override, dict):
        raise GenbenchError(_format([f"profiles.{name}: expected a mapping, got {override!r}"]))
    # a profile may set `seeds` and `repeat`: dvc.yaml's loops read the resolved job list (genbench.resolve)
    for forbidden in ("profile", "profiles"):
        if forbidden in override:
            raise GenbenchError(_format([f"profiles.{name}.{forbidden}: a profile cannot set `{forbidden}`"]))
    return deep_merge(raw, override)


def load(path: str | Path = DEFAULT_PARAMS, *, check_data: bool = False) -> Params:
    """Read, merge the profile, convert strictly and check the meaning of every value."""
    return from_raw(read_raw(path), str(path), check_data=check_data)


def from_raw(raw: dict, source: str = "params.yaml", *, check_data: bool = False) -> Params:
    """`load` of an already-read params mapping (Snakemake's config, with its --config overrides)."""
    merged = resolve(raw)
    problems: list[str] = []
    # Every profile, not only the selected one, must name existing keys with the right types.
    for pname, override in raw["profiles"].items():
        if pname != raw["profile"] and isinstance(override, dict):
            trial: list[str] = []
            from_dict(Params, deep_merge(raw, override), "", trial)
            problems.extend(f"(profile {pname}) {p}" for p in trial)
    params = from_dict(Params, merged, "", problems)
    if not problems:
        problems.extend(semantic_problems(params, check_data=check_data))
    if problems:
        raise GenbenchError(_format(problems, source))
    return params


def _positive(problems: list[str], where: str, value: Any, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        problems.append(f"{where}: expected {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def semantic_problems(params: Params, *, check_data: bool = False) -> list[str]:
    """Values that type-check but make no sense: unknown names, non-positive sizes, ..."""
    from genbench import data as data_registry
    from genbench.models import MODELS

    problems: list[str] = []
    if not params.seeds:
        problems.append("seeds: expected at least one seed")
    if len(set(params.seeds)) != len(params.seeds):
        problems.append(f"seeds: duplicate seeds in {params.seeds}")
    for key in ("repeat_extractors", "variant_extractors"):
        for extractor in getattr(params.eval, key) or []:
            if extractor not in params.eval.extractors:
                problems.append(f"eval.{key}: '{extractor}' is not in eval.extractors")
    for run_name in params.repeat.runs:
        if run_name not in params.runs:
            problems.append(f"repeat.runs: '{run_name}' is not in runs")
    if params.repeat.runs and not params.repeat.seeds:
        problems.append("repeat.seeds: expected at least one seed when repeat.runs is set")
    both = set(params.seeds) & set(params.repeat.seeds)
    if both or len(set(params.repeat.seeds)) != len(params.repeat.seeds):
        problems.append(f"repeat.seeds: expected seeds not in `seeds` and without duplicates, got {params.repeat.seeds}")
    if params.eval.hubness is not None:
        for key in ("k", "threshold", "pool"):
            _positive(problems, f"eval.hubness.{key}", getattr(params.eval.hubness, key))
    for name, opts in params.data.datasets.items():
        if name not in data_registry.DATASETS:
            problems.append(
                f"data.datasets.{name}: unknown dataset; expected one of: {', '.join(sorted(data_registry.DATASETS))}"
            )
        _positive(problems, f"data.datasets.{name}.val_size", opts.val_size)
        _positive(problems, f"data.datasets.{name}.train_limit", opts.train_limit)
        _positive(problems, f"data.datasets.{name}.test_limit", opts.test_limit)
        if opts.local_dir is not None and not Path(opts.local_dir).is_dir():
            problems.append(f"data.datasets.{name}.local_dir: folder {opts.local_dir!r} does not exist")
    for key in ("steps", "batch_size"):
        _positive(problems, f"classifier.{key}", getattr(params.classifier, key))
    _positive(problems, "classifier.lr", params.classifier.lr)
    for ds in params.eval.datasets:
        if ds not in params.data.datasets:
            problems.append(f"eval.datasets: '{ds}' is not prepared; add it under data.datasets")
        elif ds in data_registry.DATASETS and data_registry.DATASETS[ds].kind != "image":
            problems.append(f"eval.datasets: '{ds}' is not an image dataset; FID needs images")
    from genbench.metrics import EXTRACTOR_NAMES as EXTRACTORS

    for ex, opts in params.eval.extractors.items():
        if ex not in EXTRACTORS:
            problems.append(f"eval.extractors.{ex}: unknown extractor; expected one of: {', '.join(EXTRACTORS)}")
        _positive(problems, f"eval.extractors.{ex}.n_gen", opts.n_gen)
        _positive(problems, f"eval.extractors.{ex}.n_ref", opts.n_ref)
    for key in ("kid_subsets", "kid_subset_size", "prc_neighborhood",
                "feature_batch_size", "likelihood_n", "iwae_k", "sample_batch_size"):
        _positive(problems, f"eval.{key}", getattr(params.eval, key))
    for run_name, run in params.runs.items():
        where = f"runs.{run_name}"
        if not run_name.replace("_", "").isalnum():
            problems.append(f"{where}: run names may hold only letters, digits and '_'")
        if run.model not in MODELS:
            problems.append(f"{where}.model: unknown model {run.model!r}; expected one of: {', '.join(sorted(MODELS))}")
        else:
            spec = MODELS[run.model]
            problems.extend(spec.config_problems(run.model_config, f"{where}.model_config"))
            if run.dataset in data_registry.DATASETS and data_registry.DATASETS[run.dataset].kind not in spec.data_kinds:
                problems.append(
                    f"{where}.dataset: model {run.model!r} takes {'/'.join(spec.data_kinds)} data, "
                    f"'{run.dataset}' is {data_registry.DATASETS[run.dataset].kind} data"
                )
        if run.dataset not in params.data.datasets:
            problems.append(f"{where}.dataset: '{run.dataset}' is not prepared; add it under data.datasets")
        elif data_registry.DATASETS.get(run.dataset) and data_registry.DATASETS[run.dataset].kind == "image" \
                and run.dataset not in params.eval.datasets:
            problems.append(f"{where}.dataset: '{run.dataset}' must be listed in eval.datasets to be scored")
        t = run.train
        for key in ("steps", "batch_size", "checkpoint_every", "log_every", "val_n"):
            _positive(problems, f"{where}.train.{key}", getattr(t, key))
        _positive(problems, f"{where}.train.val_every", t.val_every, allow_zero=True)
        _positive(problems, f"{where}.train.lr", t.lr)
        if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
            problems.append(f"{where}.train.ema_decay: expected a number in (0, 1), got {t.ema_decay!r}")
    if check_data and not problems:
        for name, opts in params.data.datasets.items():
            problem = _availability_problem(name, opts, allow_download=params.data.allow_download)
            if problem:
                problems.append(f"data.datasets.{name}: {problem}")
    return problems


def _availability_problem(name: str, opts: DatasetOptions, *, allow_download: bool) -> str | None:
    """Can the raw files of `name` be found (locally or in a package) or else downloaded?"""
    import sys

    from genbench.data import DATASETS, sources

    module = sys.modules[DATASETS[name].loader.__module__]
    if not hasattr(module, "SOURCE"):  # generated, or bundled with a Python package
        return None
    local = Path(opts.local_dir) if opts.local_dir else None
    try:
        sources.resolve(module.SOURCE, local_dir=local, allow_download=False)
    except GenbenchError as exc:
        if allow_download and module.SOURCE.base_url:
            return None  # will be downloaded by `genbench prepare`
        return f"dataset missing: {exc}"
    return None
