"""Options and the run: `pyalexnet bench` and `python -m benchmarks` both call main()/run()."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from .._backend import output_folder_problem
from . import report, spec, step
from .backends import Numpy, Ours, Torch
from .env import environment, gpu_clocks, slug
from .rows import Drawer, build_rows, time_row
from .timing import CpuTimer, GpuTimer, measure_ceilings, nominal_fp32_peak

DESCRIPTION = """\
Times every AlexNet op (conv1..conv5 forward, input and filter gradients, LRN, max-pooling, ReLU,
dropout, softmax cross-entropy, fc6..fc8, the SGD update over 61M parameters) and a whole training
step, for pyalexnet and references on the same device and the same inputs: PyTorch/cuDNN (float32
and its default TF32) on a GPU; on a CPU, numpy (im2col + matmul) and PyTorch's CPU build when it is
installed, and the small preset's training step too (the network `pyalexnet train` trains by
default). Writes a table, a JSON file and a markdown summary (and PNG charts when matplotlib is
installed) under --out."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where to run (default: cuda when the GPU backend is usable, else cpu)")
    p.add_argument("--batch", type=int, default=None, help="images per batch (default 128 on cuda, 8 on cpu, 1 with --quick)")
    p.add_argument("--only", default=None, metavar="NAMES",
                   help="comma-separated substrings: keep rows whose name contains one (\"step\" selects the training step)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 50 on cuda, 5 on cpu, 1 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default 5 on cuda, 1 on cpu; training steps: 2, 1 with --quick)")
    p.add_argument("--step-repeats", type=int, default=None, help="timed training steps (default 20 on cuda, 3 on cpu)")
    p.add_argument("--reference", choices=["auto", "torch", "numpy"], default="auto",
                   help="the CPU references: PyTorch (when installed) and numpy's im2col + matmul (auto), "
                        "or only one")
    p.add_argument("--out", default="benchmarks/results", help="folder for bench_<device>[_quick].{json,md} and the charts (default: benchmarks/results "
                        "under the current folder)")
    p.add_argument("--quick", action="store_true", help="CI-sized: batch 1, one repeat, small ceilings (seconds, not figures)")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG charts")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failing implementations")


def _selected(name: str, only: list[str] | None) -> bool:
    return only is None or any(o in name for o in only)


def _step_floor(flops, runs, ceilings) -> dict:
    """A step's arithmetic floor (its FLOPs at the measured fp32 ceiling) and each run's multiple of it."""
    floor = {"flops": flops, "floor_ms": flops / ceilings["fp32_flops_per_s"] * 1e3}
    if ceilings.get("nominal_fp32_flops_per_s"):
        floor["nominal_floor_ms"] = flops / ceilings["nominal_fp32_flops_per_s"] * 1e3
    floor["gap"] = {k: v["median_ms"] / floor["floor_ms"] for k, v in runs.items() if v.get("status") == "ok"}
    return floor


def _torch_autograd_runs(refs, timer, drawer, n, kw) -> dict:
    """PyTorch's nn.Module + autograd step for each PyTorch reference, by run name."""
    return {f"{ref.name} (nn.Module + autograd)": step.run_torch_autograd(ref, timer, drawer, n, **kw)
            for ref in refs if isinstance(ref, Torch)}


def _import_torch():
    try:
        import torch
    except Exception:
        return None
    return torch


