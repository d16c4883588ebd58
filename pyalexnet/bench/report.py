"""Targets (the issues' PASS/FAIL criteria), the terminal table, the JSON, the markdown and the chart."""
from __future__ import annotations

import json
from pathlib import Path

MEMORY_GROUPS = ("lrn", "pool", "relu", "dropout", "softmax", "sgd")


def _ms(entry):
    return entry["median_ms"] if entry and entry.get("status") == "ok" else None


def add_rates(results: list[dict], ceilings: dict, ref_names: list[str]) -> None:
    """Achieved rate as a fraction of the measured ceiling, and ours/reference ratios."""
    by_name = {r["name"]: r for r in results}
    for r in results:
        ours = _ms(r["impl"].get("ours"))
        r["ratio"] = {}
        refs = by_name.get(r.get("reference_row"), r)["impl"]   # a forced-algorithm row: its main row's
        for name in ref_names:
            ref = _ms(refs.get(name))
            r["ratio"][name] = ours / ref if ours and ref else None
        for name, e in r["impl"].items():
            t = _ms(e)
            if t is None:
                continue
            if r["bound"] == "compute":
                e["rate"] = r["flops"] / (t * 1e-3)
                e["fraction_of_peak"] = e["rate"] / ceilings["fp32_flops_per_s"]
            else:
                e["rate"] = r["bytes"] / (t * 1e-3)
                e["fraction_of_peak"] = e["rate"] / ceilings["bandwidth_bytes_per_s"]
                copy_ms = _ms(r.get("same_size_copy"))
                if copy_ms:
                    e["fraction_of_copy"] = copy_ms / t


# The issues' targets, by name (the JSON's and the table's words; the ops chart colours its bars by them).
CONV_VS_CUDNN = "ours/cuDNN fp32 <= 2"
CONV_OF_PEAK = ">= 40% fp32 peak"
MEMORY_OF_COPY = ">= 70% of a same-size copy"
LRN_VS_PYTORCH = "fwd+bwd >= 3x PyTorch"
POOL_VS_PYTORCH = "no slower than PyTorch"


def _target(name, value, threshold, higher_is_better):
    ok = None if value is None else (value >= threshold if higher_is_better else value <= threshold)
    return {"name": name, "value": value, "threshold": threshold, "pass": ok}


# What the issues' targets are judged at: AlexNet's shapes with batch 128 (issues 3 and 4).
TARGET_BATCH = 128


def targets_not_judged(batch: int, quick: bool) -> str | None:
    """Why a run's rows get no PASS/FAIL (None: they do): the targets are for batch 128, and a --quick run's
    times are a smoke test, not figures."""
    if quick:
        return "a --quick smoke run"
    if batch != TARGET_BATCH:
        return f"batch {batch}, not the issues' {TARGET_BATCH}"
    return None


