"""The report's static site (genbench/site.py), built from a few synthetic metrics files and opened in a real
browser (headless Chromium through Selenium): every page loads without a console error, every image and link
resolves, a table sorts by the clicked column, and the overview's screenshot is kept."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import load_tiny

SAMPLERS = ("ddim-eta0", "ddim-eta1")


def _scores(fid: float, extractor: str = "classifier-mnist") -> dict:
    return {"classifier": {"fid": fid, "kid_mean": fid / 10, "kid_std": 0.5, "precision": 0.5, "recall": 0.4,
                           "kid_subset_size": 50,
                           "protocol": {"extractor": extractor, "n_gen": 100, "n_ref": 100, "reference_split": "test",
                                        "reference_sha256": "ab" * 32}}}


def _metrics(run: str, seed: int, model: str, fid: float) -> dict:
    m = {"run": run, "seed": seed, "job": f"{run}-s{seed}", "model": model, "dataset": "mnist", "status": "completed",
         "profile": "tiny", "scores": _scores(fid), "likelihood": {}, "eval_time_s": 1.0,
         "train": {"steps": 100, "parameters": 1234, "train_time_s": 10.0, "train_images_per_s": 50.0,
                   "generator_updates": None, "patience": None, "stopped_early": False},
         "sample": {"images_per_s": 100.0, "n": 100},
         "code_version": {"commit": "0" * 40, "code_dirty": False}, "versions": {"torch": "2.14.1", "genbench": "0.1.0"}}
    if model == "vae":
        m["likelihood"] = {"elbo": {"kind": "elbo", "bits_per_dim": 1.5, "stderr": 0.01, "n": 100}}
    if model == "ddpm":
        m["likelihood"] = {"vlb": {"kind": "vlb", "bits_per_dim": 2.4, "stderr": 0.03, "n": 100}}
        m["variants"] = {f"{s}_S{k}": {"sample": {"table": "steps", "sampler": s, "steps": k, "images_per_s": 10.0,
                                                  "seconds": 1.0},
                                       "scores": _scores(100.0 / k + (5 if s == "ddim-eta1" else 0))}
                         for s in SAMPLERS for k in (10, 20, 50)}
        m["nll_table"] = {f"{v}_K{k}": {"bits_per_dim": 3.0 + 10 / k + i, "stderr": 0.05, "n": 100}
                          for i, v in enumerate(("analytic-ddpm", "ddpm-beta")) for k in (10, 25, 50)}
    return m


def make_workspace(root: Path):
    """metrics, training logs, sample grids and resolved configs of the tiny profile's jobs, with FIDs that make
    the mnist table's order known (vae 50, sgan 40 / 44, ddpm 30, igebm 60)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = load_tiny()
    fids = {"vae_mnist": 50.0, "sgan_mnist": 40.0, "ddpm_mnist": 30.0, "igebm_mnist": 60.0}
    for run, seed in params.jobs():
        job = f"{run}-s{seed}"
        model = params.run(run).model
        for path, data in ((root / "metrics" / f"{job}.json", _metrics(run, seed, model, fids[run] + 4 * seed)),
                           (root / "pipelines" / "resolved" / "train" / f"{job}.json", {"run": run, "seed": seed})):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
        (root / "runs" / job).mkdir(parents=True)
        (root / "runs" / job / "stats.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 2.0 / (1 + s)}) + "\n" for s in range(0, 100, 10)))
        (root / "samples" / job).mkdir(parents=True)
        fig = plt.figure(figsize=(1, 1))
        fig.savefig(root / "samples" / job / "grid.png", dpi=28)
        plt.close(fig)
    return params


def build_site(tmp_path: Path, monkeypatch) -> Path:
    from genbench import report

    monkeypatch.chdir(tmp_path)
    params = make_workspace(tmp_path)
    report.build(params, tmp_path / "reports")
    return tmp_path / "reports"


def test_the_site_has_its_pages_and_is_byte_identical_when_rebuilt(tmp_path, monkeypatch):
    out = build_site(tmp_path, monkeypatch)
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    assert pages == ["index.html", "site/diffusion.html", "site/mnist.html", "site/runs/ddpm_mnist-s0.html",
                     "site/runs/igebm_mnist-s0.html", "site/runs/sgan_mnist-s0.html", "site/runs/sgan_mnist-s1.html",
                     "site/runs/vae_mnist-s0.html"]
    first = {p.relative_to(out): p.read_bytes() for p in [out / "index.html", *(out / "site").rglob("*")]
             if p.is_file()}
    assert any(p.suffix == ".svg" for p in first)
    svg = next(b for p, b in first.items() if p.name.endswith("-steps.svg")).decode()
    assert "<dc:date>" not in svg and "Date" not in svg
    from genbench import report

    shutil.rmtree(out / "site")   # from nothing (no kept per-job curves) ...
    report.build(load_tiny(), out)
    assert {p.relative_to(out): p.read_bytes() for p in [out / "index.html", *(out / "site").rglob("*")]
            if p.is_file()} == first
    report.build(load_tiny(), out)   # ... and over the last report (its per-job curves kept)
    assert {p.relative_to(out): p.read_bytes() for p in [out / "index.html", *(out / "site").rglob("*")]
            if p.is_file()} == first


# --------------------------------------------------------------------------------------------------
# in a browser
# --------------------------------------------------------------------------------------------------
def _browser():
    """A headless Chromium driven by Selenium; skipped (failed in CI: GENBENCH_REQUIRE_BROWSER=1) without one."""
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver_path = shutil.which("chromedriver")
    missing = [what for what, ok in (("chromium", binary), ("chromedriver (chromium-driver)", driver_path)) if not ok]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (requirements.txt)")
    if missing:
        reason = (f"no browser for the site test: {', '.join(missing)} missing; scripts/setup.sh installs Debian's "
                  "chromium and chromium-driver when run as root (apt-get install -y chromium chromium-driver)")
        if os.environ.get("GENBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _check_page(driver, page: Path) -> list[Path]:
    """Open a page; assert no console error and no broken image; return the local pages it links to."""
    driver.get(page.as_uri())
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"{page}: console errors {errors}"
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"{page}: broken images {broken}"
    links = driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    linked = []
    for href in links:
        assert href.startswith("file://"), f"{page}: a link off the site: {href}"
        target = Path(href[len("file://"):].split("#")[0])
        assert target.is_file(), f"{page}: broken link {href}"
        if target.suffix == ".html":
            linked.append(target)
    return linked


def _column(driver, table_id: str, index: int) -> list[float]:
    return driver.execute_script(
        "return Array.from(document.getElementById(arguments[0]).tBodies[0].rows)"
        ".filter(r => !r.hidden).map(r => r.cells[arguments[1]].getAttribute('data-sort'))", table_id, index)


def test_the_site_opens_in_a_browser_without_errors_and_its_tables_sort(tmp_path, monkeypatch):
    driver = _browser()
    try:
        out = build_site(tmp_path, monkeypatch)
        seen, todo = set(), [out / "index.html"]
        while todo:   # every page reachable from the overview, each opened once
            page = todo.pop()
            if page in seen:
                continue
            seen.add(page)
            todo += _check_page(driver, page)
        assert seen == set(out.rglob("*.html")), "pages not linked from the overview"

        driver.get((out / "index.html").as_uri())
        shots = Path(os.environ.get("GENBENCH_ARTIFACTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shots / "site-overview.png"))
        assert (shots / "site-overview.png").stat().st_size > 1000

        from selenium.webdriver.common.by import By

        driver.get((out / "site" / "mnist.html").as_uri())
        table = driver.find_element(By.ID, "lb-mnist")
        headers = table.find_elements(By.CSS_SELECTOR, "thead th")
        fid = next(i for i, h in enumerate(headers) if h.get_attribute("title") == "FID[classifier-mnist]")
        original = _column(driver, "lb-mnist", fid)
        headers[fid].click()
        ascending = [float(v) for v in _column(driver, "lb-mnist", fid)]
        assert ascending == sorted(ascending) and ascending[0] == 30.0 and ascending != [float(v) for v in original]
        headers[fid].click()
        descending = [float(v) for v in _column(driver, "lb-mnist", fid)]
        assert descending == sorted(descending, reverse=True)
        names = driver.execute_script("return Array.from(document.querySelectorAll('#lb-mnist tbody tr'))"
                                      ".filter(r => !r.hidden).map(r => r.cells[0].textContent)")
        assert names[0] == "igebm_mnist" and names[-1] == "ddpm_mnist"

        search = driver.find_element(By.CSS_SELECTOR, "input.filter[data-table='lb-mnist']")
        search.send_keys("sgan")
        assert driver.execute_script("return Array.from(document.querySelectorAll('#lb-mnist tbody tr'))"
                                     ".filter(r => !r.hidden).map(r => r.cells[0].textContent)") == ["sgan_mnist"]

        # the column chooser: the training group starts hidden and shows when ticked
        box = driver.find_element(By.CSS_SELECTOR, "input[data-table='lb-mnist'][data-group='train']")
        cell = driver.find_element(By.CSS_SELECTOR, "#lb-mnist th[data-g='train']")
        assert not cell.is_displayed()
        driver.find_element(By.CSS_SELECTOR, "details.chooser summary").click()
        box.click()
        assert cell.is_displayed()
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
