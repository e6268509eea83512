"""params.yaml: strict typed merge, profiles, and a corpus of bad files each refused by name."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genbench import GenbenchError
from genbench.config import deep_merge, load

from .conftest import CONFIGS, REPO

BAD = sorted((CONFIGS / "bad").glob("*.yaml"))


def test_repository_params_are_valid_in_every_profile(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for profile in raw["profiles"]:
        path = tmp_path / f"{profile}.yaml"
        path.write_text(yaml.safe_dump({**raw, "profile": profile}))
        params = load(path)
        assert params.profile == profile
        assert params.jobs()


def test_ci_profile_keeps_every_model_family_and_data_kind_it_leaves_out_runs_of(tmp_path):
    """The `ci` profile leaves runs out to fit CI's budget, never a whole model family: each family of the
    cpu profile keeps a run, and one with image runs keeps an image run (the convolutional path) in ci."""
    from genbench.data import info as dataset_info

    raw = yaml.safe_load((REPO / "params.yaml").read_text())

    def families(profile: str) -> dict[str, set[str]]:
        path = tmp_path / f"{profile}.yaml"
        path.write_text(yaml.safe_dump({**raw, "profile": profile}))
        params = load(path)
        kinds: dict[str, set[str]] = {}
        for run, _seed in params.jobs():
            spec = params.run(run)
            kinds.setdefault(spec.model, set()).add(dataset_info(spec.dataset).kind)
        return kinds

    # GAN objectives whose image networks and image pipeline are SGAN's (only the loss differs): params.yaml
    # runs them on the ring in ci
    ring_only = {"wgan_gp", "wgan_div", "gan_qp"}
    cpu, ci = families("cpu"), families("ci")
    assert set(ci) == set(cpu), f"families with no ci run: {sorted(set(cpu) - set(ci))}"
    for model, kinds in cpu.items():
        if "image" in kinds and model not in ring_only:
            assert "image" in ci[model], f"{model}: no image run in the ci profile"
    assert all("image" in ci["sgan"] and "points" in ci[m] for m in ring_only)


def test_profile_is_merged_over_the_base(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = "ci"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    params = load(path)
    ci = raw["profiles"]["ci"]["runs"]["vae_mnist"]["train"]
    assert params.runs["vae_mnist"].train.steps == ci["steps"]
    # untouched keys keep the base value
    assert params.runs["vae_mnist"].train.lr == raw["runs"]["vae_mnist"]["train"]["lr"]
    assert params.runs["vae_mnist"].model_config == raw["runs"]["vae_mnist"]["model_config"]


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": 2}}
    out = deep_merge(base, {"a": {"b": 5}})
    assert out == {"a": {"b": 5, "c": 2}} and base == {"a": {"b": 1, "c": 2}}


def test_int_is_accepted_where_a_float_is_expected(tmp_path):
    raw = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    raw["runs"]["vae_mnist"]["train"]["lr"] = 1
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load(path).runs["vae_mnist"].train.lr == 1.0


def test_the_bad_corpus_is_large_enough():
    assert len(BAD) >= 10


def _materialise(path: Path, tmp_path: Path) -> tuple[Path, str]:
    text = path.read_text()
    expect = text.splitlines()[0].removeprefix("# expect:").strip()
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    out = tmp_path / "params.yaml"
    out.write_text(text.replace("EMPTY_DIR", str(empty)))
    return out, expect


@pytest.mark.parametrize("bad", BAD, ids=[p.stem for p in BAD])
def test_bad_params_are_refused_by_name(bad, tmp_path):
    path, expect = _materialise(bad, tmp_path)
    with pytest.raises(GenbenchError) as info:
        load(path, check_data=True)
    assert expect in str(info.value), str(info.value)


@pytest.mark.parametrize("bad", BAD[:3], ids=[p.stem for p in BAD[:3]])
def test_validate_command_exits_non_zero_and_writes_nothing(bad, tmp_path):
    path, expect = _materialise(bad, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run([sys.executable, "-m", "genbench.cli", "--params", str(path), "validate"],
                          cwd=tmp_path, capture_output=True, text=True, env={"GENBENCH_TRACKING": "off",
                                                                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_every_problem_is_reported_at_once(tmp_path):
    raw = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    raw["runs"]["vae_mnist"]["train"]["steps"] = "x"
    raw["harness"]["device"] = "tpu"
    raw["bogus"] = 1
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(GenbenchError) as info:
        load(path)
    message = str(info.value)
    assert "3 problem(s)" in message
    for key in ("runs.vae_mnist.train.steps", "harness.device", "bogus"):
        assert key in message


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(GenbenchError, match="not valid YAML"):
        load(bad)
    # params.yaml is parsed by LibYAML, whose errors give only line and column: the message still quotes the
    # offending line, as PyYAML's own parser does
    bad.write_text("seeds: [0]\nruns:\n  a: [1, 2\n  b: 3\n")
    with pytest.raises(GenbenchError, match="not valid YAML") as info:
        load(bad)
    assert "line 3" in str(info.value) and "a: [1, 2" in str(info.value)
    with pytest.raises(GenbenchError, match="not found"):
        load(tmp_path / "missing.yaml")
