"""The report survives what runs leave behind."""
from __future__ import annotations

from types import SimpleNamespace


def test_a_run_that_diverged_before_its_first_log_row_does_not_break_the_curves(tmp_path, monkeypatch):
    """stats.jsonl holds only the divergence record (no loss row): its curve CSV is empty, and the
    curves figure is still drawn (pandas' EmptyDataError used to stop the report half-written)."""
    from genbench.report import plot_curves, write_curves

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a-s0").mkdir(parents=True)
    (tmp_path / "runs" / "a-s0" / "stats.jsonl").write_text('{"step": 0, "diverged": true}\n')
    (tmp_path / "runs" / "b-s0").mkdir(parents=True)
    (tmp_path / "runs" / "b-s0" / "stats.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n')
    params = SimpleNamespace(jobs=lambda: [("a", 0), ("b", 0)], run=lambda name: SimpleNamespace(model="vae"))
    curves = write_curves(params, tmp_path / "curves")
    assert set(curves) == {"a-s0", "b-s0"}
    plot_curves(curves, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_the_report_is_replaced_as_a_whole_or_not_at_all(tmp_path, monkeypatch):
    """A report that fails half-way (after writing some files) leaves the previous report byte-identical;
    a finished one replaces it whole; a kill between the swap's two renames is repaired by the next build."""
    import pytest

    import genbench.report as report

    out = tmp_path / "reports"
    out.mkdir()
    (out / "leaderboard.md").write_text("old board\n")
    (out / "figures").mkdir()
    (out / "figures" / "kept.png").write_bytes(b"png")

    def half_then_fail(params, staging):
        (staging / "leaderboard.md").write_text("half-written\n")
        raise RuntimeError("a figure failed")

    monkeypatch.setattr(report, "_build", half_then_fail)
    with pytest.raises(RuntimeError):
        report.build(None, out)
    assert (out / "leaderboard.md").read_text() == "old board\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]

    def complete(params, staging):
        assert (staging / "figures" / "kept.png").read_bytes() == b"png"  # the last report's figures
        (staging / "leaderboard.md").write_text("new board\n")
        return "table"

    monkeypatch.setattr(report, "_build", complete)
    assert report.build(None, out) == "table"
    assert (out / "leaderboard.md").read_text() == "new board\n"
    out.rename(tmp_path / ".reports.old")  # killed after moving the old report aside
    assert report.build(None, out) == "table" and (out / "leaderboard.md").read_text() == "new board\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


def test_a_pending_job_without_metrics_has_no_row_and_any_other_missing_metrics_file_is_an_error(tmp_path, monkeypatch):
    """pipelines/stale.yaml may list a job that has not run yet (a run's remaining seeds): the report shows the
    seeds that ran; a missing metrics file of a job not listed there stays an error."""
    import pytest

    from genbench.io import write_json
    from genbench.report import aggregate, collect

    from .conftest import load_tiny

    params = load_tiny()
    jobs = [f"{run}-s{seed}" for run, seed in params.jobs() if run == "vae_mnist"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        collect(params, pending=set())
    pending = {f"{run}-s{seed}" for run, seed in params.jobs()}
    assert collect(params, pending) == []
    write_json(f"metrics/{jobs[0]}.json", {"model": "vae", "dataset": "mnist", "status": "diverged",
                                          "diverged_at_step": 7})
    rows = collect(params, pending)
    assert [r["run"] for r in rows] == ["vae_mnist"] and aggregate(rows)["seeds"].tolist() == [1]
