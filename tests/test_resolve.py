"""genbench.resolve: each stage instance's file holds what it uses, and nothing it does not."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from genbench import GenbenchError
from genbench.config import from_raw
from genbench.resolve import (JOBS_FILE, check_job_list_unchanged, resolved_path, source_files, stage_documents,
                              write_resolved)

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def params_with(edit=None):
    raw = copy.deepcopy(RAW)
    if edit:
        edit(raw)
    return from_raw(raw)


def test_source_files_follow_imports_but_not_the_registries():
    train_glow = source_files("genbench.train", "genbench.models.flows")
    assert {"genbench/train.py", "genbench/models/flows.py", "genbench/models/__init__.py",
            "genbench/metrics/likelihood.py", "genbench/data/__init__.py", "genbench/io.py"} <= set(train_glow)
    # the registry imports every family, the data package every loader: not followed
    assert not {"genbench/models/vae.py", "genbench/models/gans.py", "genbench/data/mnist.py"} & set(train_glow)
    # bookkeeping and configuration (its values are in the resolved files) are not code dependencies
    assert not {"genbench/cli.py", "genbench/config.py", "genbench/tracking.py"} & set(train_glow)
    # fvae builds on the VAE's networks: both
    assert {"genbench/models/fvae.py", "genbench/models/vae.py"} <= set(source_files("genbench.models.fvae"))
    evaluate = source_files("genbench.evaluate")
    assert "genbench/metrics/fid.py" in evaluate  # imported inside a function: still found
    assert "genbench/report.py" not in evaluate  # the sample grids come from figures.py
    # scoring and sampling are separate modules: an edit to one does not make the other stage stale
    assert "genbench/sample.py" not in evaluate and "genbench/evaluate.py" not in source_files("genbench.sample")
    assert {"genbench/report.py", "genbench/theory_report.py", "genbench/claims.py"} <= set(source_files("genbench.report"))
    # a theory check runs its module and the k-occurrence it shares with the GANs' hubness sampler, nothing else
    theory = source_files("genbench.theory")
    assert {"genbench/theory.py", "genbench/metrics/hubness.py"} <= set(theory)
    assert not {"genbench/train.py", "genbench/models/gans.py", "genbench/models/__init__.py"} & set(theory)
    assert "genbench/metrics/hubness.py" in source_files("genbench.models.gans")


def test_a_profile_override_changes_only_that_runs_files():
    base = stage_documents(params_with())
    tweaked = stage_documents(params_with(lambda raw: raw["profiles"]["cpu"].update(
        {"runs": {"glow_ring8": {"train": {"steps": 2999}}}})))
    changed = {str(p) for p in base if base[p] != tweaked[p]}
    # a training setting: the train stage's files only, one per seed (sample and evaluate follow through
    # its outputs)
    assert changed == {str(resolved_path("train", f"glow_ring8-s{seed}")) for seed in (0, 1, 2)}


def test_defaults_are_filled_in_and_the_eval_settings_reach_only_their_stages():
    docs = stage_documents(params_with())
    train = docs[resolved_path("train", "glow_mnist-s0")]
    assert train["model_config"]["sweep_temperatures"]  # a default of the Glow config, not set in params.yaml
    assert "eval" not in train  # the evaluation protocol cannot change the trained weights
    changed = stage_documents(params_with(lambda raw: raw["eval"].update(kid_subsets=7)))
    diff = {str(p) for p in docs if docs[p] != changed[p]}
    assert diff and all(p.startswith("pipelines/resolved/evaluate/") for p in diff)


def test_writing_is_incremental_and_a_changed_job_list_stops_dvc(tmp_path):
    params = params_with()
    first = write_resolved(params, tmp_path)
    assert str(JOBS_FILE) in first["written"] and not first["removed"]
    stamp = (tmp_path / resolved_path("train", "vae_mnist-s0")).stat().st_mtime_ns
    again = write_resolved(params, tmp_path)
    assert again == {"written": [], "removed": []}
    check_job_list_unchanged(again)
    assert (tmp_path / resolved_path("train", "vae_mnist-s0")).stat().st_mtime_ns == stamp

    def drop_run(raw):
        del raw["runs"]["nice_ring8"]
        raw["repeat"]["runs"].remove("nice_ring8")
        for prof in raw["profiles"].values():
            (prof or {}).get("runs", {}).pop("nice_ring8", None)
            if "nice_ring8" in (prof or {}).get("leave_out", []):
                prof["leave_out"].remove("nice_ring8")

    fewer = write_resolved(params_with(drop_run), tmp_path)
    assert str(resolved_path("train", "nice_ring8-s0")) in fewer["removed"]
    assert "nice_ring8-0" not in yaml.safe_load((tmp_path / JOBS_FILE).read_text())["jobs"]
    with pytest.raises(GenbenchError, match="run `dvc repro` again"):
        check_job_list_unchanged(fewer)


def test_the_committed_files_match_params_yaml_and_the_code():
    """pipelines/resolved/ is committed: it must be what `genbench resolve` writes from the committed
    params.yaml and source files (else dvc.yaml's job list or a stage's dependency is stale)."""
    docs = stage_documents(params_with())
    for path, doc in docs.items():
        assert json.loads((REPO / path).read_text()) == doc, f"{path} is stale: run `genbench resolve`"
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "pipelines/resolved").rglob("*.json")}
    assert on_disk == {str(p) for p in docs}