def add_targets(results: list[dict], ref: str, ceilings: dict | None = None) -> None:
    """The GPU issues' criteria, against `ref` (PyTorch cuDNN float32). The conv rows' share of the float32
    peak is of the GPU's datasheet peak where it is known (ceilings["nominal_fp32_flops_per_s"]): the measured
    SGEMM ceiling is lower (52 of 66.9 TFLOP/s on an H100) and would pass a kernel at 31-40% of the peak."""
    by_name = {r["name"]: r for r in results}
    nominal = (ceilings or {}).get("nominal_fp32_flops_per_s")
    for r in results:
        t = r["targets"] = []
        ours = r["impl"].get("ours", {})
        frac = ours.get("fraction_of_peak") if ours.get("status") == "ok" else None
        layer = r["name"].split(".")[0]
        # LRN is judged on its forward and backward together
        pair = [by_name.get(f"{layer}.fwd"), by_name.get(f"{layer}.bwd")] if r["group"] == "lrn" else []
        if r["group"] == "conv":
            t.append(_target(CONV_VS_CUDNN, r["ratio"].get(ref), 2.0, False))
            if r["name"].endswith(".fwd") and r["name"] != "conv1.fwd":
                of_peak = ours["rate"] / nominal if nominal and frac is not None else frac
                t.append(dict(_target(CONV_OF_PEAK, of_peak, 0.40, True),
                              basis="datasheet peak" if nominal else "measured SGEMM ceiling (no datasheet peak known)"))
        if r["group"] in MEMORY_GROUPS:
            # Against a copy of the same bytes: a 1 GiB copy's bandwidth is out of reach of a 4 MiB
            # tensor (launch and latency); for the large tensors the two ceilings agree.
            of_copy = ours.get("fraction_of_copy") if ours.get("status") == "ok" else None
            t.append(_target(MEMORY_OF_COPY, of_copy, 0.70, True))
        if r["group"] == "lrn":
            ours_t = [_ms(p["impl"].get("ours")) if p else None for p in pair]
            ref_t = [_ms(p["impl"].get(ref)) if p else None for p in pair]
            speedup = sum(ref_t) / sum(ours_t) if None not in ours_t + ref_t else None
            t.append(_target(LRN_VS_PYTORCH, speedup, 3.0, True))
        if r["group"] == "pool":
            t.append(_target(POOL_VS_PYTORCH, r["ratio"].get(ref), 1.0, False))
        # Our kernel failed (an error, where the table says ERROR): its targets are not met. n/a stays for what
        # says nothing of ours: a reference or a ceiling that could not be measured.
        if any((x["impl"].get("ours") or {}).get("status") == "error" for x in [r] + [p for p in pair if p]):
            for target in t:
                target["pass"] = False


# ------------------------------------------------------------------------------------------------
def _fmt_ms(entry):
    if not entry:
        return "-"
    if entry.get("status") == "ok":
        return f"{entry['median_ms']:.3f}"
    return "ERROR"


def _fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def _fmt_work(r):
    if r["bound"] == "compute":
        return f"{r['flops'] / 1e9:.2f} GFLOP"
    return f"{r['bytes'] / 2**20:.1f} MiB"


def _fmt_rate(r, e):
    if not e or e.get("status") != "ok":
        return "-", "-"
    if r["bound"] == "compute":
        return f"{e['rate'] / 1e12:.2f} TFLOP/s", f"{100 * e['fraction_of_peak']:.0f}%"
    return f"{e['rate'] / 1e9:.0f} GB/s", f"{100 * e['fraction_of_peak']:.0f}%"


def _fmt_targets(r):
    parts = []
    for t in r.get("targets", []):
        verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        # The 40% is of the datasheet peak, not the `% ceiling` column's measured SGEMM: its own number, said.
        judged = f" ({100 * t['value']:.0f}% of the {t['basis']})" if t.get("basis") and t["value"] is not None else ""
        parts.append(f"{verdict} {t['name']}{judged}")
    return "; ".join(parts)


def table_rows(doc: dict) -> tuple[list[str], list[list[str]]]:
    refs = doc["config"]["references"]
    head = ["row", "ours ms"]
    for ref in refs:
        head += [f"{ref} ms", f"ours/{ref}"]
    head += ["work", "ours rate", "% ceiling", "% same-size copy", "max rel err"]
    gpu = doc["config"]["device"] == "cuda"
    if gpu:
        head.append("targets")
    body = []
    by_name = {r["name"]: r for r in doc["rows"]}
    for r in doc["rows"]:
        ours = r["impl"].get("ours")
        line = [r["name"], _fmt_ms(ours)]
        ref_impl = by_name.get(r.get("reference_row"), r)["impl"]
        for ref in refs:
            line += [_fmt_ms(ref_impl.get(ref)), _fmt_ratio(r["ratio"].get(ref))]
        rate, frac = _fmt_rate(r, ours)
        err = r.get("max_rel_error", {}).get("value")
        of_copy = (ours or {}).get("fraction_of_copy")
        line += [_fmt_work(r), rate, frac, "-" if of_copy is None else f"{100 * of_copy:.0f}%",
                 "-" if err is None else f"{err:.1e}"]
        if gpu:
            line.append(_fmt_targets(r))
        body.append(line)
    return head, body


