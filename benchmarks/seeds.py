"""How far a training recipe's result depends on its seed: the same `pyalexnet train` for several seeds.

A recipe can look good on the one seed it was tuned on and fail on another, or on another machine whose
rounding differs in the last place (a different BLAS thread count or CPU is enough to change every later
bit). This runs the command once per seed and writes, into --out:

    seeds.md    a table: each seed's ten-crop top-1 error and its validation error per epoch
    seeds.json  the same, with every history row and the command
    seeds.png   validation top-1 error per epoch, one line per seed

Usage (the arguments after -- go to `pyalexnet train`):

    python3 -m benchmarks.seeds --seeds 0-7 --jobs 2 --out benchmarks/results/seeds_small_cpu [-- --lr 0.005]

--resume keeps the finished runs of an earlier call with the same --out and runs the seeds it lacks.
With --jobs N > 1 each run gets cores/N threads (OMP_NUM_THREADS and OPENBLAS_NUM_THREADS), which
changes the fully connected layers' rounding from a one-job run: compare recipes run with the same --jobs.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pyalexnet._backend import output_folder_problem
from pyalexnet.bench.env import cpu_model, git_commit
from pyalexnet.commands import positive_int
from pyalexnet.training import RECIPE_VERSION

# `pyalexnet train`'s last line: "validation (ten-crop, N images): top-1 error E[, top-5 error E5] (chance: ...)";
# no top-5 with 5 classes or fewer, "centre crop" with --no-ten-crop (either read no result from a finished run).
_FINAL = re.compile(r"(ten-crop|centre crop)[^:\n]*?:?\s*top-1 error ([0-9.]+)(?:, top-5 error ([0-9.]+))?")


def final_errors(stdout: str) -> tuple[float | None, float | None]:
    """(top-1, top-5) error of the final evaluation `pyalexnet train` prints; None where it printed none."""
    m = _FINAL.search(stdout)
    if not m:
        return None, None
    return float(m.group(2)), float(m.group(3)) if m.group(3) else None


def _evaluation(train_args: list[str]) -> str:
    return "centre-crop" if "--no-ten-crop" in train_args else "ten-crop"


def parse_seeds(text: str) -> list[int]:
    """"0-3,7" -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds must be like 0-7 or 0,2,5, got {text!r}") from None
        if last < first:  # "7-0" was refused as "seeds must be non-negative integers"
            raise argparse.ArgumentTypeError(f"the range {part.strip()!r} is reversed: write {last}-{first}")
        seeds += list(range(first, last + 1))
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be non-negative integers, got {text!r}")
    return sorted(set(seeds))


# The training subprocesses running now, and whether the study is stopping (Ctrl-C): a pool thread that has not
# started its run yet must not start it then, and the running ones are ended by main(), not waited for.
_running: set[subprocess.Popen] = set()
_lock = threading.Lock()
_stopping = threading.Event()


class _Stopped(Exception):
    """A run not started, or ended, because the study was stopped."""


def _command(seed: int, history: Path, train_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pyalexnet", "train", "--quiet", "--seed", str(seed), "--history", str(history),
            *train_args]


def _stop_running(grace_s: float = 5.0) -> None:
    """End the running training subprocesses: SIGTERM, then SIGKILL for those still there after grace_s."""
    with _lock:
        _stopping.set()
        procs = list(_running)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_one(seed: int, train_args: list[str], work: Path, threads: int | None) -> dict:
    """One `pyalexnet train --seed SEED` in a subprocess; its history and ten-crop errors."""
    history = work / f"history_seed{seed}.jsonl"
    cmd = _command(seed, history, train_args)
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    with _lock:
        if _stopping.is_set():
            raise _Stopped(seed)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _running.add(proc)
    try:
        stdout, stderr = proc.communicate()
    finally:
        with _lock:
            _running.discard(proc)
    if _stopping.is_set():
        raise _Stopped(seed)
    seconds = time.perf_counter() - t0
    rows = [json.loads(line) for line in history.read_text().splitlines()] if history.exists() else []
    top1, top5 = final_errors(stdout)
    return dict(seed=seed, returncode=proc.returncode, seconds=round(seconds, 1), history=rows, top1=top1, top5=top5,
                error=None if proc.returncode == 0 else (stderr.strip().splitlines() or ["?"])[-1])


