"""`genbench resolve`: what each stage instance uses, one small file per stage, so that DVC and
Snakemake re-run a stage when, and only when, something it uses changed.

    pipelines/resolved/jobs.yaml               the DAG's lists (jobs with their dataset, datasets),
                                                read by dvc.yaml's `vars` and by the Snakefile
    pipelines/resolved/<stage>/<name>.json     one per stage instance: the settings it reads, fully
                                                resolved (the profile merged, every default filled in),
                                                and the sha256 of every genbench source file it imports

A stage instance depends on its file (plus its data and upstream outputs) instead of on whole
sections of params.yaml and whole code folders: editing one run's override in a profile changes that
run's files only; editing one model family's module changes the files of that family's jobs only; a
change to report.py changes report.json only.

The source files a stage uses are found statically: the stage's entry modules (and, for a job, its
model family's module), then every `genbench` module they import, anywhere in the file (lazy imports
included), transitively. Two kinds of edges are not followed: a registry package's imports of its
members (genbench.models imports every family to register it; genbench.data every dataset loader), and
modules whose effect is already in the resolved values or is bookkeeping (command-line parsing,
configuration types and defaults, paths, MLflow tracking): CODE_NOT_FOLLOWED.
"""
from __future__ import annotations

import ast
import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from genbench import GenbenchError
from genbench.config import Params
from genbench.layout import STALE_JOBS, shipped_classifier

RESOLVED_DIR = Path("pipelines/resolved")
JOBS_FILE = RESOLVED_DIR / "jobs.yaml"
PACKAGE_DIR = Path(__file__).resolve().parent

# Modules whose edits cannot change a figure except through the resolved values (config: types and
# defaults, which the files hold filled in), or that only name paths, parse the command line or track.
CODE_NOT_FOLLOWED = ("genbench", "genbench.cli", "genbench.config", "genbench.layout", "genbench.tracking",
                     "genbench.resolve", "genbench.bench")

# The modules each stage runs (genbench.cli calls into these); a job's stages add its family module.
STAGE_ENTRIES = {
    "prepare": ("genbench.data",),
    "weights": ("genbench.metrics.fid",),
    "classifier": ("genbench.metrics.classifier", "genbench.data"),
    "refstats": ("genbench.refstats",),
    "train": ("genbench.train",),
    "sample": ("genbench.sample",),  # `genbench sample`, and the drawing half of the evaluate stage
    "evaluate": ("genbench.sample", "genbench.evaluate"),  # draws the samples (unless current), scores them
    "score": ("genbench.score",),  # (a supervised job's `fit` stage: genbench.train and its task module)
    "report": ("genbench.report",),
    "theory": ("genbench.theory",),
}


def resolved_path(stage: str, name: str | None = None) -> Path:
    return RESOLVED_DIR / stage / f"{name}.json" if name else RESOLVED_DIR / f"{stage}.json"


