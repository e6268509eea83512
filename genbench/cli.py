"""`genbench <stage> ...`: names and paths only; every value comes from params.yaml.

Every stage validates params.yaml first, opens one MLflow run, writes its outputs atomically, and on a
user-fixable problem prints one line naming the cause and what to do, then exits with status 2.
`--dry-run` prints the resolved configuration the stage would use and exits.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from genbench import GenbenchError


# Progress bars (tqdm, with ETA) only for a person watching: with stdout not a terminal (CI logs, Slurm, a
# pipe) or `harness.progress: false`, no bar is drawn and each stage prints one line with its wall time.
_PROGRESS = {"bars": None, "patched": None}


def _progress_bars(setting: bool) -> bool:
    return bool(setting) and sys.stdout.isatty()


def _quiet_bars() -> None:
    """Turn off every tqdm bar of this process (the stages' own and the libraries', some of which are on by
    default), until _restore_bars(); output and figures are the same either way."""
    import tqdm

    if _PROGRESS["patched"] is not None:
        return
    original = tqdm.tqdm.__init__  # (its class attribute is a descriptor: restored as it was)

    def quiet_init(self, *a, **kw):
        kw["disable"] = True
        original(self, *a, **kw)

    _PROGRESS["patched"] = tqdm.tqdm.__dict__["__init__"]
    tqdm.tqdm.__init__ = quiet_init


def _restore_bars() -> None:
    if _PROGRESS["patched"] is not None:
        import tqdm

        tqdm.tqdm.__init__ = _PROGRESS["patched"]
        _PROGRESS["patched"] = None


def _params(args, check_data: bool = False):
    from genbench.config import load

    params = load(args.params, check_data=check_data)
    _PROGRESS["bars"] = _progress_bars(params.harness.progress)
    params.harness.progress = _PROGRESS["bars"]  # the stages draw their bars by this flag
    if not _PROGRESS["bars"]:
        _quiet_bars()
    if params.harness.num_threads:
        # CPU results depend in their last bits on the thread count: every torch stage pins it
        import torch

        torch.set_num_threads(params.harness.num_threads)
    return params


def _dry(args, obj) -> bool:
    if args.dry_run:
        print(json.dumps(obj, indent=2, default=str))
    return args.dry_run


def cmd_validate(args) -> int:
    params = _params(args, check_data=True)
    print(f"{args.params}: OK (profile {params.profile}; {len(params.jobs())} training jobs: "
          f"{', '.join(f'{r}-s{s}' for r, s in params.jobs())})")
    if args.dry_run:
        print(json.dumps(asdict(params), indent=2, default=str))
    return 0


def cmd_prepare(args) -> int:
    from genbench import data
    from genbench.layout import prepared_dir
    from genbench.tracking import stage_run

    params = _params(args)
    if args.dataset not in params.data.datasets:
        raise GenbenchError(f"dataset '{args.dataset}' is not under data.datasets in {args.params}")
    opts = params.data.datasets[args.dataset]
    if _dry(args, {"dataset": args.dataset, **asdict(opts), "split_seed": params.data.split_seed}):
        return 0
    with stage_run("prepare", args.dataset, params={"data": asdict(opts)},
                   tags={"dataset": args.dataset, "profile": params.profile}) as tracker:
        manifest = data.prepare(
            args.dataset, prepared_dir(params.data.root, args.dataset),
            local_dir=Path(opts.local_dir) if opts.local_dir else None, val_size=opts.val_size,
            train_limit=opts.train_limit, test_limit=opts.test_limit, seed=params.data.split_seed,
            allow_download=params.data.allow_download, toy_train_size=params.data.toy_train_size,
            toy_test_size=params.data.toy_test_size)
        located = manifest["located"]
        tracker.set_tags({"source": located["source"], "source_dir": str(located["source_dir"] or "")})
        tracker.log_artifact(prepared_dir(params.data.root, args.dataset) / "manifest.json")
    where = f" from {located['source_dir']}" if located["source_dir"] else ""
    print(f"prepared {args.dataset} ({located['source']}{where}): "
          + ", ".join(f"{k} {v}" for k, v in manifest["sizes"].items()))
    return 0


def cmd_weights(args) -> int:
    from genbench.layout import INCEPTION_WEIGHTS
    from genbench.tracking import stage_run

    if _dry(args, {"out": str(INCEPTION_WEIGHTS)}):
        return 0
    with stage_run("weights", "inception-v3-tf2015") as tracker:
        from genbench.metrics import fid  # torch-fidelity: this stage's own work, timed as such

        path = fid.convert_inception_weights(INCEPTION_WEIGHTS)
        info = fid.extractor_info("inception-v3-tf2015", path)
        tracker.set_tags(info)
    print(f"wrote {path} (sha256 {info['weights_sha256']})")
    return 0


def cmd_classifier(args) -> int:
    from genbench.data import load_split
    from genbench.io import atomic_path, read_json, sha256_file, write_json
    from genbench.layout import classifier_metrics_path, classifier_path, prepared_dir, shipped_classifier
    from genbench.tracking import stage_run

    params = _params(args)
    cfg = params.classifier
    shipped = shipped_classifier(args.dataset)
    if _dry(args, {"dataset": args.dataset, "shipped": shipped is not None, "rebuild": args.rebuild, **asdict(cfg)}):
        return 0
    root = prepared_dir(params.data.root, args.dataset)
    with stage_run("classifier", args.dataset, params=asdict(cfg),
                   tags={"dataset": args.dataset, "profile": params.profile}) as tracker:
        if shipped is not None and not args.rebuild:  # the pinned ruler, checked and copied into place
            path, pin = shipped
            actual = sha256_file(path) if path.is_file() else "missing"
            if actual != pin:
                raise GenbenchError(f"the shipped classifier {path} has sha256 {actual}, pinned {pin}: the "
                                    f"package is damaged; reinstall genbench (or `git checkout {path.name}`)")
            with atomic_path(classifier_path(args.dataset)) as tmp:
                tmp.write_bytes(path.read_bytes())
            metrics = {**read_json(path.with_suffix(".json")), "source": "shipped", "weights_sha256": pin}
        else:
            from genbench.metrics import classifier  # torch-fidelity: this stage's own work, timed as such

            train_x, train_y = load_split(root, "train")
            val_x, val_y = load_split(root, "val")
            model, metrics = classifier.train_classifier(train_x, train_y, val_x, val_y, steps=cfg.steps,
                                                         batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                                                         progress=params.harness.progress)
            # the weights file holds only what determines it: no wall time, so identical runs give identical bytes
            stable = {k: v for k, v in metrics.items() if k != "wall_time_s"}
            classifier.save_classifier(classifier_path(args.dataset), model, {"dataset": args.dataset, **stable})
            sha = sha256_file(classifier_path(args.dataset))
            metrics.update(source="rebuilt" if shipped else "trained here (no shipped classifier)", weights_sha256=sha)
            if shipped is not None:
                metrics["matches_shipped"] = sha == shipped[1]
                print(f"classifier-{args.dataset}: the rebuilt weights "
                      + ("match the shipped ones bit for bit" if sha == shipped[1] else
                         f"differ from the shipped ones (sha256 {sha[:12]}... against {shipped[1][:12]}...): this "
                         f"machine's float kernels; FID[classifier] computed with them is not comparable with "
                         f"the committed board"))
        write_json(classifier_metrics_path(args.dataset), metrics)
        tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    print(f"classifier-{args.dataset}: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    return 0


def cmd_refstats(args) -> int:
    from genbench.refstats import compute_refstats
    from genbench.tracking import stage_run

    params = _params(args)
    if _dry(args, {"dataset": args.dataset, "eval": asdict(params.eval)}):
        return 0
    with stage_run("refstats", args.dataset, params={"eval": asdict(params.eval)},
                   tags={"dataset": args.dataset, "profile": params.profile}) as tracker:
        summary = compute_refstats(params, args.dataset, tracker)
    print(f"reference features of {args.dataset}: {json.dumps(summary)}")
    return 0


def cmd_theory(args) -> int:
    from genbench.evaluate import code_version, library_versions
    from genbench.io import write_json
    from genbench.layout import theory_metrics_path
    from genbench.theory import run_check
    from genbench.tracking import stage_run

    params = _params(args)
    if args.check not in params.theory:
        raise GenbenchError(f"theory check '{args.check}' is not in params.yaml `theory` (profile {params.profile}); "
                            f"known: {', '.join(params.theory) or 'none'}")
    from genbench.config import strict
    from genbench.theory import CHECKS

    cfg = strict(CHECKS[args.check][0], params.theory[args.check] or {}, f"theory.{args.check}")
    if _dry(args, asdict(cfg)):
        return 0
    with stage_run("theory", args.check, params=asdict(cfg),
                   tags={"check": args.check, "profile": params.profile}) as tracker:
        t0 = time.perf_counter()
        result = run_check(args.check, cfg)
        seconds = time.perf_counter() - t0
        out = {"check": args.check, "settings": asdict(cfg), "result": result, "wall_s": round(seconds, 3),
               "num_threads": params.harness.num_threads, "code_version": code_version(),
               "versions": library_versions()}
        write_json(theory_metrics_path(args.check), out)
        tracker.log_metrics({"wall_s": seconds, **{k: v for k, v in result.get("summary", {}).items()
                                                   if isinstance(v, (int, float))}})
        tracker.log_artifact(theory_metrics_path(args.check))
    print(f"theory check {args.check}: {theory_metrics_path(args.check)} ({seconds:.1f} s)")
    return 0


def _job_stage(stage: str):
    def run(args) -> int:
        from genbench.layout import job_name, metrics_path, run_dir, samples_dir
        from genbench.tracking import experiment_name, stage_run
        from genbench.train import Job

        from genbench.resolve import family_module, is_supervised, task_module

        params = _params(args)
        job = Job.from_params(params, args.run, args.seed)
        if (stage == "score") != is_supervised(params, args.run) and stage != "train":
            raise GenbenchError(f"run {args.run!r} is {'a supervised' if is_supervised(params, args.run) else 'a generative'}"
                                f" run: it has {'a score stage' if is_supervised(params, args.run) else 'an evaluate stage'},"
                                f" not {stage}")
        if _dry(args, {"job": job.name, **job.config_dict(), "harness": asdict(params.harness),
                       "eval": asdict(params.eval)}):
            return 0
        module = family_module(params, args.run)
        tags = {"run": args.run, "seed": args.seed, "model": job.spec.model, "dataset": job.spec.dataset,
                "profile": params.profile, "family": module.rsplit(".", 1)[-1]}
        # MLflow: this stage is a child run of the job's parent run, which gets the job's results (evaluate's
        # figures, the score stages' accuracies and probes), its sample grid and its metrics file
        tracked = {"experiment": experiment_name(module, task_module(params, args.run), job.spec.dataset),
                   "parent": True, "results_to_parent": stage in ("evaluate", "score"),
                   "artifacts_to_parent": (samples_dir(args.run, args.seed) / "grid.png",
                                           metrics_path(args.run, args.seed))}
        if stage == "train":  # a checkpoint made by other code is never resumed
            from genbench.resolve import train_code

            job.code = train_code(params, args.run)
        logged = {k: v for k, v in job.config_dict().items() if k != "code"}
        with stage_run(stage, job_name(args.run, args.seed), params=logged, tags=tags, **tracked) as tracker:
            if stage == "train":
                if task_module(params, args.run) == "genbench.sts":  # one BERT-flow per pooling
                    from genbench.sts import train_flows

                    result = train_flows(job, run_dir(args.run, args.seed), tracker)
                elif task_module(params, args.run) == "genbench.representation":  # one training, train.lr
                    from genbench.representation import train_job

                    result = train_job(job, run_dir(args.run, args.seed), tracker)
                elif is_supervised(params, args.run):  # one training per learning-rate trial
                    from genbench.score import train_trials

                    result = train_trials(job, run_dir(args.run, args.seed), tracker)
                else:
                    from genbench.train import train

                    result = train(job, run_dir(args.run, args.seed), tracker=tracker)
                    tracker.log_history(run_dir(args.run, args.seed) / "stats.jsonl")
                tracker.set_tags({"outcome": result["status"]})
                if result["status"] == "diverged":
                    print(f"genbench: {job.name} {result['message']}", file=sys.stderr)
                    if params.harness.on_divergence == "fail":
                        tracker.failed = True
                        return 3
            elif stage == "score":
                if task_module(params, args.run) == "genbench.sts":
                    from genbench.sts import score_job
                elif task_module(params, args.run) == "genbench.representation":
                    from genbench.representation import score_job
                else:
                    from genbench.score import score_job

                result = score_job(params, args.run, args.seed, tracker)
                tracker.log_artifact(metrics_path(args.run, args.seed))
            elif stage == "sample":
                from genbench.sample import sample_job

                result = sample_job(params, args.run, args.seed, tracker)
            else:  # draws first, unless the samples of these inputs are there already
                from genbench.evaluate import evaluate_job
                from genbench.sample import draw_unless_current

                draw_unless_current(params, args.run, args.seed, tracker)
                result = evaluate_job(params, args.run, args.seed, tracker)
        print(f"{stage} {job.name}: {json.dumps(result, default=str)[:2000]}")
        return 0

    return run


def cmd_fit(args) -> int:
    """`genbench train`, then `genbench score`, in one process: a supervised job's one pipeline stage (what
    scoring reads is a part of what training reads, so the two never re-ran apart; one DVC stage costs `dvc
    status` and `dvc repro` half the bookkeeping of two). Each half is its own tracked stage run, as before."""
    from genbench.resolve import is_supervised

    if not is_supervised(_params(args), args.run):
        raise GenbenchError(f"run {args.run!r} is a generative run: it has train and evaluate stages, not fit")
    return _job_stage("train")(args) or _job_stage("score")(args)


def cmd_resolve(args) -> int:
    from genbench.resolve import check_job_list_unchanged, write_resolved

    params = _params(args)
    if _dry(args, {"jobs": params.jobs()}):
        return 0
    changes = write_resolved(params)
    print(f"resolved: {len(changes['written'])} file(s) written, {len(changes['removed'])} removed"
          + "".join(f"\n  {kind} {path}" for kind in changes for path in changes[kind]))
    if args.in_dvc:
        check_job_list_unchanged(changes)
    return 0


def cmd_report(args) -> int:
    from genbench import report
    from genbench.tracking import stage_run

    params = _params(args)
    if _dry(args, {"dir": params.report.dir, "jobs": params.jobs()}):
        return 0
    with stage_run("report", "leaderboard") as tracker:
        report.build(params)
        for name in ("leaderboard.md", "leaderboard.csv", "index.html"):
            tracker.log_artifact(Path(params.report.dir) / name)
    print((Path(params.report.dir) / "leaderboard.md").read_text())
    _flush_tracking()
    return 0


def _flush_tracking() -> None:
    from genbench.tracking import PENDING, flush_pending, tracking_enabled, tracking_uri

    if tracking_enabled():
        from genbench.tracking import STAGE_TIMES

        t0 = time.perf_counter()
        counts = flush_pending()
        STAGE_TIMES["flush_s"] = time.perf_counter() - t0  # every stage's bookkeeping, once: not this stage's
        print(f"MLflow ({tracking_uri()}): {counts['sent']} stage run(s) sent"
              + (f", {counts['running']} still running" if counts["running"] else "")
              + (f", {counts['kept']} kept in {PENDING} for the next `genbench track`" if counts["kept"] else ""))


def cmd_track(args) -> int:
    if _dry(args, {"pending": "mlruns/pending"}):
        return 0
    _flush_tracking()
    return 0


def cmd_bench(args) -> int:
    from genbench import bench

    return bench.main(args)


def cmd_verify(args) -> int:
    from genbench import verify

    return verify.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genbench", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_text, *extra):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
        for arg in extra:
            arg(p)
        p.set_defaults(func=func)
        return p

    dataset = lambda p: p.add_argument("--dataset", required=True)  # noqa: E731

    def job(p):
        p.add_argument("--run", required=True, help="a key of `runs` in params.yaml")
        p.add_argument("--seed", required=True, type=int)

    add("validate", cmd_validate, "check params.yaml: keys, types, values and that every dataset can be found")
    resolve = add("resolve", cmd_resolve, "write what each stage uses to pipelines/resolved/ (changed files only)")
    resolve.add_argument("--in-dvc", action="store_true",
                         help="as dvc.yaml's first stage: fail if the job list changed (DVC read the old one)")
    add("prepare", cmd_prepare, "prepare one dataset: raw files -> checked splits", dataset)
    add("weights", cmd_weights, "convert the offline Inception-v3 FID weights for torch-fidelity")
    p = add("classifier", cmd_classifier, "put the dataset's FID feature classifier in place: the shipped, pinned "
            "one (checked by sha256), or one trained here when none is shipped or with --rebuild", dataset)
    p.add_argument("--rebuild", action="store_true",
                   help="retrain it with params.yaml's `classifier` settings and say whether it matches the pin")
    add("refstats", cmd_refstats, "features of the reference split for every extractor", dataset)
    add("train", _job_stage("train"), "train (or resume) one (run, seed) job", job)
    add("sample", _job_stage("sample"), "draw samples from a trained job (always; `evaluate` draws unless current)", job)
    add("evaluate", _job_stage("evaluate"), "draw a job's samples unless those of the same inputs are there, then "
        "their FID/KID/precision/recall and the job's bits/dim", job)
    add("score", _job_stage("score"), "a supervised job's test accuracy, cross-entropy and calibration "
        "(multi-label: F1) at the learning rate chosen on validation", job)
    add("fit", cmd_fit, "train a supervised job, then score it (the pipeline's one stage per supervised job)", job)
    p = add("theory", cmd_theory, "one theory check of genbench/theory.py (its settings: params.yaml `theory`)")
    p.add_argument("--check", required=True, help="a key of `theory` in params.yaml")
    add("report", cmd_report, "build reports/ from metrics/*.json (then send the stages' runs to MLflow)")
    add("track", cmd_track, "send the stage runs recorded under mlruns/pending/ to the MLflow store")
    bench = add("bench", cmd_bench, "throughput of every registered model and the harness overhead")
    bench.add_argument("--steps", type=int, default=None,
                       help="timed training steps per segment (default: as many as fill --segment-s)")
    bench.add_argument("--repeats", type=int, default=5,
                       help="alternated rounds (bare, harness, bare, ...); figures are medians [min, max] over them")
    bench.add_argument("--warmup-s", type=float, default=1.5,
                       help="warm-up of each side: steps until this many seconds have passed")
    bench.add_argument("--segment-s", type=float, default=1.0, help="seconds of steps in one timed segment")
    bench.add_argument("--peers", action="store_true",
                       help="also time vae, glow, ddpm against pythae, normflows, denoising-diffusion-pytorch "
                            "(pip install -e .[peers])")
    bench.add_argument("--models", nargs="*", default=None, help="models to measure (default: all registered)")
    bench.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    bench.add_argument("--scaling", action="store_true",
                       help="also time a training step at image sides 14, 28, 56 (glow, tarflow)")
    bench.add_argument("--iresnet-logdet", action="store_true",
                       help="also measure bias and spread of the i-ResNet log-det estimator vs series terms")
    verify = add("verify", cmd_verify, "re-run committed rows from nothing in a clone of HEAD; say which figures "
                                       "reproduce (bit-identical / within noise); exit 1 if any is OUTSIDE")
    # (arguments here, not in genbench.verify: every stage process builds this parser)
    verify.add_argument("runs", nargs="*", metavar="RUN",
                        help="runs of params.yaml to verify (default: the 2-D toy runs of the profile)")
    verify.add_argument("--sample", type=int, default=None, metavar="N",
                        help="verify N of those runs: a window that moves by N with each commit (deterministic "
                             "given HEAD; consecutive commits cover them all)")
    verify.add_argument("--max-minutes", type=float, default=None, metavar="M",
                        help="without RUNs: only the 2-D runs whose committed seeds took at most M minutes in all "
                             "(train + sample + evaluate, from their metrics files); CI's time budget")
    verify.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="re-run only these seeds of each run (default: all its committed seeds); the "
                             "interval still comes from every committed seed, and --max-minutes counts these")
    verify.add_argument("--k", type=float, default=3.0,
                        help="interval half-width: K x std over >= 3 committed seeds (training noise), else "
                             "K x the figure's own stderr (test-set noise) (default 3)")
    verify.add_argument("--strict", action="store_true",
                        help="also exit 1 when a figure differs and has no interval to judge it")
    verify.add_argument("--out", default=None, metavar="PATH", help="also write the table as JSON to PATH")
    verify.add_argument("--keep", action="store_true",
                        help="keep the scratch clone (kept anyway when the reproduction fails)")
    return parser


STAGE_TIMES_LOG = "logs/stage-times.jsonl"  # one row per stage process (benchmark/budget.py reads it)


def _process_age_s() -> float:
    """Seconds since this process started (Linux; elsewhere since genbench.cli was imported)."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def _record_stage_time(args, started_age_s: float, work_s: float | None, status: int) -> dict:
    """Append where this stage process's time went: start-up (interpreter + imports + params) and
    MLflow bookkeeping against its own work, so that fixed costs are measured, not guessed."""
    from genbench.tracking import STAGE_TIMES

    total = _process_age_s()
    row = {"stage": args.command, "job": getattr(args, "run", None) and f"{args.run}-s{args.seed}",
           "dataset": getattr(args, "dataset", None), "status": status, "total_s": round(total, 3),
           "startup_s": round(started_age_s, 3), "tracking_s": round(STAGE_TIMES["tracking_s"], 3),
           "work_s": None if work_s is None else round(work_s, 3)}
    row["flush_s"] = round(STAGE_TIMES.get("flush_s", 0.0), 3)  # the report sending every stage's MLflow run
    if work_s is not None:
        row["fixed_s"] = round(total - work_s - row["flush_s"], 3)
    try:
        os.makedirs(os.path.dirname(STAGE_TIMES_LOG), exist_ok=True)
        with open(STAGE_TIMES_LOG, "a") as handle:
            handle.write(json.dumps(row) + "\n")
    except OSError:
        pass  # a read-only working directory: the timing is lost, the stage is not
    return row