def _percent(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def write_report(runs: list[dict], meta: dict, out: Path) -> list[Path]:
    from pyalexnet.viz import runs_image

    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(dict(meta, runs=runs), indent=1) + "\n")
    finished = sorted(r["top1"] for r in runs if r["top1"] is not None)
    lines = [f"# `{' '.join(['pyalexnet train', *meta['train_args']])}` for {len(runs)} seeds", "",
             f"{meta['date']}, code {', '.join(sorted({r.get('commit', meta['commit']) for r in runs}))}, "
             f"{meta['machine']}, {meta['jobs']} runs at a time "
             f"({meta['threads_per_run'] or 'the default'} thread(s) each).", ""]
    if meta.get("interrupted"):
        lines += [f"Interrupted ({meta['interrupted']}).", ""]
    evaluation = _evaluation(meta["train_args"])
    if finished:
        # Of the runs with a result: a failed run is neither above nor below 5% (it counted as below).
        failed = len(runs) - len(finished)
        lines += [f"{evaluation.capitalize()} top-1 error: median {_percent(statistics.median(finished))}, worst "
                  f"{_percent(finished[-1])}, best {_percent(finished[0])}; "
                  f"{sum(e > 0.05 for e in finished)} of {len(finished)} runs above 5%"
                  + (f" ({failed} more without a result)" if failed else "") + ".", ""]
    epochs = max((len(r["history"]) for r in runs), default=0)
    lines += [f"| seed | {evaluation} top-1 | top-5 | minutes | validation top-1 per epoch (%; * = lr below the first "
              "epoch's) |",
              "|---|---|---|---|---|"]
    for r in runs:
        first_lr = r["history"][0]["lr"] if r["history"] else None
        curve = " ".join(f"{100 * h['val_top1']:.0f}{'*' if h['lr'] < first_lr else ''}" for h in r["history"])
        status = "" if r["error"] is None else f" (failed: {r['error']})"
        lines.append(f"| {r['seed']} | {_percent(r['top1'])}{status} | {_percent(r['top5'])} | "
                     f"{r['seconds'] / 60:.1f} | {curve} |")
    (out / "seeds.md").write_text("\n".join(lines) + "\n")
    written = [out / "seeds.md", out / "seeds.json"]
    histories = {f"seed {r['seed']}: {_percent(r['top1'])}": r["history"] for r in runs if r["history"]}
    if histories and epochs:
        runs_image(histories, title=f"validation top-1 error, {len(runs)} seeds").save(out / "seeds.png")
        written.append(out / "seeds.png")
    return written


# The commit that made recipe 2 (biases without weight decay), for studies written before seeds.json said its recipe.
_RECIPE_2_SINCE = "f6ead08"


def _recipe_of_commit(commit: str) -> int | None:
    """1 or 2 by where `commit` (git describe's, "+modified" allowed) stands against _RECIPE_2_SINCE in this
    checkout's history; None where git cannot tell."""
    commit = commit.split("+")[0]
    root = Path(__file__).resolve().parents[1]
    try:
        r = subprocess.run(["git", "-C", str(root), "merge-base", "--is-ancestor", _RECIPE_2_SINCE, commit],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: 2, 1: 1}.get(r.returncode) if commit else None


