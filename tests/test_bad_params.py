"""`genbench validate` refuses bad params files: variants of the committed params.yaml, each one small edit
away from it, exit with status 2, name the offending key, and write nothing (a finished run planted in the
working directory keeps its bytes). Every committed profile still validates."""
from __future__ import annotations

import copy
import math

import pytest
import yaml

from genbench.cli import main
from genbench.config import load

from .conftest import CONFIGS, REPO

TEXT = (REPO / "params.yaml").read_text()
RAW = yaml.safe_load(TEXT)
NAN, INF = math.nan, math.inf
OUTCOME = b'{"status": "finished", "steps": 6000}\n'  # a planted finished run: must keep its bytes
TOY_TRAIN = RAW["runs"]["nice_ring8"]["train"]  # an alias shared by the toy flows


def _set(raw: dict, dotted: str, value) -> None:
    """raw[a][b]... = value, copying each mapping on the way (YAML aliases share them between runs)."""
    *path, last = dotted.split(".")
    node = raw
    for key in path:
        node[key] = copy.copy(node[key])
        node = node[key]
    node[last] = value


def edit(**changes):
    """A variant of the committed params: dotted key (with '__' for '.') -> new value."""
    def build() -> bytes:
        raw = copy.deepcopy(RAW)
        for dotted, value in changes.items():
            _set(raw, dotted.replace("__", "."), value)
        return yaml.safe_dump(raw, sort_keys=False).encode()
    return build


def new_run(name: str):
    """A copy of vae_mnist under another run name."""
    return edit(**{f"runs__{name}": copy.deepcopy(RAW["runs"]["vae_mnist"])})


def new_dataset(name: str):
    return edit(**{f"data__datasets__{name}": {"val_size": 5000}})


VAE_STEPS_LINE = TEXT.splitlines().index("      steps: 6000") + 1  # the first `steps:` of vae_mnist


def text(old: str, new: str):
    """A variant of the committed text (its lines kept: duplicate keys), its first `old` replaced."""
    def build() -> bytes:
        assert old in TEXT, old
        return TEXT.replace(old, new, 1).encode()
    return build


def raw_bytes(old: bytes, new: bytes):
    """A variant of the committed bytes (bytes that are not UTF-8)."""
    return lambda: TEXT.encode().replace(old, new, 1)


def profile(name: str, **changes):
    """A variant whose bad value sits in profile `name` (not the selected one)."""
    return edit(**{f"profiles__{name}__{k}": v for k, v in changes.items()})