def _wall_time_line(row: dict) -> str:
    """The one line a stage prints instead of progress bars (CI logs, harness.progress: false)."""
    what = row["job"] or row["dataset"] or ""
    outcome = "done" if row["status"] == 0 else f"exit {row['status']}"
    work = "" if row["work_s"] is None else f" (own work {row['work_s']:.1f} s)"
    return f"genbench {row['stage']}{' ' + what if what else ''}: {outcome} in {row['total_s']:.1f} s{work}"


TIMED_STAGES = ("resolve", "prepare", "weights", "classifier", "refstats", "train", "sample", "evaluate", "score",
                "fit", "report")


def main(argv: list[str] | None = None) -> int:
    from genbench.tracking import STAGE_TIMES

    args = build_parser().parse_args(argv)
    started = _process_age_s()
    STAGE_TIMES.clear()
    STAGE_TIMES["tracking_s"] = 0.0
    status = 1
    try:
        status = args.func(args)
        return status
    except GenbenchError as exc:
        status = 2
        print(f"genbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        status = 130
        print("genbench: interrupted; a training job resumes from its last checkpoint", file=sys.stderr)
        return 130
    finally:
        bars = _PROGRESS["bars"]
        _restore_bars()
        _PROGRESS["bars"] = None
        if args.command in TIMED_STAGES and not args.dry_run:
            from genbench.tracking import STAGE_TIMES

            row = _record_stage_time(args, started, STAGE_TIMES.get("work_s"), status)
            if not bars:
                print(_wall_time_line(row), flush=True)


def run() -> None:
    """The `genbench` command: main(), then exit without the interpreter's teardown. Every output is
    written and closed by then (atomically); unloading torch and its threads costs ~0.9 s per process,
    a third of a `ci` stage's fixed cost."""
    import logging

    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    run()