def format_table(head, body) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def markdown_table(head, body) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(lines)


def _step_lines(doc) -> list[str]:
    lines = []
    for section in doc.get("steps", []):
        lines.append(f"- {section['title']} (batch {section['batch']}):")
        for name, e in section["runs"].items():
            if e.get("status") == "ok":
                extra = f"{e['images_per_s']:.1f} images/s, {e['median_ms']:.2f} ms/step (min {e['min_ms']:.2f}, max {e['max_ms']:.2f}, {e['repeats']} runs)"
            else:
                extra = f"{e.get('status')}: {e.get('error', '')}"
            lines.append(f"  - {name}: {extra}")
        if section.get("floor"):
            f = section["floor"]
            lines.append(f"  - arithmetic floor: {f['flops'] / 1e9:.1f} GFLOP / measured fp32 peak = {f['floor_ms']:.2f} ms"
                         + (f" (nominal peak: {f['nominal_floor_ms']:.2f} ms)" if f.get("nominal_floor_ms") else ""))
            for name, gap in f.get("gap", {}).items():
                lines.append(f"  - {name}: {gap:.1f}x the floor")
    return lines


def _ceiling_lines(doc) -> list[str]:
    c = doc["ceilings"]
    lines = [f"- bandwidth ceiling: {c['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s ({c['bandwidth_how']})",
             f"- fp32 ceiling: {c['fp32_flops_per_s'] / 1e12:.2f} TFLOP/s ({c['fp32_how']})"]
    if c.get("nominal_fp32_flops_per_s"):
        lines.append(f"- nominal fp32 peak for this GPU: {c['nominal_fp32_flops_per_s'] / 1e12:.1f} TFLOP/s (datasheet)")
    return lines


def _write_whole(path: Path, text: str) -> None:
    """path's text replaced whole or not at all: a full disk left half a JSON file in place of the last run's."""
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _reading_notes(doc: dict) -> str:
    """How to read the table: what the ratios and errors are, and why a CPU row may beat the copy ceiling."""
    notes = ("`ours/REF` is our time over the reference's: below 1 ours is faster. `max rel err` is "
             "max|ours - reference| / max|reference| over the row's outputs, against the first reference.")
    if doc["config"]["device"] == "cpu":
        notes += (" On a CPU the bandwidth ceiling is a copy far larger than the caches, so a tensor that fits in "
                  "them can run above 100% of it; `% same-size copy` is the fair comparison.")
    return notes


def _failure_lines(doc: dict) -> list[str]:
    """Each implementation that failed on a row, with its error: the table says only ERROR, and a reference's
    empty ratio would otherwise read as a row it has no counterpart for."""
    labels = doc["config"].get("reference_labels", {})
    return [f"- {r['name']}: {labels.get(name, name)} failed: {e.get('error', '?')}"
            for r in doc["rows"] for name, e in r["impl"].items() if e.get("status") == "error"]


