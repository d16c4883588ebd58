"""The training set's statistics: the mean image and the eigen-decomposition of the RGB covariance.

Accumulated streaming, in float64 running sums, so a store of 1.2M images is never held in memory and an
interrupted `pyalexnet prepare` can save and restore the sums.
"""
from __future__ import annotations

import numpy as np


class RunningStats:
    """Running sums over uint8 (n, S, S, 3) batches.

    finalize() gives the mean image (float32 (S, S, 3), in 0..255 pixel units) and the eigenvalues
    (descending, float64 (3,)) and eigenvectors (columns, float64 (3, 3)) of the covariance of RGB pixel
    values measured on the 0..1 scale (pixel / 255), the scale on which the paper's lighting rule
    a_i * lambda_i gives sensible colour shifts (ImageNet's are about 0.22, 0.019, 0.0045).
    """

    def __init__(self, image_size: int) -> None:
        self.image_sum = np.zeros((image_size, image_size, 3), np.float64)
        self.rgb_sum = np.zeros(3, np.float64)
        self.rgb_outer = np.zeros((3, 3), np.float64)
        self.images = 0

    def update(self, batch: np.ndarray) -> None:
        if len(batch) == 0:
            return
        self.image_sum += batch.sum(axis=0, dtype=np.float64)
        pixels = batch.reshape(-1, 3).astype(np.float64)
        self.rgb_sum += pixels.sum(axis=0)
        self.rgb_outer += pixels.T @ pixels
        self.images += len(batch)

    def state(self) -> dict:
        return {"image_sum": self.image_sum, "rgb_sum": self.rgb_sum, "rgb_outer": self.rgb_outer,
                "images": np.int64(self.images)}

    @classmethod
    def from_state(cls, state) -> "RunningStats":
        s = cls(state["image_sum"].shape[0])
        s.image_sum = np.array(state["image_sum"], np.float64)
        s.rgb_sum = np.array(state["rgb_sum"], np.float64)
        s.rgb_outer = np.array(state["rgb_outer"], np.float64)
        s.images = int(state["images"])
        return s

    def finalize(self):
        if self.images == 0:
            raise ValueError("cannot compute statistics of an empty training set")
        mean_image = (self.image_sum / self.images).astype(np.float32)
        pixels = self.images * self.image_sum.shape[0] * self.image_sum.shape[1]
        mu = self.rgb_sum / pixels
        cov = (self.rgb_outer / pixels - np.outer(mu, mu)) / 255.0**2
        return (mean_image, *eigen_rgb(cov))


def eigen_rgb(cov: np.ndarray):
    """Eigenvalues (descending, clipped at 0) and unit eigenvectors (columns) of a 3x3 covariance; each
    eigenvector's largest component is made positive so the result does not depend on the solver's signs."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, np.float64))
    order = np.argsort(vals)[::-1]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(3)])
    return vals, vecs * signs


def compute_stats(images: np.ndarray, chunk: int = 1024):
    """mean_image, eigvals, eigvecs of an in-memory (or memmapped) uint8 (N, S, S, 3) array."""
    stats = RunningStats(images.shape[1])
    for start in range(0, len(images), chunk):
        stats.update(np.asarray(images[start:start + chunk]))
    return stats.finalize()
