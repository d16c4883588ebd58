"""Batches for training and evaluation, prepared by background threads while the model trains.

Determinism: epoch e's order is a permutation drawn from SeedSequence([seed, e, 0]) and batch b's
augmentation parameters come from a Generator seeded with [seed, e, 1, b], so a batch depends only on
(seed, epoch, step), whichever thread makes it and wherever a run resumes.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import math

import numpy as np

from .. import _backend as B
from . import _augment


class Loader:
    """Iterating yields (x, y): x float32 (batch, 3, crop, crop) on `device` (numpy for "cpu", CuPy for
    "cuda:N"), y int64 numpy labels.

    train=True: random crop, horizontal flip with probability 1/2 (flip=False turns it off), PCA lighting
    alpha ~ N(0, pca_std) per image and presentation, mean subtraction; shuffled, last partial batch
    dropped (shuffle=, drop_last= override). train=False: centre crop minus the mean, in order, all images.

    `workers` threads make up to `prefetch` batches ahead (default 2 * workers, at least 2): memory stays
    bounded. workers=0 makes each batch in the consuming thread. On "cuda:N" the threads gather the uint8
    batch and draw its parameters; the consuming thread uploads it and runs the CUDA kernel on CuPy's
    current stream. Breaking out of the loop, close(), or an exception (a worker's is re-raised here)
    stops the threads.
    """

    def __init__(self, dataset, batch_size: int, *, train: bool = True, crop_size: int, mean_image, eigvals=None,
                 eigvecs=None, seed: int = 0, epoch: int = 0, shuffle: bool | None = None,
                 drop_last: bool | None = None, workers: int = 2, device: str = "cpu", pca_std: float = 0.1,
                 flip: bool = True, start_step: int = 0, prefetch: int | None = None) -> None:
        # Integers (1.5 images a batch was cut to 1; workers=None failed deep inside with a comparison).
        batch_size, crop_size = B.integer(batch_size, "batch_size", low=1), B.integer(crop_size, "crop_size")
        seed, epoch = B.integer(seed, "seed", low=0, high=2**63 - 1), B.integer(epoch, "epoch", low=0)
        workers = B.integer(workers, "workers", low=0)
        if B.real_number(pca_std, "pca_std") < 0:  # NaN or inf would make every batch NaN
            raise ValueError(f"pca_std must be >= 0, got {pca_std}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.image_size = dataset.images.shape[1]
        self.crop_size = int(crop_size)
        if not 1 <= self.crop_size <= min(dataset.images.shape[1:3]):
            raise ValueError(f"crop_size {crop_size} must be between 1 and the image size "
                             f"{dataset.images.shape[1]}x{dataset.images.shape[2]}")
        self.mean_image = np.ascontiguousarray(mean_image, np.float32)
        if self.mean_image.shape != dataset.images.shape[1:]:
            raise ValueError(f"mean_image must have shape {dataset.images.shape[1:]}, got {self.mean_image.shape}")
        self.eigvals = None if eigvals is None else np.asarray(eigvals, np.float64)
        self.eigvecs = None if eigvecs is None else np.asarray(eigvecs, np.float64)
        for name, value, shape in (("eigvals", self.eigvals, (3,)), ("eigvecs", self.eigvecs, (3, 3))):
            if value is not None and value.shape != shape:  # else a broadcast error at the first batch
                raise ValueError(f"{name} must have shape {shape} (RGB), got {value.shape}")
        if self.train and pca_std > 0 and (self.eigvals is None or self.eigvecs is None):
            raise ValueError("training-mode PCA lighting needs eigvals and eigvecs (or pass pca_std=0)")
        self.seed, self.epoch = int(seed), int(epoch)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.workers = int(workers)
        self.prefetch = max(2, 2 * self.workers) if prefetch is None else max(1, int(prefetch))
        self.pca_std, self.flip = float(pca_std), bool(flip)
        self.start_step = int(start_step)
        self.device = str(device)
        self._gpu = None
        if self.device != "cpu":
            if not self.device.startswith("cuda"):
                raise ValueError(f"device must be 'cpu' or 'cuda:N', got {device!r}")
            from .. import _backend

            if not _backend.cuda_available():
                raise ValueError(f"device {device!r} needs the CUDA backend: {_backend.backend_info()['reason']}")
            self._gpu = int(self.device.partition(":")[2] or 0)
        self._gpu_mean = None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_skipped(self) -> int:
        """Images left out of the data set because they could not be read (see dataset.skipped)."""
        return getattr(self.dataset, "num_skipped", 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = B.integer(epoch, "epoch", low=0)

    def order(self) -> np.ndarray:
        """This epoch's image order."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([self.seed, self.epoch, 0]).permutation(n).astype(np.int64)

    def __iter__(self):
        return self.iter_from(self.start_step)

    def iter_from(self, step: int) -> "_Epoch":
        """This epoch's batches from batch `step` on (to resume mid-epoch)."""
        if not 0 <= int(step) <= len(self):
            raise ValueError(f"step must be in [0, {len(self)}], got {step}")
        return _Epoch(self, int(step))

    # --- one batch ------------------------------------------------------------------------------------

    def _parameters(self, step: int, n: int):
        if not self.train:
            return None, None, None
        rng = np.random.default_rng([self.seed, self.epoch, 1, step])
        return _augment.random_parameters(rng, n, self.dataset.images.shape[1:3], self.crop_size, eigvals=self.eigvals,
                                          eigvecs=self.eigvecs, pca_std=self.pca_std, flip=self.flip)

    def _host_batch(self, order: np.ndarray, step: int):
        """Runs in a worker: the finished batch on the CPU, or what the GPU kernel needs."""
        idx = order[step * self.batch_size:(step + 1) * self.batch_size]
        offsets, flips, lighting = self._parameters(step, len(idx))
        labels = self.dataset.labels[idx]
        if self._gpu is None:
            x = _augment.augment(self.dataset.images, self.crop_size, self.mean_image, offsets=offsets, flips=flips,
                                 lighting=lighting, index=idx)
            return x, labels
        batch = np.ascontiguousarray(self.dataset.images[np.sort(idx)][np.argsort(np.argsort(idx))])
        return (batch, offsets, flips, lighting), labels

    def _finish(self, item):
        x, labels = item
        if self._gpu is None:
            return x, labels
        from .._backend import cupy_module

        cp = cupy_module()
        batch, offsets, flips, lighting = x
        with cp.cuda.Device(self._gpu):
            if self._gpu_mean is None:
                self._gpu_mean = cp.asarray(self.mean_image)
            x = _augment.augment(cp.asarray(batch), self.crop_size, self._gpu_mean, offsets=offsets, flips=flips,
                                 lighting=lighting)
        return x, labels


class _Epoch:
    """An iterator over one epoch's batches; close() (or leaving a `with` block, or being dropped) stops
    its threads."""

    def __init__(self, loader: Loader, start: int) -> None:
        self._loader = loader
        self._order = loader.order()
        self._steps = iter(range(start, len(loader)))
        self._pending: collections.deque = collections.deque()
        self._pool = (cf.ThreadPoolExecutor(loader.workers, thread_name_prefix="pyalexnet-loader")
                      if loader.workers > 0 else None)
        self._closed = False
        if self._pool is not None:
            for _ in range(loader.prefetch):
                if not self._submit():
                    break

    def _submit(self) -> bool:
        step = next(self._steps, None)
        if step is None:
            return False
        self._pending.append(self._pool.submit(self._loader._host_batch, self._order, step))
        return True

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        try:
            if self._pool is None:
                step = next(self._steps, None)
                if step is None:
                    raise StopIteration
                item = self._loader._host_batch(self._order, step)
            else:
                if not self._pending:
                    raise StopIteration
                item = self._pending.popleft().result()  # re-raises a worker's exception
                self._submit()
            return self._loader._finish(item)
        except BaseException:  # StopIteration, a worker's error, Ctrl-C: stop the threads either way
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # a running batch finishes, then the threads end

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