def write_outputs(doc: dict, out_dir: Path, stem: str) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    _write_whole(paths["json"], json.dumps(doc, indent=1, default=str) + "\n")
    head, body = table_rows(doc)
    env, cfg = doc["meta"], doc["config"]
    md = [f"# pyalexnet benchmark: {env['device_name']}" + (" (QUICK smoke run: not figures)" if cfg.get("quick") else ""),
          "", *([f"**Interrupted ({doc['interrupted']}): only the rows timed before it are here.**", ""]
                if doc.get("interrupted") else []),
          *([f"On the CPU because the GPU backend is not usable here: {env['gpu_unusable']}.", ""]
            if env.get("gpu_unusable") else []),
          f"Command: `{cfg['command']}`  ",
          f"Date: {env['date_utc']}, pyalexnet {env['pyalexnet']} ({env.get('pyalexnet_commit') or 'no git'}), "
          f"numpy {env['numpy']}, PyTorch {env.get('torch') or 'not installed'}, CuPy {env.get('cupy') or '-'}, "
          f"CUDA runtime {env.get('cuda_runtime') or '-'}, driver {env.get('cuda_driver') or '-'}.  ",
          *([f"CPU kernels built for {env['pyalexnet_cpu_simd']}, {env.get('pyalexnet_cpu_threads')} threads.  "]
            if cfg["device"] == "cpu" and env.get("pyalexnet_cpu_simd") else []),
          f"Batch {cfg['batch']}; times are medians of up to {cfg['repeats']} repeats after warm-up "
          + ("(CUDA events, L2 flushed before each repeat)." if cfg["device"] == "cuda" else "(time.perf_counter)."),
          "References: " + (", ".join(f"`{k}` = {v}" for k, v in cfg["reference_labels"].items())
                            or "none (PyTorch is not installed)") + ".",
          "", "## Ceilings measured in this run", "", *_ceiling_lines(doc),
          "", "## Ops", "", markdown_table(head, body), "",
          *([f"Targets: not judged ({cfg['targets_not_judged']}).", ""] if cfg.get("targets_not_judged") else
            ["Targets: conv rows ours/cuDNN float32 time <= 2, conv2-5 forward >= 40% of the datasheet float32 "
             "peak (the measured SGEMM ceiling where none is known), memory-bound rows >= 70% of a same-size copy "
             "(`% ceiling` gives their share of the large copy too), LRN and pooling against PyTorch.", ""]
            if cfg["device"] == "cuda" else []),
          "Work is FLOPs for convolutions (a direct convolution's 2*N*K*(C/groups)*R*S*P*Q, also for the "
          "Winograd and FFT rows: an effective rate) and "
          "matrix products, else the minimum bytes moved; `% ceiling` is the achieved rate over the ceiling above; "
          "`% same-size copy` is a device copy of the row's bytes (half read, half written) timed in the same "
          "run, over our time: the memory-bound target. Rows named `convN.pass algorithm` force one of our "
          "convolution algorithms (the plain row is the library's own choice); their reference times are "
          "the plain row's. Rows `poolN.fwd`/`poolN.bwd` time max-pooling as training runs it (the forward "
          "stores each window's winner, the backward reads those instead of x); `poolN.bwd recompute` is our "
          "backward that recomputes the winners from x, against the references' times of `poolN.bwd`. "
          + _reading_notes(doc),
          "", "## Training step", "", *_step_lines(doc)]
    notes = [f"- {r['name']}: {r['note']}" for r in doc["rows"] if r.get("note")] + _failure_lines(doc)
    if notes:
        md += ["", "## Notes", "", *notes]
    if doc.get("ops_chart"):
        md += ["", f"![every op against the reference and its ceiling]({Path(doc['ops_chart']).name})"]
    if doc.get("chart"):
        md += ["", f"![per-layer step time]({Path(doc['chart']).name})"]
    _write_whole(paths["md"], "\n".join(md) + "\n")
    return paths


def print_report(doc: dict) -> None:
    head, body = table_rows(doc)
    print()
    print(format_table(head, body))
    print()
    print(_reading_notes(doc))
    failures = _failure_lines(doc)
    if failures:
        print("failed:\n" + "\n".join(failures))
    print("\n".join(_ceiling_lines(doc)))
    print("\n".join(_step_lines(doc)))


