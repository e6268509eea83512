"""Typed configuration: params.yaml -> dataclasses, with a strict merge.

params.yaml is the one source of hyperparameters and of the evaluation protocol. It holds a base
configuration and named profiles (`ci`, `cpu`, `gpu`); the key `profile` picks one, whose values are
deep-merged over the base. Every key is checked against the dataclasses below: an unknown key, a
value of the wrong type or a bad value is reported by its dotted name with what is expected, all
problems at once, before anything runs. Every profile is checked, not only the selected one; a key given
twice in one mapping is an error (PyYAML would keep the last silently); numbers must be finite and in
range (sizes within the data's size where the config tells it); names match [a-z0-9_]+ (they become
paths and command-line arguments of DVC's shell); folders other than a dataset's `local_dir` lie inside
the repository (the folder holding the params file).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import re
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
    runs: list[str] | None = None  # the runs it scores (None: every run on an image dataset of eval.datasets)


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
    patience: int | None = None  # stop when the validation figure has not improved for this many passes
    # supervised runs: one training per learning rate here (`lr` unused); the score stage keeps the best on validation
    lr_trials: list[float] | None = None


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
    leave_out: list[str] = field(default_factory=list)  # runs this profile leaves out (a smoke profile's budget)
    # the theory checks (genbench/theory.py): check name -> its settings; one `theory` stage each
    theory: dict[str, dict[str, Any]] = field(default_factory=dict)
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


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    """A config dataclass's field types, evaluated once per process (params.yaml builds ~1000 instances)."""
    return typing.get_type_hints(cls)


