"""The data pipeline: data sets, prepared stores, augmentation and the background batch loader.

    splits = load_dataset("builtin")          # or a folder, a store, "cifar10:PATH", "fashion-mnist"
    loader = Loader(splits.train, 128, crop_size=splits.crop_size, mean_image=splits.mean_image,
                    eigvals=splits.eigvals, eigvecs=splits.eigvecs, seed=0)
    for epoch in range(90):
        loader.set_epoch(epoch)
        for x, y in loader: ...               # x float32 NCHW (0..255 minus the mean), y int64

Network inputs are in 0..255 pixel units minus the training set's mean image (as cuda-convnet fed
them). See _augment.py for the exact crop, flip, lighting and mean rule.
"""
from ._augment import augment, center_crop, lighting_offsets, random_parameters, ten_crops
from ._datasets import Dataset, Splits, crop_size_for, is_image_folder, load_dataset, smallest_image_size
from ._folder import has_own_validation_images
from ._loader import Loader
from ._names import class_names_for, find_class_names, read_class_names
from ._stats import RunningStats, compute_stats
from ._store import is_store, open_store, prepare

__all__ = ["load_dataset", "Splits", "Dataset", "Loader", "augment", "center_crop", "ten_crops", "prepare",
           "open_store", "is_store", "compute_stats", "RunningStats", "lighting_offsets", "random_parameters",
           "crop_size_for", "smallest_image_size", "class_names_for", "find_class_names", "read_class_names",
           "has_own_validation_images", "is_image_folder"]