def _breakdown_figure(section: dict, title: str, plt):
    """The figure plot_breakdown saves, or None when no run has per-layer times."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    runs = {k: v for k, v in section["runs"].items() if v.get("status") == "ok" and v.get("segments")}
    if not runs:
        return None
    names = [s["name"] for s in next(iter(runs.values()))["segments"]]
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(names)), 4.8))
    width = 0.8 / len(runs)
    values = []
    for i, (label, run) in enumerate(runs.items()):
        seg = {s["name"]: s["median_ms"] for s in run["segments"]}
        heights = [seg[n] if seg.get(n, 0) > 0 else math.nan for n in names]  # a layer a run lacks: no bar
        bars = ax.bar([j + i * width for j in range(len(names))], heights, width, label=label)
        # Each bar's value over it: a log axis shows the small layers, but reading 0.43 ms off it is guesswork.
        ax.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.3g}" for h in heights], rotation=90,
                     padding=2, fontsize=7)
        values += [h for h in heights if not math.isnan(h)]
    # A log axis: one slow step (SGD's update, a CPU's fc6 backward) flattened the others on a linear one, so that
    # conv3's 0.7 ms beside the reference's 0.5 could not be compared; here each bar is as tall as its share of
    # the decades, and ours against the reference reads as a ratio, the same at 0.1 ms as at 10.
    ax.set_yscale("log")
    if values:
        # From a power of ten at least half the smallest value below it (at 0.011 ms over 0.01 a bar was a
        # sliver), up to room for the label over the tallest.
        ax.set_ylim(10 ** math.floor(math.log10(min(values) / 2)), max(values) * 4)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 2, 5, not 10^-1
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(names))])
    ax.set_xticklabels(names, rotation=60, ha="right")
    ax.set_ylabel("ms, log scale (median; lower is faster)")
    # A bar is the time between two marks of the step, which fall after the layer's ReLU, LRN and pooling.
    ax.set_xlabel("each layer's bar includes the ReLU, LRN, max-pooling and dropout that follow it in the network")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def plot_breakdown(section: dict, path: Path, title: str) -> str | None:
    """Bar chart of the step's per-layer time, ours beside the reference, on a log axis with each bar's value
    written over it. None when matplotlib is missing, "nothing" when no run has per-layer times."""
    return _save_figure(lambda plt: _breakdown_figure(section, title, plt), path)


def _save_figure(make, path: Path) -> str | None:
    """make(pyplot)'s figure saved at `path`: the path, None when matplotlib is missing, "nothing" when make
    gives no figure."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = make(plt)
    if fig is None:
        return "nothing"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# The targets each panel of the ops chart draws: those read off the bar it shows.
_RATIO_TARGETS = (CONV_VS_CUDNN, POOL_VS_PYTORCH, LRN_VS_PYTORCH)
_SHARE_TARGETS = (MEMORY_OF_COPY, CONV_OF_PEAK)
_PASS, _FAIL, _NO_TARGET = "#2ca02c", "#d62728", "#8c8c8c"


def _verdict_colour(r: dict, names) -> str:
    verdicts = [t["pass"] for t in r.get("targets", []) if t["name"] in names and t["pass"] is not None]
    return _NO_TARGET if not verdicts else (_PASS if all(verdicts) else _FAIL)