def from_dict(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """Build dataclass `cls` from a mapping; unknown and missing keys are problems."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{where or 'params'}: expected a mapping, got {data!r}")
        return None
    hints = _type_hints(cls)
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
class _UniqueKeys:
    """A YAML safe loader that records every key given twice in one mapping, by its dotted path and both
    line numbers (PyYAML keeps the last one silently). A merge key (`<<`) may still override."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[str] = []
        self._paths: dict[int, str] = {}  # id(node) -> dotted path, set by the mapping holding it

    def construct_mapping(self, node, deep=False):
        path, seen = self._paths.get(id(node), ""), {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            where = f"{path}.{key}" if path else str(key)
            self._paths.setdefault(id(value_node), where)
            if key in seen:
                self.duplicates.append(f"{where}: duplicate key (lines {seen[key]} and {line}); "
                                       "the last one would win silently: keep one")
            seen.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


class UniqueKeyLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """LibYAML's parser where PyYAML has it (its wheels do): every stage reads params.yaml, and the pure-Python
    parser took ~0.4 s of each stage's start; the mappings are built by the same Python constructor."""


class _QuotingLoader(_UniqueKeys, yaml.SafeLoader):
    """The pure-Python parser, for the error message only: it quotes the offending line, LibYAML gives only
    the line and column."""


def read_raw(path: str | Path = DEFAULT_PARAMS) -> dict:
    path = Path(path)
    if not path.exists():
        raise GenbenchError(f"{path} not found: run from the repository root or pass --params PATH")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise GenbenchError(f"{path} is not UTF-8 text: byte {data[exc.start]:#04x} on line {line}; "
                            "save it as UTF-8") from None
    except OSError as exc:
        raise GenbenchError(f"{path} cannot be read: {exc.strerror or exc}") from None
    loader = UniqueKeyLoader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        try:
            _QuotingLoader(text).get_single_data()
        except yaml.YAMLError as quoted:
            exc = quoted
        raise GenbenchError(f"{path} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise GenbenchError(_format(loader.duplicates, str(path)))
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
    repo = Path(source).parent  # the repository: paths from params must stay inside it
    params, problems = _checked(merged, repo, check_data)
    # Every profile, not only the selected one, must hold valid keys, types and values; a problem of
    # the base configuration is reported once (as the selected profile's).
    for pname, override in raw["profiles"].items():
        if pname == raw["profile"]:
            continue
        if override is not None and not isinstance(override, dict):
            problems.append(f"profiles.{pname}: expected a mapping, got {override!r}")
            continue
        _, trial = _checked(deep_merge(raw, override or {}), repo, False)
        problems.extend(f"(profile {pname}) {p}" for p in trial if p not in problems)
    problems.extend(dead_overrides(raw["profiles"]))
    if problems:
        raise GenbenchError(_format(problems, source))
    return params


def dead_overrides(profiles: dict) -> list[str]:
    """A profile's override of a run it also leaves out never applies: dead configuration, and usually a
    mistake (a run meant to stay, or an override left behind), so it is refused by name."""
    problems = []
    for pname, override in profiles.items():
        runs, leave_out = (override or {}).get("runs"), (override or {}).get("leave_out")
        if isinstance(runs, dict) and isinstance(leave_out, list):
            problems.extend(f"profiles.{pname}.runs.{name}: overrides a run that profiles.{pname}.leave_out "
                            f"leaves out (it never applies); remove the override or the leave_out entry"
                            for name in runs if name in leave_out)
    return problems


def _checked(merged: dict, repo: Path, check_data: bool) -> tuple[Params, list[str]]:
    problems: list[str] = []
    params = from_dict(Params, merged, "", problems)
    if not problems:
        unknown = [name for name in params.leave_out if name not in params.runs]
        problems.extend(f"leave_out: {name!r} is not a run; known runs: {', '.join(sorted(params.runs))}"
                        for name in unknown)
        params.runs = {name: run for name, run in params.runs.items() if name not in params.leave_out}
        params.repeat.runs = [name for name in params.repeat.runs if name not in params.leave_out]
    if not problems:
        problems.extend(semantic_problems(params, check_data=check_data, repo=repo))
    return params, problems


# --------------------------------------------------------------------------------------------------
# Value checks: each appends "<dotted key>: expected ..., got ..." to `problems`
# --------------------------------------------------------------------------------------------------
NAME = re.compile(r"[a-z0-9_]+")  # run, dataset and profile names: paths and DVC shell arguments

# Training examples of the official training splits (genbench/data; the toys': data.toy_train_size),
# before the validation split is carved from them.
OFFICIAL_TRAIN_SIZE = {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000, "digits": 1500}

# model_config (the families' dataclasses in genbench/models/*.py): every int is a size, count or number
# of steps (>= 1) but these, where 0 has a meaning ("0: no heads", "0: F2 = identity", Glow's default
# of no residual blocks, "0: no MALA samples"); every float is finite and >= 0, > 0 for rates, tolerances
# and step sizes (names ending so), < 1 for probabilities and coefficients below one.
# The theory checks' settings (genbench/theory.py) follow the same rules.
MODEL_ZERO_OK = {"moment_head_steps", "flow_layers", "res_blocks", "mcmc_steps", "task_seed", "binarize_seed", "seed"}
MODEL_POSITIVE = ("lr", "rtol", "atol", "eps", "beta_start", "beta_end", "step_size", "points_box",
                  "logit_alpha", "lipschitz_coeff", "sigma", "tau", "taus", "learning_rates", "horizon")
MODEL_AT_LEAST_TWO = {"levels", "classes"}   # FSQ's levels per channel, a categorical's classes
MODEL_BELOW_ONE = {"beta_start", "beta_end", "dropout", "restart_prob", "adam_betas", "lipschitz_coeff",
                   "logit_alpha", "bernoulli_p"}


def _positive(problems: list[str], where: str, value: Any, allow_zero: bool = False) -> None:
    """None passes; else > 0 (>= 0 with allow_zero), and finite (a float's NaN and inf fail)."""
    if value is None:
        return
    finite = isinstance(value, int) or math.isfinite(value)
    if not finite or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        problems.append(f"{where}: expected {bound}{'' if isinstance(value, int) else ' and finite'}, got {value!r}")


def _below_one(problems: list[str], where: str, value: Any) -> None:
    if value is not None and math.isfinite(value) and value >= 1:
        problems.append(f"{where}: expected < 1, got {value!r}")


def _at_most(problems: list[str], where: str, value: int, limit: int | None, what: str) -> None:
    if limit is not None and value > limit:
        problems.append(f"{where}: expected at most {limit} ({what}), got {value!r}")


def _name(problems: list[str], where: str, name: str) -> bool:
    if NAME.fullmatch(name):
        return True
    problems.append(f"{where}: expected a name of lowercase letters, digits and '_' ([a-z0-9_]+), got {name!r}")
    return False


def _inside(problems: list[str], where: str, value: str, repo: Path) -> None:
    """A folder setting must lie inside the repository (below it, not the repository itself)."""
    base = os.path.abspath(repo)
    target = os.path.normpath(os.path.join(base, value))
    if not value or target == base or os.path.commonpath([base, target]) != base:
        problems.append(f"{where}: expected a folder inside the repository ({base}), got {value!r}")


def _model_value_problems(config_cls: type, raw: dict, where: str) -> list[str]:
    """Range checks of a run's model_config by field name (MODEL_* above); its keys and types are
    checked by the family's ModelSpec.config_problems."""
    trial: list[str] = []
    cfg = from_dict(config_cls, raw, where, trial)
    if trial or cfg is None:
        return []
    problems: list[str] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) \
            else [(None, value)]
        for key, v in items:
            at = f"{where}.{f.name}" + ("" if key is None else f"[{key}]" if isinstance(key, int) else f".{key}")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            zero_ok = f.name in MODEL_ZERO_OK if isinstance(v, int) else not f.name.endswith(MODEL_POSITIVE)
            _positive(problems, at, v, allow_zero=zero_ok)
            if f.name in MODEL_AT_LEAST_TWO and isinstance(v, int) and v == 1:
                problems.append(f"{at}: expected >= 2, got {v!r}")
            if f.name in MODEL_BELOW_ONE:
                _below_one(problems, at, v)
    return problems


def semantic_problems(params: Params, *, check_data: bool = False, repo: str | Path = ".") -> list[str]:
    """Values that type-check but make no sense: unknown names, non-positive sizes, ...; `repo`: the
    folder that path settings must stay inside (the one holding the params file)."""
    from genbench import data as data_registry
    from genbench.models import MODELS

    problems: list[str] = []
    for name in params.profiles:
        _name(problems, f"profiles.{name}", str(name))
    if not params.seeds:
        problems.append("seeds: expected at least one seed")
    if len(set(params.seeds)) != len(params.seeds):
        problems.append(f"seeds: duplicate seeds in {params.seeds}")
    for key, seeds in (("seeds", params.seeds), ("repeat.seeds", params.repeat.seeds)):
        for i, seed in enumerate(seeds):
            _positive(problems, f"{key}[{i}]", seed, allow_zero=True)
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
    d = params.data
    _inside(problems, "data.root", d.root, repo)
    _positive(problems, "data.split_seed", d.split_seed, allow_zero=True)
    _positive(problems, "data.toy_train_size", d.toy_train_size)
    _positive(problems, "data.toy_test_size", d.toy_test_size)
    train_size: dict[str, int] = {}  # training examples after the validation split and train_limit, where known
    for name, opts in d.datasets.items():
        if _name(problems, f"data.datasets.{name}", name) and name not in data_registry.DATASETS:
            problems.append(
                f"data.datasets.{name}: unknown dataset; expected one of: {', '.join(sorted(data_registry.DATASETS))}"
            )
        info = data_registry.DATASETS.get(name)
        if info and info.kind == "pairs":  # the official dev set is the validation split
            if opts.val_size != 0:
                problems.append(f"data.datasets.{name}.val_size: must be 0 (the official dev set validates), "
                                f"got {opts.val_size!r}")
        else:
            _positive(problems, f"data.datasets.{name}.val_size", opts.val_size)
        _positive(problems, f"data.datasets.{name}.train_limit", opts.train_limit)
        _positive(problems, f"data.datasets.{name}.test_limit", opts.test_limit)
        if opts.local_dir is not None and not Path(opts.local_dir).is_dir():
            problems.append(f"data.datasets.{name}.local_dir: folder {opts.local_dir!r} does not exist")
        official = d.toy_train_size if info and info.kind == "points" else OFFICIAL_TRAIN_SIZE.get(name)
        if official is not None and official > 0:
            _at_most(problems, f"data.datasets.{name}.val_size", opts.val_size, official - 1,
                     f"the training split of '{name}' has {official} examples: the rest trains")
            official -= opts.val_size
        known = [n for n in (official, opts.train_limit) if n is not None]
        if known and min(known) > 0:
            train_size[name] = min(known)
    for key in ("steps", "batch_size"):
        _positive(problems, f"classifier.{key}", getattr(params.classifier, key))
    _positive(problems, "classifier.lr", params.classifier.lr)
    _positive(problems, "classifier.seed", params.classifier.seed, allow_zero=True)
    _positive(problems, "harness.num_threads", params.harness.num_threads)
    _inside(problems, "report.dir", params.report.dir, repo)
    _positive(problems, "report.grid_n", params.report.grid_n)
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
        for run_name in opts.runs or []:
            if run_name not in params.runs:
                problems.append(f"eval.extractors.{ex}.runs: '{run_name}' is not in runs")
    for key in ("kid_subsets", "kid_subset_size", "prc_neighborhood",
                "feature_batch_size", "likelihood_n", "iwae_k", "sample_batch_size"):
        _positive(problems, f"eval.{key}", getattr(params.eval, key))
    _positive(problems, "eval.seed", params.eval.seed, allow_zero=True)
    for run_name, run in params.runs.items():
        where = f"runs.{run_name}"
        _name(problems, where, run_name)
        supervised = run.model in MODELS and hasattr(MODELS[run.model].cls, "task_data")  # genbench.models.accuracy
        if run.model not in MODELS:
            problems.append(f"{where}.model: unknown model {run.model!r}; expected one of: {', '.join(sorted(MODELS))}")
        else:
            spec = MODELS[run.model]
            problems.extend(spec.config_problems(run.model_config, f"{where}.model_config"))
            problems.extend(_model_value_problems(spec.config_cls, run.model_config, f"{where}.model_config"))
            if run.dataset in data_registry.DATASETS and data_registry.DATASETS[run.dataset].kind not in spec.data_kinds:
                problems.append(
                    f"{where}.dataset: model {run.model!r} takes {'/'.join(spec.data_kinds)} data, "
                    f"'{run.dataset}' is {data_registry.DATASETS[run.dataset].kind} data"
                )
        if run.dataset not in params.data.datasets:
            problems.append(f"{where}.dataset: '{run.dataset}' is not prepared; add it under data.datasets")
        elif data_registry.DATASETS.get(run.dataset) and data_registry.DATASETS[run.dataset].kind == "image" \
                and run.dataset not in params.eval.datasets and not supervised:
            problems.append(f"{where}.dataset: '{run.dataset}' must be listed in eval.datasets to be scored")
        t = run.train
        for key in ("steps", "batch_size", "checkpoint_every", "log_every", "val_n"):
            _positive(problems, f"{where}.train.{key}", getattr(t, key))
        _positive(problems, f"{where}.train.val_every", t.val_every, allow_zero=True)
        _positive(problems, f"{where}.train.patience", t.patience)
        if t.patience is not None and not t.val_every:
            problems.append(f"{where}.train.patience: needs validation passes; set train.val_every")
        _positive(problems, f"{where}.train.lr", t.lr)
        for i, lr in enumerate(t.lr_trials or []):
            _positive(problems, f"{where}.train.lr_trials[{i}]", lr)
        representation = run.model in MODELS and hasattr(MODELS[run.model].cls, "representation_task")
        if t.lr_trials is not None and not (supervised and not representation and t.lr_trials):
            problems.append(f"{where}.train.lr_trials: expected a non-empty list, and only for a supervised model "
                            f"(classify, multilabel); got {t.lr_trials!r} for model {run.model!r}")
        _positive(problems, f"{where}.train.weight_decay", t.weight_decay, allow_zero=True)
        _positive(problems, f"{where}.train.grad_clip", t.grad_clip)
        if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
            problems.append(f"{where}.train.ema_decay: expected a number in (0, 1), got {t.ema_decay!r}")
        _at_most(problems, f"{where}.train.batch_size", t.batch_size, train_size.get(run.dataset),
                 f"the training examples of '{run.dataset}' after val_size and train_limit")
        _positive(problems, f"{where}.eval.n_gen", run.eval.n_gen)
        _positive(problems, f"{where}.eval.likelihood_n", run.eval.likelihood_n)
    problems.extend(theory_problems(params.theory))
    if check_data and not problems:
        for name, opts in params.data.datasets.items():
            problem = _availability_problem(name, opts, allow_download=params.data.allow_download)
            if problem:
                problems.append(f"data.datasets.{name}: {problem}")
    return problems


def theory_problems(theory: dict[str, dict[str, Any]]) -> list[str]:
    """`theory.<check>`: a known check, its keys and types (the check's config dataclass), its values by the
    model_config rules, then the check's own constraints (genbench.theory.config_problems)."""
    from genbench.theory import CHECKS, config_problems

    problems: list[str] = []
    for name, raw in theory.items():
        where = f"theory.{name}"
        if name not in CHECKS:
            problems.append(f"{where}: unknown theory check; expected one of: {', '.join(sorted(CHECKS))}")
            continue
        config_cls = CHECKS[name][0]
        typed: list[str] = []
        cfg = from_dict(config_cls, raw or {}, where, typed)
        problems.extend(typed)
        if not typed:
            ranged = _model_value_problems(config_cls, raw or {}, where)
            problems.extend(ranged)
            if not ranged:
                problems.extend(config_problems(name, cfg, where))
    return problems


def _availability_problem(name: str, opts: DatasetOptions, *, allow_download: bool) -> str | None:
    """Can the raw files of `name` be found (locally or in a package) or else downloaded?"""
    import sys

    from genbench.data import DATASETS, sources

    module = sys.modules[DATASETS[name].loader.__module__]
    if not hasattr(module, "SOURCE"):  # generated, or bundled with a Python package
        return None
    local = Path(opts.local_dir) if opts.local_dir else None
    try:  # every file found is checked against its sha256 pin
        sources.resolve(module.SOURCE, local_dir=local, allow_download=False)
    except sources.RawFilesNotFound as exc:
        if allow_download and module.SOURCE.base_url:
            return None  # will be downloaded by `genbench prepare`
        return f"dataset missing: {exc}"
    except GenbenchError as exc:  # a corrupt file, or a configured folder that is wrong: no download fixes it
        return str(exc)
    return None
