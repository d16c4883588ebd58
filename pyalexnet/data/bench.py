"""Data-loading throughput, in images per second per CPU core.

    python -m pyalexnet.data.bench [--images 64] [--out DIR]      # e.g. --out benchmarks/results

(a) JPEG decoding + resize to 256 + centre crop (Pillow), the cost `pyalexnet prepare` pays once;
(b) reading a prepared store (memmap, warm page cache) with the CPU augmentation kernel (224 crop, flip,
    PCA lighting, mean subtraction) through the Loader, one worker thread;
(c) the same batches augmented by the CUDA kernel (uint8 upload + kernel), when a GPU is usable.
(a) and (b) run in a child process with OMP_NUM_THREADS=1, so they are truly one core; the all-core
Loader throughput is measured too. Prints a table; with --out DIR also writes it and its figures to
DIR/data_loading_cpu.txt and DIR/data_loading_cpu.json (without --out nothing is written).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .._backend import output_folder_problem
from ..commands import positive_int

SIZE, CROP, BATCH = 256, 224, 64
PROG = "python -m pyalexnet.data.bench"


def store_size(images: int) -> int:
    """Images in the prepared store: 4x the JPEGs, but at least one batch (a store smaller than a batch
    yields no training batch at all, and its rate would read 0 images/s)."""
    return max(4 * images, BATCH)


def _photo_like(rng, h, w):
    """A smooth colour field plus texture and noise: compresses and decodes like a photograph."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(2 * np.pi * (f * x + g * y) + p) for f, g, p in rng.uniform(0.5, 4, (3, 3))], -1)
    img = 127 + 80 * base + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _timed(fn, min_seconds=1.0):
    """Best rate (items/s) over repeats of fn() -> number of items, for at least min_seconds."""
    fn()  # warm-up
    best, spent = 0.0, 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, n / dt)
    return best


def bench_decode(tmp: Path, n: int) -> float:
    from PIL import Image

    from ._folder import decode_image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp / f"img{i}.jpg"
        Image.fromarray(_photo_like(rng, 375, 500)).save(p, quality=90)  # ImageNet's typical 500x375
        paths.append(str(p))
    return _timed(lambda: sum(decode_image(p, SIZE).shape[0] > 0 for p in paths))


def _store_like(tmp: Path, n: int):
    from ._datasets import Dataset

    rng = np.random.default_rng(1)
    mm = np.memmap(tmp / "images.u8", np.uint8, "w+", shape=(n, SIZE, SIZE, 3))
    for i in range(n):
        mm[i] = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mm.flush()
    images = np.memmap(tmp / "images.u8", np.uint8, "r", shape=(n, SIZE, SIZE, 3))
    return Dataset(images, np.zeros(n, np.int64), ["x"])


def bench_loader(tmp: Path, n: int, workers: int, device: str = "cpu") -> float:
    from ._loader import Loader

    ds = _store_like(tmp, n)
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))
    loader = Loader(ds, BATCH, crop_size=CROP, mean_image=np.full((SIZE, SIZE, 3), 120, np.float32),
                    eigvals=[0.2, 0.02, 0.004], eigvecs=q, workers=workers, device=device)
    epoch = [0]

    def one_epoch():
        epoch[0] += 1
        loader.set_epoch(epoch[0])
        count = 0
        for x, y in loader:
            count += len(y)
        if device != "cpu":
            from .._backend import cupy_module

            cupy_module().cuda.get_current_stream().synchronize()
        return count

    return _timed(one_epoch)


def child(n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        return {"jpeg_decode_resize_per_core": bench_decode(tmp, n),
                "store_cpu_augment_per_core": bench_loader(tmp, store_size(n), workers=1)}


def _out_folder(ap, out: Path | None) -> None:
    """Refuse an --out that cannot take the results before the minutes of benchmarking, not after."""
    if out is None:
        return
    problem = output_folder_problem(out, "--out", files=("data_loading_cpu.json", "data_loading_cpu.txt"))
    if problem:
        ap.error(f"{problem}: give a folder that can take data_loading_cpu.json and .txt")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=positive_int, default=64,
                    help=f"JPEGs to decode, at least 1 (the store holds 4x as many, at least one batch of {BATCH})")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder to write data_loading_cpu.json and .txt into (default: print only)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        if args.child:
            print(json.dumps(child(args.images)))
            return 0
        _out_folder(ap, args.out)
        return _run(args)
    except KeyboardInterrupt:
        if not args.child:
            print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _run(args) -> int:
    from .. import backend_info, cuda_available
    from ..bench.env import cpu_model

    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "pyalexnet.data.bench", "--child", "--images", str(args.images)],
                         env=env, capture_output=True, text=True)
    if res.returncode == 130:
        raise KeyboardInterrupt
    if res.returncode != 0:
        lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
        print(f"{PROG}: the one-core measurement failed (exit status {res.returncode}): "
              f"{lines[-1] if lines else 'no message'}", file=sys.stderr)
        return 1
    results = json.loads(res.stdout.strip().splitlines()[-1])
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        results["store_cpu_augment_all_cores"] = bench_loader(Path(d), store_size(args.images), workers=cores)
        gpu_note = None
        if cuda_available():
            results["store_gpu_augment"] = bench_loader(Path(d), store_size(args.images), workers=1,
                                                        device="cuda:0")
        else:
            gpu_note = f"skipped: no usable GPU ({backend_info()['reason']})"
    info = backend_info()
    report = {
        "what": "images per second; *_per_core ran on one core (OMP_NUM_THREADS=1, one loader thread)",
        "image_size": SIZE, "crop_size": CROP, "batch_size": BATCH, "cpu_cores": cores,
        "cpu": cpu_model(), "python": platform.python_version(),  # the model: platform.processor() is "x86_64" on Linux
        "gpus": [g["name"] for g in info["gpus"]], "results": {k: round(v, 1) for k, v in results.items()},
        "gpu_note": gpu_note,
        "load_average_1min": round(os.getloadavg()[0], 2),  # other jobs on the machine lower these numbers
    }
    rows = [("(a) JPEG decode + resize to 256 (Pillow)", "1 core", results["jpeg_decode_resize_per_core"]),
            ("(b) prepared store + CPU augmentation", "1 core", results["store_cpu_augment_per_core"]),
            ("(b) prepared store + CPU augmentation", f"{cores} cores", results["store_cpu_augment_all_cores"])]
    if "store_gpu_augment" in results:
        rows.append(("(c) prepared store + GPU augmentation", "1 thread + GPU", results["store_gpu_augment"]))
    lines = [f"data loading, {SIZE}x{SIZE} stored, {CROP} crops, batch {BATCH}, {cores} CPU cores "
             f"(load average {os.getloadavg()[0]:.1f} during the run)",
             f"{'what':<44} {'on':<16} {'images/s':>10}"]
    lines += [f"{w:<44} {o:<16} {r:>10.1f}" for w, o, r in rows]
    if gpu_note:
        lines.append(f"(c) GPU augmentation: {gpu_note}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "data_loading_cpu.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "data_loading_cpu.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