CASES = {
    # ---- non-finite and out-of-range floats, in every class of float setting ------------------------
    "train_lr_nan": (edit(runs__vae_mnist__train__lr=NAN), "runs.vae_mnist.train.lr: expected > 0 and finite, got nan"),
    "train_lr_inf": (edit(runs__vae_mnist__train__lr=INF), "runs.vae_mnist.train.lr"),
    "train_lr_minus_inf": (edit(runs__vae_mnist__train__lr=-INF), "runs.vae_mnist.train.lr"),
    "train_lr_zero": (edit(runs__vae_mnist__train__lr=0.0), "runs.vae_mnist.train.lr: expected > 0"),
    "grad_clip_nan": (edit(runs__nice_mnist__train__grad_clip=NAN), "runs.nice_mnist.train.grad_clip"),
    "grad_clip_inf": (edit(runs__nice_mnist__train__grad_clip=INF), "runs.nice_mnist.train.grad_clip"),
    "grad_clip_negative": (edit(runs__nice_mnist__train__grad_clip=-1),
                           "runs.nice_mnist.train.grad_clip: expected > 0"),
    "weight_decay_negative": (edit(runs__vae_mnist__train__weight_decay=-1), "runs.vae_mnist.train.weight_decay"),
    "weight_decay_nan": (edit(runs__vae_mnist__train__weight_decay=NAN), "runs.vae_mnist.train.weight_decay"),
    "ema_decay_nan": (edit(runs__ddpm_mnist__train__ema_decay=NAN), "runs.ddpm_mnist.train.ema_decay"),
    "classifier_lr_nan": (edit(classifier__lr=NAN), "classifier.lr"),
    "classifier_lr_inf": (edit(classifier__lr=INF), "classifier.lr"),
    "model_float_nan": (edit(runs__ddpm_mnist__model_config__ode_rtol=NAN), "runs.ddpm_mnist.model_config.ode_rtol"),
    "model_float_inf": (edit(runs__glow_mnist__model_config__temperature=INF),
                        "runs.glow_mnist.model_config.temperature"),
    "model_step_size_negative": (edit(runs__meg_mnist__model_config__mcmc_step_size=-0.01),
                                 "runs.meg_mnist.model_config.mcmc_step_size"),
    "model_list_float_nan": (edit(runs__ddpm_mnist__model_config__skip_tuning=[NAN]),
                             "runs.ddpm_mnist.model_config.skip_tuning[0]"),
    "model_probability_above_one": (edit(runs__igebm_mnist__model_config__adam_betas=[0.0, 1.5]),
                                    "runs.igebm_mnist.model_config.adam_betas[1]: expected < 1"),
    # ---- sizes, counts and seeds ---------------------------------------------------------------------
    "latent_dim_negative": (edit(runs__vae_mnist__model_config__latent_dim=-8),
                            "runs.vae_mnist.model_config.latent_dim: expected > 0, got -8"),
    "gan_hidden_zero": (edit(runs__sgan_mnist__model_config__hidden=0), "runs.sgan_mnist.model_config.hidden"),
    "model_list_int_zero": (edit(runs__ddpm_mnist__model_config__channel_mults=[1, 0]),
                            "runs.ddpm_mnist.model_config.channel_mults[1]"),
    "batch_size_beyond_data": (edit(runs__vae_mnist__train__batch_size=1_000_000_000),
                               "runs.vae_mnist.train.batch_size: expected at most 55000"),
    "toy_batch_size_beyond_data": (edit(runs__nice_ring8__train={**TOY_TRAIN, "batch_size": 45001}),
                                   "runs.nice_ring8.train.batch_size: expected at most 45000"),
    "batch_size_beyond_ci_train_limit": (edit(runs__vae_mnist__train__batch_size=3001),
                                         "(profile ci) runs.vae_mnist.train.batch_size: expected at most 3000"),
    "val_size_beyond_data": (edit(data__datasets__mnist__val_size=10**12), "data.datasets.mnist.val_size"),
    "val_size_leaves_no_training": (edit(data__datasets__digits__val_size=1500), "data.datasets.digits.val_size"),
    "toy_val_size_beyond_toy_train_size": (edit(data__toy_train_size=5000), "data.datasets.toy_ring8.val_size"),
    "val_size_zero": (edit(data__datasets__mnist__val_size=0), "data.datasets.mnist.val_size"),
    "toy_train_size_zero": (edit(data__toy_train_size=0), "data.toy_train_size"),
    "toy_test_size_negative": (edit(data__toy_test_size=-5), "data.toy_test_size"),
    "split_seed_negative": (edit(data__split_seed=-1), "data.split_seed"),
    "seed_negative": (edit(seeds=[-1]), "seeds[0]"),
    "classifier_seed_negative": (edit(classifier__seed=-3), "classifier.seed"),
    "eval_seed_negative": (edit(eval__seed=-1), "eval.seed"),
    "grid_n_zero": (edit(report__grid_n=0), "report.grid_n"),
    "num_threads_negative": (edit(harness__num_threads=-1), "harness.num_threads"),
    "num_threads_zero": (edit(harness__num_threads=0), "harness.num_threads"),
    "hubness_pool_zero": (edit(eval__hubness__pool=0), "eval.hubness.pool"),
    "run_eval_n_gen_zero": (edit(runs__ddpm_mnist__eval__n_gen=0), "runs.ddpm_mnist.eval.n_gen"),
    "extractor_runs_unknown": (edit(**{"eval__extractors__inception-v3-tf2015__runs": ["vae_mnst"]}),
                               "eval.extractors.inception-v3-tf2015.runs: 'vae_mnst' is not in runs"),
    "train_limit_zero": (edit(data__datasets__mnist__train_limit=0), "data.datasets.mnist.train_limit"),
    "bad_value_in_another_profile": (profile("gpu", runs__vae_mnist__train__lr=NAN),
                                     "(profile gpu) runs.vae_mnist.train.lr"),
    # ---- wrong types and unknown keys ------------------------------------------------------------------
    "lr_a_string": (edit(runs__vae_mnist__train__lr="fast"), "runs.vae_mnist.train.lr: expected a number"),
    "steps_a_float": (edit(runs__vae_mnist__train__steps=1.5), "runs.vae_mnist.train.steps: expected an integer"),
    "batch_size_exponent_string": (text("      batch_size: 128\n", "      batch_size: 1e9\n"),
                                   "runs.vae_mnist.train.batch_size: expected an integer"),
    "unknown_train_key": (edit(runs__vae_mnist__train__learning_rate=1e-3),
                          "runs.vae_mnist.train.learning_rate: unknown key"),
    "unknown_model_key": (edit(runs__vae_mnist__model_config__latent=8),
                          "runs.vae_mnist.model_config.latent: unknown key"),
    # ---- duplicate keys (the last would win silently) ----------------------------------------------------
    "duplicate_top_level_key": (text("profile: cpu\n", "profile: cpu\nprofile: gpu\n"),
                                "profile: duplicate key (lines 6 and 7)"),
    "duplicate_nested_key": (text("      steps: 6000\n", "      steps: 6000\n      steps: 60\n"),
                             f"runs.vae_mnist.train.steps: duplicate key (lines {VAE_STEPS_LINE} and "
                             f"{VAE_STEPS_LINE + 1})"),
    "duplicate_flow_mapping_key": (text("    mnist: {val_size: 5000}", "    mnist: {val_size: 5000, val_size: 10}"),
                                   "data.datasets.mnist.val_size: duplicate key"),
    "duplicate_in_profile": (text("    classifier: {steps: 150}", "    classifier: {steps: 150}\n    classifier: {}"),
                             "profiles.ci.classifier: duplicate key"),
    # ---- encoding -------------------------------------------------------------------------------------------
    "not_utf8": (raw_bytes(b"# genbench:", b"# genbench \xe9\xff:"), "not UTF-8 text: byte 0xe9 on line 1"),
    # ---- names: they become paths and DVC shell arguments -----------------------------------------------------
    "run_name_shell": (new_run("a;b"), "runs.a;b: expected a name of lowercase letters"),
    "run_name_subshell": (new_run("x$(touch pwned)"), "runs.x$(touch pwned)"),
    "run_name_uppercase": (new_run("VAE_mnist"), "runs.VAE_mnist"),
    "run_name_space": (new_run("vae mnist"), "runs.vae mnist"),
    "dataset_name_shell": (new_dataset("mn;ist"), "data.datasets.mn;ist: expected a name"),
    "dataset_name_uppercase": (new_dataset("MNIST"), "data.datasets.MNIST: expected a name"),
    "profile_name_space": (edit(**{"profile": "c i", "profiles__c i": {}}), "profiles.c i: expected a name"),
    "profile_name_uppercase": (edit(profile="CPU", profiles__CPU={}), "profiles.CPU: expected a name"),
    # ---- folders outside the repository -----------------------------------------------------------------------
    "data_root_parent": (edit(data__root="../outside"), "data.root: expected a folder inside the repository"),
    "data_root_absolute": (edit(data__root="/tmp/x"), "data.root"),
    "data_root_is_the_repository": (edit(data__root="."), "data.root"),
    "report_dir_parent": (edit(report__dir="../outside"), "report.dir"),
    "report_dir_absolute": (edit(report__dir="/tmp/x"), "report.dir"),
    "report_dir_escapes": (edit(report__dir="reports/../../x"), "report.dir"),
    # ---- the theory checks (genbench/theory.py) -----------------------------------------------------------------
    "theory_unknown_check": (edit(theory__pythagoras={}), "theory.pythagoras: unknown theory check"),
    "theory_unknown_key": (edit(theory__variance__replicate=10), "theory.variance"),
    "theory_sample_size_one": (edit(theory__variance__sizes=[1, 5]), "theory.variance.sizes"),
    "theory_replicates_zero": (edit(theory__variance__replicates=0), "theory.variance.replicates: expected > 0"),
    "theory_bernoulli_p_above_one": (edit(theory__variance__bernoulli_p=1.5), "theory.variance.bernoulli_p"),
    "theory_unknown_distribution": (edit(theory__variance__distributions=["cauchy"]), "theory.variance.distributions"),
    "theory_k_at_least_n": (edit(theory__hubness__ks=[2000]), "theory.hubness.ks"),
    "theory_horizon_not_a_multiple": (edit(theory__gdflow__horizon=1.001), "theory.gdflow.horizon"),
    "theory_learning_rate_nan": (edit(theory__gdflow__learning_rates=[NAN]), "theory.gdflow.learning_rates[0]"),
    # ---- the discrete families (issue 17): bad settings refused by name ------------------------------------------
    "catvae_tau_zero": (edit(runs__catvae_gs_mnist__model_config__tau=0.0), "runs.catvae_gs_mnist.model_config.tau"),
    "catvae_unknown_estimator": (edit(runs__catvae_gs_mnist__model_config__estimator="reinforce"),
                                 "runs.catvae_gs_mnist.model_config.estimator"),
    "fsq_level_one": (edit(runs__fsq1000_mnist__model_config__levels=[8, 1, 5]),
                      "runs.fsq1000_mnist.model_config.levels[1]: expected >= 2"),
    "vq_codebook_size_zero": (edit(runs__vq1024_mnist__model_config__codebook_size=0),
                              "runs.vq1024_mnist.model_config.codebook_size"),
    "glow_unknown_invconv": (edit(runs__glow_mnist__model_config__invconv="qr"), "runs.glow_mnist.model_config.invconv"),
}