def run(args) -> int:
    from .. import _backend, backend_info

    t_start = time.perf_counter()
    device = args.device or ("cuda" if _backend.cuda_available() else "cpu")
    if device == "cuda" and not _backend.cuda_available():
        raise ValueError(f"--device cuda: the GPU backend is not usable ({backend_info()['reason']})")
    gpu = device == "cuda"

    def given(value, default):  # `or` took an explicit 0 for "not given" and ran the default instead
        return default if value is None else value

    n = given(args.batch, 1 if args.quick else 128 if gpu else 8)
    repeats = given(args.repeats, 1 if args.quick else 50 if gpu else 5)
    warmup = given(args.warmup, 1 if args.quick else 5 if gpu else 1)
    step_repeats = given(args.step_repeats, 1 if args.quick else 20 if gpu else 3)
    budget = 0.5 if args.quick else 2.0 if gpu else 3.0
    for name, value in (("--batch", n), ("--repeats", repeats), ("--step-repeats", step_repeats)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {warmup}")
    for name, value in (("--batch", n), ("--repeats", repeats), ("--warmup", warmup), ("--step-repeats", step_repeats)):
        if value >= 2 ** 31:  # --batch 10**20 ended in the kernels' bindings, a screen of argument types
            raise ValueError(f"{name} must be < 2^31, got {value}")
    only = None if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    if only == []:  # --only '' ran every row
        raise ValueError("--only needs at least one name (rows: conv1.fwd ... fc8.bwd, lrn, pool, relu, dropout, "
                         "softmax_xent, sgd, step.paper, step.small)")
    step_names = ("step.paper",) if gpu else ("step.paper", "step.small")
    names = [r.name for r in build_rows(1)] + list(step_names)
    unknown = [o for o in (only or []) if not any(o in name for name in names)]
    if unknown:  # each name: "relu,nosuch" dropped nosuch without a word
        raise ValueError(f"--only {args.only}: no row's name contains {', '.join(unknown)} (rows: conv1.fwd ... "
                         f"fc8.bwd, lrn, pool, relu, dropout, softmax_xent, sgd, {', '.join(step_names)})")
    if not args.out.strip():  # '' wrote into the current folder
        raise ValueError("--out needs a folder (--out . for the current one)")
    out = Path(args.out)
    # Found now, not after the benchmark has run (a read-only folder failed at the end, all rows timed).
    problem = output_folder_problem(out, "--out", create=True)
    if problem:
        raise ValueError(f"{problem}: choose another folder for the results")

    torch = _import_torch() if (gpu or args.reference in ("auto", "torch")) else None
    if args.reference == "torch" and torch is None:
        raise ValueError("--reference torch: PyTorch is not installed (pip install torch)")
    if gpu:
        import cupy as cp

        xp = cp
        timer = GpuTimer(cp, repeats=repeats, warmup=warmup, budget_s=budget,
                         l2_bytes=cp.cuda.Device().attributes["L2CacheSize"])
        refs = [Torch("cuda", tf32=False), Torch("cuda", tf32=True)] if torch is not None else []
    else:
        cp, xp = None, np
        timer = CpuTimer(repeats=repeats, warmup=warmup, budget_s=budget)
        # The CPU comparison: im2col + numpy matmul always, PyTorch's CPU build as well when installed.
        refs = ([Torch("cpu")] if torch is not None and args.reference != "numpy" else []) + \
               ([Numpy()] if args.reference != "torch" else [])
    ours = Ours(xp)
    backends = [ours, *refs]
    env = environment(device, torch, cp)
    stem = "bench_" + ("cpu" if not gpu else slug(env["device_name"])) + ("_quick" if args.quick else "")
    if not gpu and args.device is None:
        # Said, as `pyalexnet info` says it: a GPU user without CuPy would otherwise get a CPU run unawares.
        env["gpu_unusable"] = backend_info()["reason"]
    print(f"pyalexnet bench on {env['device_name']} ({device}), batch {n}" + (", QUICK (a smoke run: its times "
          "are not figures)" if args.quick else "") + ", references: "
          + (", ".join(b.label for b in refs) or "none (PyTorch is not installed)"), flush=True)
    if env.get("gpu_unusable"):
        print(f"on the CPU: the GPU backend is not usable here ({env['gpu_unusable']})", flush=True)

    ceilings = measure_ceilings(timer, xp, quick=args.quick,
                                free_bytes=cp.cuda.runtime.memGetInfo()[0] if gpu else None)
    if gpu:
        ceilings["nominal_fp32_flops_per_s"] = nominal_fp32_peak(env["device_name"])
    print(f"ceilings: {ceilings['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s copy, "
          f"{ceilings['fp32_flops_per_s'] / 1e12:.2f} TFLOP/s fp32 matmul", flush=True)

    drawer = Drawer(xp, seed=0)
    results: list = []
    steps: list = []
    stopped = None
    all_rows = build_rows(n)
    chosen = {row.name for row in all_rows if _selected(row.name, only)}
    # A forced-algorithm row (or the pool backward that recomputes) runs ours alone and reads its references'
    # times off its plain row: timed too when --only left it out (`--only winograd` had empty reference columns).
    needed = {row.reference_row for row in all_rows if row.name in chosen and row.reference_row} - chosen
    if needed:
        print(f"also timing {', '.join(sorted(needed))}: the reference times of the rows chosen", flush=True)
    try:
        for row in all_rows:
            if row.name not in chosen and row.name not in needed:
                continue
            r = time_row(row, backends, timer, drawer, xp, verbose=args.verbose)
            results.append(r)
            cells = ", ".join(f"{k} {report._fmt_ms(v)}" for k, v in r["impl"].items())
            print(f"  {row.name:22s} {cells} ms", flush=True)
        # --warmup where given (the steps ignored it); else 2 untimed steps, 1 with --quick (with none, a quick
        # run's first-call costs read as the step: 736 ms against 165 for the same ops per layer)
        kw = dict(repeats=step_repeats, warmup=args.warmup if args.warmup is not None else 1 if args.quick else 2)
        if _selected("step.paper", only):
            runs = {"ours (pyalexnet.AlexNet)": step.run_model(timer, drawer, xp, n, device, preset="paper", **kw),
                    "ours (ops, per layer)": step.run_composed(ours, timer, drawer, n, **kw)}
            if refs:
                runs[f"{refs[0].name} (ops, per layer)"] = step.run_composed(refs[0], timer, drawer, n, **kw)
            runs.update(_torch_autograd_runs(refs, timer, drawer, n, kw))
            steps.append({"name": "step.paper", "title": "Training step, the paper's network (60,965,224 parameters)",
                          "batch": n, "runs": runs, "floor": _step_floor(spec.step_flops(n), runs, ceilings)})
        if "step.small" in step_names and _selected("step.small", only):
            # The network `pyalexnet train` trains by default: what a laptop user waits for.
            stages, image = spec.preset_stages("small")
            runs = {"ours (pyalexnet.AlexNet)": step.run_model(timer, drawer, xp, n, device, preset="small", **kw)}
            runs.update(_torch_autograd_runs(refs, timer, drawer, n, dict(kw, stages=stages, image=image)))
            steps.append({"name": "step.small",
                          "title": f"Training step, preset 'small' ({spec.parameter_count(stages):,} parameters, "
                                   f"{image[1]}x{image[2]} crops)",
                          "batch": n, "runs": runs,
                          "floor": _step_floor(spec.step_flops(n, stages, image), runs, ceilings)})
        for sname, name, e in ((s["name"], k, v) for s in steps for k, v in s["runs"].items()):
            print(f"  {sname} {name}: " + (f"{e['median_ms']:.2f} ms, {e['images_per_s']:.1f} images/s"
                                        if e.get("status") == "ok" else f"{e['status']} ({e.get('error', '')})"), flush=True)
    except (KeyboardInterrupt, BrokenPipeError) as exc:
        # Ctrl-C, or a reader gone (`| head`): the rows timed so far are written before stopping (they were lost).
        stopped = exc
    report.add_rates(results, ceilings, [b.name for b in refs])
    not_judged = report.targets_not_judged(n, args.quick) if gpu else None
    if gpu and refs and not_judged is None:
        report.add_targets(results, refs[0].name, ceilings)
    elif gpu:
        not_judged = not_judged or "no PyTorch to compare with"
        print(f"targets: not judged ({not_judged})", flush=True)

    if gpu:
        env["nvidia_smi_after"] = gpu_clocks(cp.cuda.Device().id)
    command = "pyalexnet bench " + " ".join(shlex.quote(a) for a in (getattr(args, "argv", None) or []))
    doc = {
        "schema": 1,
        "meta": env,
        "config": {"device": device, "batch": n, "repeats": repeats, "warmup": warmup, "step_repeats": step_repeats,
                   "quick": args.quick, "only": only, "command": command.strip(), "targets_not_judged": not_judged,
                   "references": [b.name for b in refs],
                   "reference_labels": {b.name: b.label for b in refs},
                   "l2_flush_bytes": getattr(timer, "flush_bytes", None),
                   "torch_cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if (torch is not None and gpu) else None},
        "ceilings": ceilings,
        "rows": results,
        "steps": steps,
        "chart": None,
        "ops_chart": None,
    }
    if stopped is not None:
        doc["interrupted"] = "stopped by Ctrl-C" if isinstance(stopped, KeyboardInterrupt) else "output closed"
    if stopped is not None and not (results or steps):
        # Stopped before anything was timed: an earlier run's complete files stay (an empty one replaced them).
        print(f"nothing was timed before it stopped: {out} is unchanged", file=sys.stderr)
        raise stopped
    chart_path, ops_chart_path = out / f"{stem}_step.png", out / f"{stem}_ops.png"
    earlier = [p for p in (out / f"{stem}.json", out / f"{stem}.md", chart_path, ops_chart_path) if p.exists()]
    chart_notes = []
    if not args.no_chart and stopped is None and (results or steps):
        # Every op against the reference and its ceiling (the targets in colour), then the step's layers.
        ops_chart = report.plot_ops(doc, ops_chart_path) if results else "nothing"
        chart = report.plot_breakdown(steps[0], chart_path,
                                      f"AlexNet training step per layer, batch {n}, {env['device_name']}"
                                      + (", QUICK smoke run" if args.quick else "")) if steps else "nothing"
        if chart is None or ops_chart is None:
            chart_notes.append('charts skipped: matplotlib is not installed (pip install "pyalexnet[plot]")')
        else:
            doc["ops_chart"] = ops_chart if ops_chart != "nothing" else None
            doc["chart"] = chart if chart != "nothing" else None
            if steps and chart == "nothing":  # step.small alone: only whole-step times, no per-layer ones
                chart_notes.append(f"no step chart: {steps[0]['name']} has no per-layer times (step.paper's run has them)")
    for key, path, what in (("ops_chart", ops_chart_path, "ops chart"), ("chart", chart_path, "step chart")):
        if not doc[key] and path.exists():
            chart_notes.append(f"{path} is an earlier run's (this one drew no {what})")
    chart_msg = "; ".join(chart_notes) or None
    doc["wall_s"] = round(time.perf_counter() - t_start, 1)
    paths = report.write_outputs(doc, out, stem)
    wrote = (f"wrote {paths['json']}, {paths['md']}" + "".join(f", {doc[k]}" for k in ("ops_chart", "chart") if doc.get(k))
             + f" in {doc['wall_s']} s" + (" (replacing an earlier run's)" if earlier else ""))
    if stopped is not None:
        # Said here too: an interrupted run replaces a complete one's files, and the chart beside them is not its own.
        print(f"the {len(results)} row{'s' * (len(results) != 1)} timed before it stopped: {paths['json']}, "
              f"{paths['md']}" + (" (replacing an earlier run's)" if earlier else ""), file=sys.stderr)
        if chart_msg:
            print(chart_msg, file=sys.stderr)
        raise stopped
    report.print_report(doc)
    if chart_msg:
        print(chart_msg)
    print(f"\n{wrote}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`pyalexnet bench ARGV`, through the command line's own handling (Ctrl-C, a reader gone away, file errors):
    this copy of it caught fewer, and ended those in tracebacks."""
    from ..cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])