def _ops_figure(doc: dict, plt):
    """The figure plot_ops saves, or None when no row was timed."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    refs = doc["config"]["references"]
    ref = refs[0] if refs else None
    rows = [r for r in doc["rows"] if (r["impl"].get("ours") or {}).get("status") == "ok"]
    if not rows:
        return None
    labels = doc["config"].get("reference_labels", {})
    gpu = doc["config"]["device"] == "cuda"
    # At least 3 inches: `bench --only lrn` (one or two rows) was too short for its title and axes, and matplotlib
    # warned "Tight layout not applied".
    fig, (left, right) = plt.subplots(1, 2, sharey=True, figsize=(12, max(3.0, 1.2 + 0.24 * len(rows))),
                                      gridspec_kw={"width_ratios": [3, 2]})
    y = list(range(len(rows)))
    # Left: our time over the reference's, on a log axis (2x slower and 2x faster are as far from 1).
    ratios = [(r.get("ratio") or {}).get(ref) if ref else None for r in rows]
    shown = [x for x in ratios if x]
    bars = left.barh(y, [x or math.nan for x in ratios], color=[_verdict_colour(r, _RATIO_TARGETS) for r in rows],
                     left=0)
    left.bar_label(bars, labels=["" if not x else f"{x:.2f}" for x in ratios], padding=2, fontsize=7)
    by_name = {r["name"]: r for r in doc["rows"]}
    for yi, (r, x) in enumerate(zip(rows, ratios)):
        if ref and not x:  # said at the bar's place: an empty row read as a chart drawn wrong, or a missing op
            ref_entry = by_name.get(r.get("reference_row"), r)["impl"].get(ref) or {}
            left.text(1.0, yi, " reference failed" if ref_entry.get("status") == "error" else " no reference time",
                      va="center", fontsize=7, color=_FAIL)
    left.set_xscale("log")
    if shown:
        lo, hi = min(shown + [1.0]), max(shown + [1.0])
        left.set_xlim(lo / 1.5, hi * 2.2)
    left.axvline(1.0, color="black", linewidth=0.8)
    if gpu and any(r["group"] == "conv" for r in rows):
        left.axvline(2.0, color=_FAIL, linewidth=0.8, linestyle="--", label="convolution target: at most 2")
        left.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False)  # over the bars, not on them
    left.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    left.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel(f"our time / {labels.get(ref, ref) if ref else 'no reference'}'s\n(log scale; below 1: ours is faster)")
    left.set_yticks(y)
    left.set_yticklabels([r["name"] for r in rows], fontsize=8)
    left.set_ylim(len(rows) - 0.5, -0.5)  # the table's order, top to bottom, no empty band
    left.grid(axis="x", which="major", alpha=0.3)
    left.set_axisbelow(True)
    # Right: how near its ceiling each row runs: a copy of the same bytes for memory-bound rows, the float32
    # peak for arithmetic; the issues' targets are on these (70% of a copy, 40% of the peak for conv2-5 forward).
    shares, colours, texts = [], [], []
    for r in rows:
        ours = r["impl"]["ours"]
        share = ours.get("fraction_of_copy") if r["bound"] == "memory" else ours.get("fraction_of_peak")
        judged = next((t for t in r.get("targets", []) if t["name"] == CONV_OF_PEAK), None)
        if judged is not None and judged["value"] is not None:  # the datasheet peak's share, as the verdict took it
            share = judged["value"]
        shares.append(math.nan if share is None else 100 * share)
        colours.append(_verdict_colour(r, _SHARE_TARGETS))
        texts.append("" if share is None else f"{100 * share:.0f}% {'copy' if r['bound'] == 'memory' else 'peak'}")
    bars = right.barh(y, shares, color=colours)
    right.bar_label(bars, labels=texts, padding=2, fontsize=7)
    finite = [s for s in shares if not math.isnan(s)]
    right.set_xlim(0, max(finite + [100]) * 1.25)
    if gpu:
        right.axvline(70, color=_FAIL, linewidth=0.8, linestyle="--", label="memory-bound target: 70% of a copy")
        right.axvline(40, color=_FAIL, linewidth=0.8, linestyle=":", label="conv2-5 forward target: 40% of peak")
        right.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    right.set_xlabel("% of its ceiling: a same-size copy (memory-bound rows)\nor the float32 peak (the others)")
    right.grid(axis="x", alpha=0.3)
    right.set_axisbelow(True)
    env = doc["meta"]
    fig.suptitle(f"pyalexnet ops, batch {doc['config']['batch']}, {env.get('device_name', '')}"
                 + (" (QUICK smoke run)" if doc["config"].get("quick") else "")
                 + (": green meets its target, red misses it, grey has none" if gpu else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # the title's line kept clear of the bars
    return fig


def plot_ops(doc: dict, path: Path) -> str | None:
    """Every timed op in one chart: our time over the reference's and the share of its ceiling, each bar
    coloured by the issue's target it is judged by (on a GPU). None when matplotlib is missing, "nothing"
    when no row was timed."""
    return _save_figure(lambda plt: _ops_figure(doc, plt), path)