@pytest.fixture
def repo_dir(tmp_path, monkeypatch):
    """A working directory holding a finished run; cwd is set to it. A valid file's harness.num_threads
    sets torch's thread count: restored for the tests that follow."""
    import torch

    threads = torch.get_num_threads()
    run = tmp_path / "runs" / "x-s0"
    run.mkdir(parents=True)
    (run / "outcome.json").write_bytes(OUTCOME)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    torch.set_num_threads(threads)


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_the_variants_are_many():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_params_are_refused_by_name_and_nothing_is_written(case, repo_dir, capsys):
    build, expect = CASES[case]
    (repo_dir / "params.yaml").write_bytes(build())
    before = _listing(repo_dir)
    assert main(["--params", "params.yaml", "validate"]) == 2
    out, err = capsys.readouterr()
    assert expect in err, err
    assert "OK" not in out and "Traceback" not in err
    assert _listing(repo_dir) == before
    assert (repo_dir / "runs" / "x-s0" / "outcome.json").read_bytes() == OUTCOME


def test_every_problem_is_listed_in_one_message(repo_dir, capsys):
    (repo_dir / "params.yaml").write_bytes(edit(runs__vae_mnist__train__lr=NAN, harness__num_threads=-1,
                                                data__root="/tmp/x", report__grid_n=0)())
    assert main(["--params", "params.yaml", "validate"]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err
    for key in ("runs.vae_mnist.train.lr", "harness.num_threads", "data.root", "report.grid_n"):
        assert key in err


@pytest.mark.parametrize("name", sorted(RAW["profiles"]))
def test_every_committed_profile_validates(name, repo_dir, capsys):
    (repo_dir / "params.yaml").write_text(TEXT.replace("profile: cpu\n", f"profile: {name}\n", 1))
    assert main(["--params", "params.yaml", "validate"]) == 0
    assert f"params.yaml: OK (profile {name};" in capsys.readouterr().out


def test_the_tiny_test_config_validates():
    assert load(CONFIGS / "tiny.yaml").profile == "tiny"


def test_a_local_dir_outside_the_repository_is_allowed(tmp_path, repo_dir):
    raw = copy.deepcopy(RAW)
    raw["data"]["datasets"]["digits"]["local_dir"] = str(tmp_path.parent)  # a raw-data folder elsewhere
    (repo_dir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert load(repo_dir / "params.yaml").data.datasets["digits"].local_dir == str(tmp_path.parent)


def test_a_corrupt_file_in_a_local_data_folder_is_refused_by_validate(repo_dir, capsys):
    """A configured local_dir is checked file by file against the sha256 pins: a flipped byte is an error
    naming the file (not 'OK' on the grounds that a download could replace it)."""
    from .test_data import fake_mnist, write_fake_mnist

    folder = repo_dir / "raw"
    folder.mkdir()
    raw = copy.deepcopy(RAW)

    write_fake_mnist(folder, fake_mnist(), gz=False)  # the real pins: fake content mismatches them
    raw["data"]["datasets"]["mnist"]["local_dir"] = str(folder)
    (repo_dir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["--params", "params.yaml", "validate"]) == 2
    err = capsys.readouterr().err
    assert "data.datasets.mnist" in err and "sha256" in err and str(folder) in err