def _finished_runs(out: Path, meta: dict) -> list[dict]:
    """The runs without error in out/seeds.json, when they were made with meta's train arguments and threads."""
    path = out / "seeds.json"
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
        runs = old["runs"] if isinstance(old, dict) else None
        if not isinstance(runs, list) or not all(isinstance(r, dict) and "seed" in r and "error" in r for r in runs):
            raise ValueError("not the runs this script writes")
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a cut or hand-edited file was a traceback
        raise SystemExit(f"--resume: cannot read {path} ({exc}); remove it, or use another --out") from None
    for key in ("train_args", "threads_per_run"):
        if old.get(key) != meta[key]:
            raise SystemExit(f"--resume: {path} was made with {key} {old.get(key)!r}, not {meta[key]!r}; "
                             "use another --out or the same arguments")
    recipe = old.get("recipe_version") or _recipe_of_commit(str(old.get("commit", "")))
    if recipe != meta["recipe_version"]:
        raise SystemExit(f"--resume: {path}'s runs trained with " + (
            f"pyalexnet's recipe {recipe}" if recipe else f"a recipe its commit {old.get('commit')!r} cannot tell")
            + f", this version's is {meta['recipe_version']} (training.RECIPE_VERSION: the same arguments now train "
            "otherwise); use another --out")
    return [dict(r, commit=r.get("commit", old.get("commit"))) for r in runs
            if r["error"] is None and r["seed"] in meta["seeds"]]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.seeds", description=__doc__.splitlines()[0],
                                 epilog="Arguments after -- go to `pyalexnet train` (not --seed, --history, --quiet, "
                                        "--checkpoint-dir or --resume: set per run, or not per study).")
    ap.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-7"), help="e.g. 0-7 or 0,3,5 (default: 0-7)")
    ap.add_argument("--jobs", type=positive_int, default=1, help="runs at a time (default: 1)")
    ap.add_argument("--out", required=True, type=Path, help="folder for seeds.md, seeds.json and seeds.png")
    ap.add_argument("--resume", action="store_true",
                    help="keep the finished runs of --out's seeds.json (same train arguments and threads); run the rest")
    args = ap.parse_args(own)
    for flag in ("--seed", "--history", "--quiet", "--checkpoint-dir", "--resume"):
        if any(a == flag or a.startswith(flag + "=") for a in train_args):
            ap.error(f"{flag} is set by this script for each run; leave it out of the arguments after --")
    # Found now, not after every seed has trained (a file given as --out was a FileExistsError at the end).
    problem = output_folder_problem(args.out, "--out", create=True, files=("seeds.md", "seeds.json", "seeds.png"))
    if problem:
        ap.error(f"{problem}: choose another folder for the results")
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    meta = dict(train_args=train_args, recipe_version=RECIPE_VERSION, seeds=args.seeds, jobs=args.jobs,
                threads_per_run=threads,
                commit=git_commit() or "?",
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                machine=f"{cpu_model()}, {os.cpu_count()} CPUs")
    runs = _finished_runs(args.out, meta) if args.resume else []
    todo = [s for s in args.seeds if s not in {r["seed"] for r in runs}]
    if runs:
        print(f"kept from {args.out / 'seeds.json'}: seeds {', '.join(str(r['seed']) for r in runs)}", flush=True)
    written = write_report(runs, meta, args.out) if runs else []
    cut: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        pool = cf.ThreadPoolExecutor(args.jobs)
        futures = {pool.submit(run_one, s, train_args, Path(tmp), threads): s for s in todo}
        try:
            for done, fut in enumerate(cf.as_completed(futures), 1):
                r = dict(fut.result(), commit=meta["commit"])
                runs.append(r)
                print(f"[{done}/{len(futures)}] seed {r['seed']}: {_evaluation(train_args)} top-1 error {_percent(r['top1'])}"
                      f"{'' if r['error'] is None else ' (failed: ' + r['error'] + ')'}, {r['seconds'] / 60:.1f} min",
                      flush=True)
                runs.sort(key=lambda r: r["seed"])
                written = write_report(runs, meta, args.out)  # after every run: a stopped study keeps what it has
        except KeyboardInterrupt:
            # Ctrl-C: the queued seeds are not started and the running ones are ended (they went on, one after
            # another, and a traceback came at the end with nothing written).
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C would cut the report short
            pool.shutdown(wait=False, cancel_futures=True)
            _stop_running()
            have = {r["seed"] for r in runs}
            cut = [s for s in todo if s not in have]
        finally:
            pool.shutdown(wait=True)
    if cut:
        meta["interrupted"] = f"stopped by Ctrl-C; seeds {', '.join(map(str, cut))} not finished"
        written = write_report(runs, meta, args.out)
        print(f"interrupted: seeds {', '.join(map(str, cut))} not finished (--resume runs them); "
              f"the {len(runs)} finished run(s) written to {', '.join(str(p) for p in written)}", file=sys.stderr)
        return 130
    for path in written:
        print(path)
    return 0 if all(r["error"] is None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