# --------------------------------------------------------------------------------------------------
# The source files a module uses (static import graph of the genbench package)
# --------------------------------------------------------------------------------------------------
def _module_file(module: str) -> Path | None:
    rel = Path(*module.split("."))
    for candidate in (PACKAGE_DIR.parent / rel / "__init__.py", PACKAGE_DIR.parent / rel.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _imports(module: str) -> tuple[str, ...]:
    """genbench modules that `module` imports anywhere in its file, with their parent packages."""
    path = _module_file(module)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from genbench.metrics import fid` imports the module genbench.metrics.fid
            names = [f"{node.module}.{a.name}" if _module_file(f"{node.module}.{a.name}") else node.module
                     for a in node.names]
        for name in names:
            if name == "genbench" or name.startswith("genbench."):
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if _module_file(".".join(parts[:i])))
    found.discard(module)
    return tuple(sorted(found))


def loader_module(dataset: str) -> str:
    loader = __import__("genbench.data", fromlist=["info"]).info(dataset).loader
    return getattr(loader, "func", loader).__module__  # the 2-D toys' loaders are functools.partial


def _registry_members() -> dict[str, set[str]]:
    """Registry packages and the member modules they import only to register them."""
    from genbench.data import DATASETS
    from genbench.models import MODELS

    return {"genbench.models": {spec.cls.__module__ for spec in MODELS.values()},
            "genbench.data": {loader_module(name) for name in DATASETS}}


def source_files(*entries: str) -> list[str]:
    """Repository-relative paths of the genbench files the entry modules use (see module doc)."""
    members = _registry_members()
    seen: set[str] = set()
    todo = [m for m in entries]
    while todo:
        module = todo.pop()
        if module in seen or module in CODE_NOT_FOLLOWED:
            continue
        seen.add(module)
        todo += [m for m in _imports(module) if m not in members.get(module, ())]
    root = PACKAGE_DIR.parent
    return sorted(str(_module_file(m).relative_to(root)) for m in seen)


# Within one resolution (stage_documents) the same entry modules and files come back hundreds of times (every
# job of a family hashes the same files): memoised there, it took `genbench resolve` on the cpu profile from 17 s
# to a few (603 code_hashes calls, 8903 file hashes, 1266 ast parses). None outside a resolution: a test that
# edits a source file and resolves again sees its new hash.
_MEMO: dict | None = None


def code_hashes(*entries: str) -> dict[str, str]:
    if _MEMO is not None and entries in _MEMO:
        return dict(_MEMO[entries])
    if _MEMO is None:
        members = _registry_members()
    else:  # (not setdefault: its argument would be computed on every call)
        if "members" not in _MEMO:
            _MEMO["members"] = _registry_members()
        members = _MEMO["members"]
    hashes = {path: _source_hash(path, members) for path in source_files(*entries)}
    if _MEMO is not None:
        _MEMO[entries] = dict(hashes)
    return hashes


def _source_hash(path: str, members: dict[str, set[str]]) -> str:
    """sha256 of a source file; a registry package's is taken without its statements that import member
    modules (they only register them, and each job hashes its own member): adding a model family or a
    dataset loader re-runs no other job."""
    import hashlib

    from genbench.io import sha256_file

    if _MEMO is not None and ("file", path) in _MEMO:
        return _MEMO[("file", path)]
    module = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    if module not in members:
        digest = sha256_file(PACKAGE_DIR.parent / path)
    else:
        text = (PACKAGE_DIR.parent / path).read_text()
        drop: set[int] = set()
        for node in ast.parse(text).body:
            if isinstance(node, ast.ImportFrom) and node.module == module and node.level == 0 \
                    and all(f"{module}.{alias.name}" in members[module] for alias in node.names):
                drop.update(range(node.lineno - 1, node.end_lineno))
        kept = "".join(line for i, line in enumerate(text.splitlines(keepends=True)) if i not in drop)
        digest = hashlib.sha256(kept.encode()).hexdigest()
    if _MEMO is not None:
        _MEMO[("file", path)] = digest
    return digest


# --------------------------------------------------------------------------------------------------
# What each stage instance reads
# --------------------------------------------------------------------------------------------------
def family_module(params: Params, run: str) -> str:
    from genbench.models import MODELS

    return MODELS[params.run(run).model].cls.__module__


def task_module(params: Params, run: str) -> str | None:
    """The module that trains and scores a run that has a `fit` stage instead of `train` and `evaluate`:
    genbench.score for the supervised models (genbench.models.accuracy: trained on labels, one training per
    learning rate in train.lr_trials), genbench.sts for the sentence-embedding ones (genbench.models.sentence:
    one BERT-flow per pooling, scored on STS-B), genbench.representation for the representation-learning ones
    (genbench.models.dim: one training, scored by probes of the frozen features); None for a generative run."""
    from genbench.models import MODELS

    cls = MODELS[params.run(run).model].cls
    if hasattr(cls, "sentence_task"):
        return "genbench.sts"
    if hasattr(cls, "representation_task"):  # before task_data: these models define it too
        return "genbench.representation"
    return "genbench.score" if hasattr(cls, "task_data") else None


def is_supervised(params: Params, run: str) -> bool:
    """Runs trained and scored by the `fit` stage (accuracy experiments, sentence embeddings, representations),
    not trained, then sampled and evaluated."""
    return task_module(params, run) is not None


def train_code(params: Params, run: str) -> dict[str, str]:
    """The source files a run's train stage uses (a scored run's trainings: its task module)."""
    extra = (task_module(params, run),) if is_supervised(params, run) else ()
    return code_hashes(*STAGE_ENTRIES["train"], *extra, family_module(params, run))


def resolved_model_config(params: Params, run: str) -> dict[str, Any]:
    """The run's model_config with every default of the model's config dataclass filled in."""
    from genbench.config import strict
    from genbench.models import MODELS

    spec = params.run(run)
    return asdict(strict(MODELS[spec.model].config_cls, spec.model_config, f"runs.{run}.model_config"))


def resolved_theory_config(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A theory check's settings with every default of its config dataclass filled in."""
    from genbench.config import strict
    from genbench.theory import CHECKS

    return asdict(strict(CHECKS[name][0], settings or {}, f"theory.{name}"))


def sample_document(params: Params, run: str, seed: int) -> dict[str, Any]:
    """What drawing a generative job's samples reads besides its trained run and its data: the job, the
    sampling settings filled in, and the source of genbench.sample and the family. The evaluate stage's
    resolved file holds these settings under `sample`; the stage keeps the samples it finds while these,
    the run and the data are unchanged (genbench.sample.inputs_digest)."""
    harness, spec = params.harness, params.run(run)
    return {"run": run, "seed": seed, "model": spec.model, "dataset": spec.dataset,
            "model_config": resolved_model_config(params, run), "run_eval": asdict(spec.eval),
            "eval": {"sample_batch_size": params.eval.sample_batch_size, "seed": params.eval.seed,
                     "hubness": asdict(params.eval.hubness) if params.eval.hubness else None,
                     "n_gen": {e: o.n_gen for e, o in params.eval.extractors.items()}},
            "grid_n": params.report.grid_n, "device": harness.device, "num_threads": harness.num_threads,
            "code": code_hashes(*STAGE_ENTRIES["sample"], family_module(params, run))}


def stage_documents(params: Params) -> dict[Path, dict[str, Any]]:
    """Every resolved file's content, by path (source hashes memoised for this call: see _MEMO)."""
    global _MEMO
    _MEMO = {}
    try:
        return _stage_documents(params)
    finally:
        _MEMO = None


def _stage_documents(params: Params) -> dict[Path, dict[str, Any]]:
    from genbench.data import info as dataset_info

    harness = params.harness
    threads = {"device": harness.device, "num_threads": harness.num_threads}
    docs: dict[Path, dict[str, Any]] = {}
    code = {stage: code_hashes(*entries) for stage, entries in STAGE_ENTRIES.items() if stage != "prepare"}

    for name, opts in params.data.datasets.items():
        toy = dataset_info(name).kind == "points"
        docs[resolved_path("prepare", name)] = {
            "dataset": name, "val_size": opts.val_size, "train_limit": opts.train_limit,
            "test_limit": opts.test_limit, "split_seed": params.data.split_seed, "root": params.data.root,
            # the 2-D toys are generated: their sizes are settings of the data
            **({"toy_train_size": params.data.toy_train_size, "toy_test_size": params.data.toy_test_size} if toy else {}),
            # where the raw files are found cannot change the prepared bytes: each is pinned by sha256
            "code": code_hashes("genbench.data", loader_module(name))}
    docs[resolved_path("weights")] = {"code": code["weights"]}
    for name in params.eval.datasets:
        shipped = shipped_classifier(name)
        docs[resolved_path("classifier", name)] = {  # a shipped ruler depends on its pin alone
            "dataset": name, **({"shipped_sha256": shipped[1]} if shipped else
                                {"classifier": asdict(params.classifier), "num_threads": harness.num_threads}),
            "code": code["classifier"]}
        docs[resolved_path("refstats", name)] = {
            "dataset": name, "reference_split": params.eval.reference_split,
            "feature_batch_size": params.eval.feature_batch_size,
            "n_ref": {e: o.n_ref for e, o in params.eval.extractors.items()}, **threads, "code": code["refstats"]}

    for run, seed in params.jobs():
        spec = params.run(run)
        family = family_module(params, run)
        model = {"run": run, "seed": seed, "model": spec.model, "dataset": spec.dataset,
                 "model_config": resolved_model_config(params, run)}
        job = f"{run}-s{seed}"
        training = {**model, "train": asdict(spec.train),
                    "harness": {**threads, "amp": harness.amp, "on_divergence": harness.on_divergence},
                    "code": train_code(params, run)}
        if is_supervised(params, run):  # `fit`: trains, then scores (its task module and family: in train_code)
            sts = task_module(params, run) == "genbench.sts"
            docs[resolved_path("fit", job)] = {**training, **({"eval_seed": params.eval.seed} if sts else {})}
            continue
        docs[resolved_path("train", job)] = training
        drawing = sample_document(params, run, seed)
        docs[resolved_path("evaluate", job)] = {
            **model, "sample": {k: v for k, v in drawing.items() if k not in model and k != "code"},
            "run_eval": asdict(spec.eval), "eval": asdict(params.eval),
            "first_seed": seed in params.seeds,  # the repeat seeds are scored with eval.repeat_extractors
            "profile": params.profile, **threads, "code": code_hashes(*STAGE_ENTRIES["evaluate"], family)}

    for name, settings in params.theory.items():  # a theory check: its settings, filled in, and its code
        docs[resolved_path("theory", name)] = {"check": name, "settings": resolved_theory_config(name, settings),
                                               **threads, "code": code["theory"]}

    docs[resolved_path("report")] = {
        "profile": params.profile, "seeds": params.seeds, "repeat": asdict(params.repeat),
        "runs": {r: {"model": c.model, "dataset": c.dataset} for r, c in params.runs.items()},
        "report": asdict(params.report), "theory": list(params.theory), "stale": stale_jobs(), "code": code["report"]}
    return docs


def stale_jobs(path: Path = STALE_JOBS) -> dict[str, Any]:
    """pipelines/stale.yaml: job -> {stages, reason} for committed figures that await a re-run."""
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def job_table(params: Params) -> dict[str, Any]:
    """The lists dvc.yaml's foreach loops read (DVC's templating cannot look a run's dataset up)."""
    from genbench.data import info as dataset_info

    jobs = {}
    for run, seed in params.jobs():
        dataset = params.run(run).dataset
        image = dataset_info(dataset).kind == "image"
        jobs[f"{run}-{seed}"] = {
            "run": run, "seed": seed, "dataset": dataset,
            # what evaluate reads besides the data: an image dataset's reference features; a 2-D toy has
            # none, so its slot names the prepared data again (DVC cannot template a list of deps)
            "features": f"artifacts/refstats/{dataset}" if image else f"{params.data.root}/{dataset}"}
    # only the datasets some job trains on or the evaluation scores are prepared
    used = {params.run(run).dataset for run, _ in params.jobs()} | set(params.eval.datasets)
    supervised = {key for key, job in jobs.items() if is_supervised(params, job["run"])}
    return {"data_root": params.data.root, "prepared": [d for d in params.data.datasets if d in used],
            "scored": list(params.eval.datasets), "jobs": jobs, "checks": list(params.theory),
            # train + evaluate (draws the samples, then scores them): the generative jobs; fit: the supervised ones
            "generative": {k: v for k, v in jobs.items() if k not in supervised},
            "supervised": {k: v for k, v in jobs.items() if k in supervised}}


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
JOBS_HEADER = ("# Written by `genbench resolve` from params.yaml (the `resolve` stage of dvc.yaml): do not edit.\n"
               "# dvc.yaml's foreach loops read these lists; the files beside it are what each stage uses.\n")


def _render(path: Path, doc: Any) -> str:
    if path.suffix == ".yaml":
        return JOBS_HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def write_resolved(params: Params, root: Path | str = ".") -> dict[str, list[str]]:
    """Bring pipelines/resolved/ in line with params: write changed files only (unchanged ones keep
    their bytes and time stamps), remove files of stages that no longer exist. Returns the changes."""
    from genbench.io import atomic_path

    root = Path(root)
    docs = {JOBS_FILE: job_table(params), **stage_documents(params)}
    changes: dict[str, list[str]] = {"written": [], "removed": []}
    for rel, doc in docs.items():
        text, path = _render(rel, doc), root / rel
        if not path.is_file() or path.read_text() != text:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            changes["written"].append(str(rel))
    wanted = {root / rel for rel in docs}
    for path in sorted((root / RESOLVED_DIR).rglob("*")):
        if path.is_file() and path not in wanted:
            path.unlink()
            changes["removed"].append(str(path.relative_to(root)))
    return changes


def check_job_list_unchanged(changes: dict[str, list[str]]) -> None:
    """Under DVC, the stage list was read from jobs.yaml before this stage ran: if it changed, the
    running `dvc repro` has the old list. Stop with what to do rather than run an outdated DAG."""
    if str(JOBS_FILE) in changes["written"]:
        raise GenbenchError(f"{JOBS_FILE} changed (a run, seed or dataset was added, removed or moved): "
                            "it has been rewritten; run `dvc repro` again to use the new stage list")
