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
    curves = write_curves(SimpleNamespace(jobs=lambda: [("a", 0), ("b", 0)]), tmp_path / "curves")
    assert set(curves) == {"a-s0", "b-s0"}
    plot_curves(curves, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
