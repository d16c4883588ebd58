"""Training with the paper's momentum SGD, evaluation, and checkpoints that resume exactly.

train() -> TrainResult(model, history, ...); evaluate(model, data) -> {"top1", "top5", ...};
load_checkpoint(path) -> (model, metadata). See train()'s docstring for every option.

Determinism: a batch depends only on (seed, epoch, step) (pyalexnet.data.Loader), a dropout mask only on
(seed, global step, layer, tower) (AlexNet), and SGD has no randomness, so a checkpoint holding the
weights, the momentum buffers, the counters and the schedule's state is all a run needs to continue as
if it had never stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import math
import numbers
import os
import shlex
import signal
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from . import _backend as B
from . import ops
from .model import INITS, AlexNet, _resolve_init, default_init, parse_devices
from .viz import save_training_pictures

__all__ = ["train", "evaluate", "ten_crop_probabilities", "TrainResult", "TrainingDiverged", "load_checkpoint",
           "save_checkpoint", "PlateauSchedule", "StepSchedule", "CHECKPOINT_NAME", "HISTORY_NAME", "defaults_for"]

CHECKPOINT_NAME = "checkpoint.npz"
HISTORY_NAME = "history.jsonl"
CHECKPOINT_FORMAT = 1
SMALL_PRESET_BELOW = 96  # crops smaller than this get the small preset


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. The last good checkpoint (if any) is kept untouched.

    Attributes: epoch, step (within the epoch) and global_step, counted from 0 (the message counts epochs
    and steps from 1); loss (the NaN or inf); checkpoint (the last good checkpoint's path, or None).
    """

    def __init__(self, message: str, *, epoch: int, step: int, global_step: int, loss: float,
                 checkpoint: str | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.global_step, self.loss, self.checkpoint = epoch, step, global_step, loss, checkpoint


# Bumped whenever a change makes train()'s default recipe give other results for the same arguments, so that a
# study of several runs (benchmarks.seeds --resume) does not mix runs of two recipes. 2: biases take no weight
# decay (1: every parameter did).
RECIPE_VERSION = 2


def defaults_for(preset: str) -> dict[str, Any]:
    """The defaults train() uses for a preset when epochs, lr or batch_size are not given.

    "paper" is the paper's recipe (lr / 10 whenever the validation error stops improving). "small"
    (15 epochs, lr 0.005, batch 32, He init, lr / 10 at the starts of epochs 11 and 14) is tuned so that
    `pyalexnet train` on the built-in data set finishes in a few minutes on two CPU cores, far below
    chance's 90% top-1 error whatever the seed (see benchmarks/results/seeds_small_cpu). The small
    network sits near chance for its first 2-5 epochs while the validation error wobbles, so it uses
    fixed steps: a plateau rule cut the rate there (46-67% error after 10 epochs). At lr 0.01 (the
    paper's rate, for 4x the batch) the error jumped back up now and then; seed 3 jumped from 24% to 65%
    in the epoch before the first cut and ended at 11.9% (the other 7 of 8 seeds at 0.1-2.3%); at 0.005
    the jumps are smaller and all 8 seeds ended at 0.1-0.8% (one BLAS thread each; 0.1-0.4% since the
    biases take no weight decay).
    """
    if preset == "paper":
        return dict(epochs=90, lr=0.01, batch_size=128, init=default_init(preset), patience=2, schedule="plateau")
    if preset == "small":
        return dict(epochs=15, lr=0.005, batch_size=32, init=default_init(preset), patience=1, schedule=(10, 13))
    return dict(epochs=10, lr=0.01, batch_size=32, init=default_init(preset), patience=1, schedule="plateau")


# ----- learning-rate schedules -------------------------------------------------------------------------
class PlateauSchedule:
    """Divides the learning rate by `factor` when validation top-1 error has not improved by more than
    `min_delta` for `patience` epochs, at most `max_reductions` times (the paper: by 10, three times)."""

    kind = "plateau"

    def __init__(self, lr: float, *, patience: int = 1, factor: float = 10.0, max_reductions: int = 3,
                 min_delta: float = 1e-4) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.lr, self.patience, self.factor = float(lr), int(patience), float(factor)
        self.max_reductions, self.min_delta = int(max_reductions), float(min_delta)
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def at_epoch_start(self, epoch: int) -> float:
        return self.lr

    def after_epoch(self, epoch: int, val_error: float) -> float:
        if val_error < self.best - self.min_delta:
            self.best, self.bad_epochs = val_error, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience and self.reductions < self.max_reductions:
                self.lr /= self.factor
                self.reductions += 1
                self.bad_epochs = 0
        return self.lr

    def state(self) -> dict:
        return dict(kind=self.kind, lr=self.lr, best=None if math.isinf(self.best) else self.best,
                    bad_epochs=self.bad_epochs, reductions=self.reductions, patience=self.patience)

    def load_state(self, s: dict) -> None:
        self.lr, self.bad_epochs, self.reductions = float(s["lr"]), int(s["bad_epochs"]), int(s["reductions"])
        self.best = math.inf if s["best"] is None else float(s["best"])
        self.patience = int(s.get("patience", self.patience))


class StepSchedule:
    """The learning rate divided by `factor` at the start of each listed epoch (0-based)."""

    kind = "steps"

    def __init__(self, lr: float, epochs, *, factor: float = 10.0) -> None:
        self.base, self.factor = float(lr), float(factor)
        self.milestones = sorted(int(e) for e in epochs)
        self.lr = self.base

    def at_epoch_start(self, epoch: int) -> float:
        self.lr = self.base / self.factor ** sum(1 for m in self.milestones if epoch >= m)
        return self.lr

    def after_epoch(self, epoch: int, val_error: float) -> float:
        return self.at_epoch_start(epoch + 1)

    def state(self) -> dict:
        return dict(kind=self.kind, lr=self.lr, milestones=self.milestones, base=self.base)

    def load_state(self, s: dict) -> None:
        self.lr = float(s["lr"])
        self.milestones = [int(e) for e in s.get("milestones", self.milestones)]
        self.base = float(s.get("base", self.base))


def _make_schedule(schedule, lr: float, patience: int):
    if isinstance(schedule, str):
        if schedule == "plateau":
            return PlateauSchedule(lr, patience=patience)
        if schedule in ("constant", "none"):
            return StepSchedule(lr, [])
        raise ValueError(f"unknown schedule {schedule!r}: use 'plateau', 'constant' or a list of epochs")
    try:
        epochs = list(schedule)
    except TypeError:
        raise ValueError(f"schedule must be 'plateau', 'constant' or a list of epochs, got {schedule!r}") from None
    wrong = [e for e in epochs if isinstance(e, bool) or not isinstance(e, numbers.Integral)]
    if wrong:  # int() made 1.7 epoch 1 and "2" epoch 2 without a word
        raise ValueError(f"schedule epochs must be whole numbers, got {wrong[0]!r} in {schedule!r}")
    epochs = [int(e) for e in epochs]
    if not epochs:  # an empty list read as "constant": say that, if it is what is meant
        raise ValueError("schedule is an empty list of epochs: give 'constant' for a constant learning rate")
    repeated = sorted({e for e in epochs if epochs.count(e) > 1})
    if repeated:  # each listed epoch divides by 10: [1, 1] divided by 100 at epoch 1
        raise ValueError(f"schedule lists epoch {repeated[0]} more than once (each divides the lr by 10): {epochs}")
    if any(e < 1 for e in epochs):
        raise ValueError(f"schedule epochs must be >= 1 (0-based: the lr is divided by 10 at the start of each, and "
                         f"epoch 0 is the first; to start lower, give a smaller lr), got {epochs}")
    return StepSchedule(lr, epochs)


class _StopRequest:
    """True once Ctrl-C asked a training run to stop."""

    def __init__(self) -> None:
        self.asked = False

    def __bool__(self) -> bool:
        return self.asked


@contextlib.contextmanager
def _stop_on_interrupt(ckpt_path):
    """Within, a first Ctrl-C asks the run to stop at the end of its step (so it can write a checkpoint that
    --resume continues: a step cut in half would leave the weights half updated); a second stops at once.
    Only where there is a checkpoint (ckpt_path) to write, and only in the main thread (where signals arrive).
    A process that ignores SIGINT (started in the background by a script, whose Ctrl-C must not reach it) keeps
    ignoring it, as Python itself does: this handler made such a run stop at the script's Ctrl-C."""
    request = _StopRequest()
    if ckpt_path is None or threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield request
        return

    def ask(signum, frame):
        if request.asked:  # said, as the first stop is (a bare "interrupted" left the user to guess)
            raise KeyboardInterrupt("stopped at once by a second Ctrl-C: " + (
                f"{ckpt_path} holds the last checkpoint, which --resume (resume=True) continues from"
                if Path(ckpt_path).exists() else "no checkpoint had been written yet; nothing was saved"))
        request.asked = True
        print("\nstopping at the end of this step to write a checkpoint (Ctrl-C again stops at once, losing the "
              "steps since the last one)", file=B.message_stream())

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _said_unsaved(ckpt_path, where):
    """Without a checkpoint folder, Ctrl-C stops at once (nothing to save): said so, and where it stopped."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if ckpt_path is not None or str(exc):
            raise
        epoch, step, steps_per_epoch = where()
        raise KeyboardInterrupt(f"stopped at epoch {epoch + 1}, step {step} of {steps_per_epoch}; nothing was saved "
                                "(checkpoint_dir, --checkpoint-dir, keeps a run that can be resumed)") from None


def _interrupted_message(ckpt_path, epoch: int, step: int, steps_per_epoch: int, epochs: int) -> str:
    if epoch >= epochs:  # Ctrl-C in the last epoch's last step, validation or pictures: the run is done
        return (f"stopped after the run's last epoch ({epoch} of {epochs}); {ckpt_path} holds the trained run: "
                f"`pyalexnet eval {shlex.quote(str(Path(ckpt_path).parent))}` evaluates it (--resume with more --epochs trains on)")
    return (f"stopped at epoch {epoch + 1}, step {step} of {steps_per_epoch}; {ckpt_path} holds it: "
            f"--resume (resume=True) continues from there")


def _schedule_name(state: dict) -> str:
    if state["kind"] == "plateau":
        return "plateau"
    return ",".join(str(e) for e in state.get("milestones", [])) or "constant"


def _check_schedule(state: dict, *, given: dict, epochs: int, resume: bool, saved_state: dict | None,
                    ckpt_path) -> None:
    """The checks of a run's schedule (`state`, its kind and milestones) that need no data: run before the
    data loads, which for an image folder can take long, where the schedule and epochs are known by then.
    saved_state: a resumed run's schedule, which an explicit different one may not replace."""
    if saved_state is not None and given["schedule"] and _schedule_name(saved_state) != _schedule_name(state):
        raise ValueError(f"{ckpt_path} was trained with the {_schedule_name(saved_state)} schedule, not "
                         f"{_schedule_name(state)}: resume without a schedule (the run's goes on) or with the same one")
    if given["patience"] and state["kind"] != "plateau":  # it was ignored without a word
        raise ValueError(f"patience (--patience) is for the plateau schedule; this run's is {_schedule_name(state)}: "
                         "give schedule='plateau' (--schedule plateau) with it" + (", or leave it out" if not resume else ""))
    never = [m for m in state.get("milestones", []) if m >= epochs] if given["schedule"] else []
    if never:
        B.warn_user(f"schedule epoch{'s' if len(never) > 1 else ''} {', '.join(map(str, never))} never "
                    f"come{'' if len(never) > 1 else 's'}: the run has {_count(epochs, 'epoch')} (0-based, "
                    f"the last is {epochs - 1}; resumed with more, it reaches them)")


def _resumed_schedule(t: dict, sched, given: dict, *, lr: float, patience: int, epoch: int, ckpt_path):
    """(schedule, base_lr, note) for a run resumed from a checkpoint's training metadata `t`.

    The checkpoint's schedule goes on (its kind, milestones, patience and where it stands); a different
    explicit schedule is refused. An explicit lr other than the one the run started at sets the rate from
    now on (plateau) or the rate the milestones divide (steps), and `note` says so; the same lr as the
    run started with (the same command again, with --resume) changes nothing, so it continues exactly.
    """
    saved = t["schedule"]  # a different explicit schedule was refused before the data loaded (_check_schedule)
    if saved["kind"] == "plateau":
        sched = PlateauSchedule(saved["lr"], patience=int(saved.get("patience", patience)))
    else:
        sched = StepSchedule(saved.get("base", lr), saved.get("milestones", []))
    sched.load_state(saved)
    if given["patience"] and isinstance(sched, PlateauSchedule):
        sched.patience = patience
    base_lr = float(t.get("base_lr", lr))
    if not given["lr"] or "base_lr" not in t or lr == base_lr:
        return sched, base_lr, ""
    before = sched.lr
    if isinstance(sched, PlateauSchedule):
        sched.lr = lr
    else:
        sched.base = lr
        sched.at_epoch_start(epoch)
    return sched, lr, (f"lr {sched.lr:g} from now on (it was {before:g}; the run started at {base_lr:g}"
                       + (f", now {lr:g} before the schedule's divisions" if sched.lr != lr else "") + ")")


# ----- checkpoints -------------------------------------------------------------------------------------

def _read_umask() -> int:
    # Read once, at import: setting it to read it back is not safe while other threads create files.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def reports_top5(num_classes: int) -> bool:
    """Whether a top-5 error says anything: with 5 classes or fewer every label is among the top 5 (always 0)."""
    return num_classes > 5


def _count(n: int, word: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _few(names, most: int = 5) -> str:
    """Class names for a message: the first `most`, then how many more."""
    names = [str(n) for n in names]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _same_source(a: str, b: str) -> bool:
    """Whether two data sources as checkpoints record them name the same data (paths compared resolved)."""
    def split(source: str) -> tuple[str, str]:
        for kind in ("cifar10:", "fashion-mnist:"):
            if source.startswith(kind):
                return kind, source[len(kind):]
        return "", source

    (kind_a, path_a), (kind_b, path_b) = split(a), split(b)
    if a == b:
        return True
    try:
        return kind_a == kind_b and bool(path_a) and Path(path_a).resolve() == Path(path_b).resolve()
    except (OSError, RuntimeError):
        return False


def save_checkpoint(path, model: AlexNet, *, velocities: dict | None = None, meta: dict | None = None,
                    mean_image=None) -> str:
    """Writes the model (and optionally momentum buffers and training state) to `path` atomically: a
    temporary file in the same folder, then os.replace, so a crash never leaves half a checkpoint.

    path: the checkpoint file; an existing folder gets FOLDER/checkpoint.npz, the layout train's
    checkpoint_dir (--checkpoint-dir) writes and load_checkpoint(FOLDER) reads. Returns the path written.
    velocities: momentum buffers by parameter name (model.parameters()'s names and shapes).
    meta: JSON-serialisable entries added to the checkpoint's metadata (load_checkpoint returns them; the keys
    "format" and "model" are reserved: ValueError). mean_image: the training set's mean image, (H, W, 3) with H
    and W at least the model's input size (load_checkpoint's metadata["mean_image"]).
    A model train() trained (model.trained_on) is saved with what it trained on unless meta names data: its data,
    classes, held-out split and mean image, which pyalexnet eval and predict, and evaluate of the model loaded
    back, use as they would a training run's checkpoint.
    """
    if not isinstance(model, AlexNet):
        raise TypeError(f"model must be a pyalexnet.AlexNet, got {type(model).__name__}")
    run = model.trained_on if "data" not in (meta or {}) else None
    if run is not None and mean_image is None:
        mean_image = run["mean_image"]
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME  # as train's checkpoint_dir: what load_checkpoint(folder) reads
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a checkpoint file: pass the checkpoint file's path")
    # Checked before anything is written: a checkpoint that cannot be loaded back is found out only then.
    if velocities is not None:
        params = model.parameters()
        unknown = sorted(set(velocities) - set(params), key=str)
        if unknown:
            raise ValueError(f"velocities has names the model has no parameters for: {', '.join(map(repr, unknown))} "
                             f"(its parameters: {', '.join(params)})")
        for k, v in velocities.items():
            if tuple(np.shape(v)) != tuple(params[k].shape):
                raise ValueError(f"velocities[{k!r}] has shape {tuple(np.shape(v))}, the parameter "
                                 f"{tuple(params[k].shape)}")
    reserved = sorted({"format", "model"} & set(meta or {}))
    if reserved:
        raise ValueError(f"meta key {reserved[0]!r} is reserved: save_checkpoint writes the checkpoint's "
                         f"{'format' if reserved[0] == 'format' else 'model description'} there")
    if mean_image is not None:
        mean_image = np.asarray(mean_image, np.float32)
        if mean_image.ndim != 3 or mean_image.shape[2] != 3 or min(mean_image.shape[:2]) < model.input_size:
            raise ValueError(f"mean_image must be (H, W, 3) with H and W at least the model's input size "
                             f"{model.input_size}, got shape {mean_image.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"param/{k}": B.to_host(v) for k, v in model.parameters().items()}
    for k, v in (velocities or {}).items():
        arrays[f"velocity/{k}"] = B.to_host(v)
    if mean_image is not None:
        arrays["data/mean_image"] = mean_image
    full_meta = dict(format=CHECKPOINT_FORMAT, model=dict(num_classes=model.num_classes, preset=model.preset,
                                                          input_size=model.input_size, seed=model.seed,
                                                          init=model.init, step=model.step))
    full_meta.update(meta or {})
    if run is not None:
        full_meta.update(data=run["data"] or "", classes=run["classes"], image_size=run["image_size"],
                         held_out={k: run[k] for k in ("seed", "val_fraction")} if run["data"] else None)
    arrays["meta"] = np.array(json.dumps(full_meta))
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes it readable by its owner alone; the permissions any new file gets here instead
        # (0666 less the umask), like the history and pictures beside it.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return str(path)


class _NotACheckpoint(ValueError):
    """A readable file that is no pyalexnet checkpoint, said in full where found."""


_CHECKPOINT_MODEL_KEYS = frozenset({"num_classes", "preset", "input_size", "seed", "init", "step"})


def _read_checkpoint(path, *, meta_only: bool = False) -> tuple[dict, dict, dict, np.ndarray | None]:
    """(meta, parameters, velocities, mean image) from a checkpoint file or folder; meta_only reads the
    metadata alone (an npz's arrays load only when asked for)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    advice = "pass the checkpoint.npz that pyalexnet train --checkpoint-dir wrote, or its folder"
    if not path.is_file():  # a FIFO waited for a writer for ever; a device is no checkpoint either
        raise ValueError(f"{path} is not a regular file, so not a pyalexnet checkpoint: {advice}")
    params, velocities, mean = {}, {}, None
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a .npy array: no archive of named arrays
            raise _NotACheckpoint(f"{path} is a single NumPy array (.npy), not a pyalexnet checkpoint: {advice}")
        with z:
            if "meta" not in z.files:
                raise _NotACheckpoint(f"{path} is an .npz archive without pyalexnet's metadata, not a pyalexnet "
                                      f"checkpoint: {advice}")
            meta = json.loads(str(z["meta"]))
            if not meta_only:
                params = {k[6:]: z[k] for k in z.files if k.startswith("param/")}
                velocities = {k[9:]: z[k] for k in z.files if k.startswith("velocity/")}
                mean = z["data/mean_image"] if "data/mean_image" in z.files else None
    except _NotACheckpoint:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        # Not numpy's own words for a file that is no .npz archive: they suggest loading it with pickle.
        why = "not an .npz archive" if "allow_pickle" in str(exc) else str(exc)
        raise ValueError(f"{path} is not a readable pyalexnet checkpoint ({why}): {advice}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its metadata is not pyalexnet's (a JSON {type(meta).__name__}, not an object): "
                         f"the file is damaged or not a pyalexnet checkpoint")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r}")
    m = meta.get("model")
    missing = sorted(_CHECKPOINT_MODEL_KEYS - set(m)) if isinstance(m, dict) else None
    if missing is None or missing:
        what = "no model description" if missing is None else f"a model description without {', '.join(missing)}"
        raise ValueError(f"{path}: its metadata has {what}: the file is damaged or not a pyalexnet checkpoint")
    return meta, params, velocities, mean


def load_checkpoint(path, *, devices=None) -> tuple[AlexNet, dict]:
    """(model, metadata) from a checkpoint file (or a checkpoint folder). metadata["mean_image"] is the
    training set's mean image when the checkpoint has it, else None. devices: where to place the model, as
    AlexNet's devices= (default: every GPU there is, else the CPU)."""
    meta, params, _, mean = _read_checkpoint(path)
    m = meta["model"]
    model = AlexNet(m["num_classes"], preset=m["preset"], input_size=m["input_size"], seed=m["seed"],
                    init=m["init"], devices=devices)
    _load_saved_parameters(model, params, path)
    model.step = int(m["step"])
    if meta.get("data"):  # a run train() saved, or a model it trained; save_checkpoint of another records no data set
        t = meta.get("training") or {}
        # The seed and fraction that chose the held-out images (before they were recorded apart: the run's own).
        # None: not known (a Splits load_dataset did not make), the run's taken as the likeliest.
        known = meta.get("held_out", t)
        split = known or t
        model.trained_on = training_record(meta["data"] if known is not None else None, seed=split.get("seed", 0),
                                           val_fraction=split.get("val_fraction", 0.1),
                                           image_size=t.get("image_size", meta.get("image_size")),
                                           classes=meta.get("classes"), mean_image=mean)
    meta["mean_image"] = mean
    return model, meta


def training_record(data, *, seed, val_fraction, image_size, classes, mean_image) -> dict:
    """AlexNet.trained_on: what evaluate(model) needs to test a model on its run's data as the run held it out."""
    return dict(data=data or None, seed=seed, val_fraction=val_fraction, image_size=image_size,
                classes=None if classes is None else list(classes), mean_image=mean_image)


def _load_saved_parameters(model: AlexNet, params: dict, path) -> None:
    """model.load_parameters, its refusals (a NaN, a shape) naming the checkpoint they came from."""
    try:
        model.load_parameters(params)
    except ValueError as exc:  # a missing or misshapen parameter is no sign of a diverged run
        from .model import _NonFiniteParameter

        why = "its run had diverged" if isinstance(exc, _NonFiniteParameter) else "not this model's"
        raise ValueError(f"{path}: {exc}: the file is damaged or {why}") from exc


# ----- evaluation --------------------------------------------------------------------------------------
def _load_data(data, *, seed: int = 0, val_fraction: float = 0.1, progress: bool | None = None,
               train_sample: int | None = None, image_size: int | None = None, note_small_images: bool = False):
    from . import data as D

    if isinstance(data, D.Splits):
        return data
    # image_size: a folder's decode size; other sources keep their own (train compares a given one with it)
    return D.load_dataset(data, seed=seed, val_fraction=val_fraction, progress=progress, train_sample=train_sample,
                          image_size=image_size if D.is_image_folder(data) else None,
                          note_small_images=note_small_images)


def recorded_val_fraction(data, val_fraction: float) -> float:
    """A run's recorded val_fraction as load_dataset should get it back (a resumed run, eval): as it is where
    it chooses an image folder's held-out images, else load_dataset's default, which it neither refuses (a
    source with its own split) nor warns of (a folder with its own val/: its run was told once)."""
    from . import data as D
    from .data._datasets import DEFAULT_VAL_FRACTION

    if isinstance(data, (str, os.PathLike)) and D.is_image_folder(data):
        path = Path(data)
        if not (path.is_dir() and D.has_own_validation_images(path)):
            return val_fraction
    return DEFAULT_VAL_FRACTION


def image_size_for_crop(crop_size: int) -> int:
    """The smallest image side whose crops (data.crop_size_for: 7/8 of it) are crop_size x crop_size: 256 for
    the paper's 224, 24 for 21. The side an image folder is decoded to for a model of that input size."""
    from . import data as D

    side = max(1, crop_size * 8 // 7 - 1)
    while D.crop_size_for(side) < crop_size:
        side += 1
    return side


def _errors(probs_or_logits, labels: np.ndarray) -> tuple[int, int]:
    """(top-1 mistakes, top-5 mistakes) in a batch."""
    s = B.to_host(probs_or_logits)
    k = min(5, s.shape[1])
    top5 = np.argpartition(-s, k - 1, axis=1)[:, :k]
    top1 = s.argmax(axis=1)
    return int((top1 != labels).sum()), int((~(top5 == labels[:, None]).any(axis=1)).sum())


def ten_crop_probabilities(model: AlexNet, images, mean_image, *, ten_crop: bool = True) -> np.ndarray:
    """float64 (N, classes) on the host: the softmax of uint8 (N, H, W, 3) images as the paper tested them,
    averaged over its ten patches (made one at a time: a tenth of the memory of all ten) or of the centre
    crop alone."""
    from . import data as D

    images, crop = np.asarray(images), model.input_size
    if not ten_crop:
        return B.to_host(model.predict(D.center_crop(images, crop, mean_image))).astype(np.float64)
    return sum(B.to_host(model.predict(D.ten_crops(images, crop, mean_image, patch=k))).astype(np.float64)
               for k in range(10)) / 10


def evaluate(model: AlexNet, data=None, *, ten_crop: bool = True, batch_size: int = 128, mean_image=None,
             split: str = "val", progress: bool | None = None, seed: int | None = None,
             val_fraction: float | None = None, image_size: int | None = None, return_predictions: bool = False) -> dict:
    """Top-1 and top-5 error rates (fractions) of `model` on the data set's test split: its official one
    where it has one (CIFAR-10, Fashion-MNIST, the built-in set, a folder's val/), else the held-out one.

    data: as train()'s. Default: the data set the model was trained on, as model.trained_on records it (train()
    and load_checkpoint set it; a model never trained by train() is tested on the built-in set). seed,
    val_fraction, image_size and mean_image not given follow the run (held_out_settings); a data set whose class
    names are not the ones the model was trained on is refused.

    ten_crop=True averages the softmax over the paper's ten patches (four corners, centre and their
    reflections); False uses the centre crop. mean_image defaults to the data set's training mean; given
    it (a checkpoint's, load_checkpoint's metadata["mean_image"]), an image folder's training images are
    not decoded (but for a small sample), only its test images.
    progress: a tqdm bar over the images (default: on a terminal or in a Jupyter notebook).
    seed, val_fraction: for an image folder without val/, which images are held out: the ones that held out the
      run's (the defaults, where data is a path or spec), or the test may include images the model trained on.
    image_size: the side an image folder is decoded to (default: mean_image's side, else the run's, else the
      smallest whose crops the model takes).
    Returns {"top1", "top5" (None at 5 classes or fewer, where every label is in the top 5), "loss"
    (centre-crop or ten-crop mean cross-entropy), "images"}, and with
    return_predictions=True "predictions": each test image's most probable class, int64 (images,).
    """
    if not isinstance(model, AlexNet):
        raise TypeError(f"model must be a pyalexnet.AlexNet, got {type(model).__name__}")
    _check_positive_int(batch_size, "batch_size")
    if not isinstance(split, str) or split not in ("val", "train"):  # before the data is loaded
        raise ValueError(f"split must be 'val' (the test split) or 'train', got {split!r}")
    from .viz import NEIGHBOUR_POOL

    run = model.trained_on
    recorded = data is None and run is not None
    if recorded:
        if not run["data"]:
            raise ValueError("the model was trained on a Splits that load_dataset did not make, so which images it "
                             "held out is not recorded: pass it again, evaluate(model, data)")
        data = run["data"]
    seed, val_fraction, image_size, mean_image = held_out_settings(model, data, seed=seed, val_fraction=val_fraction,
                                                               image_size=image_size, mean_image=mean_image)
    try:
        splits = _load_data(data, seed=seed, val_fraction=val_fraction, progress=progress, image_size=image_size,
                            train_sample=None if mean_image is None or split == "train" else NEIGHBOUR_POOL)
    except (FileNotFoundError, ValueError) as exc:
        if not recorded:
            raise
        # moved or damaged since, or the name of a Splits made in memory
        kind = FileNotFoundError if isinstance(exc, FileNotFoundError) else ValueError
        raise kind(f"{exc} (testing the data set the model was trained on, as model.trained_on records it; "
                   "evaluate(model, data) tests other data)") from exc
    ds = getattr(splits, split)
    if model.input_size != splits.crop_size:
        hint = ""
        from . import data as D

        if isinstance(data, (str, os.PathLike)) and D.is_image_folder(data):
            # an image folder decoded at another size: it can be decoded at the size the model was trained at
            hint = (f" (decoded at {splits.image_size} px: for an image folder pass image_size= the training "
                    f"run's image size, {image_size_for_crop(model.input_size)} for these crops, or mean_image= "
                    "the checkpoint's, load_checkpoint's meta['mean_image'])")
        raise ValueError(f"the model takes {model.input_size}x{model.input_size} crops but this data set gives "
                         f"{splits.crop_size}x{splits.crop_size}{hint}")
    if model.num_classes != splits.num_classes:
        raise ValueError(f"the model has {model.num_classes} classes, the data set {splits.num_classes}")
    if run is not None:
        check_trained_classes(run["classes"], splits.classes, data if isinstance(data, (str, os.PathLike)) else
                              splits.source or "the data set")
    mean = splits.mean_image if mean_image is None else mean_image
    n = len(ds)
    if n == 0:
        raise ValueError(f"the data set's {split} split is empty")
    top1 = top5 = 0
    loss = 0.0
    predictions = []
    show = B.show_progress(progress)
    with B.progress_bar(show, total=n, desc="ten-crop test" if ten_crop else "centre-crop test", unit="img") as bar:
        for i in range(0, n, batch_size):
            images, labels = ds.images[i:i + batch_size], ds.labels[i:i + batch_size]
            probs = ten_crop_probabilities(model, images, mean, ten_crop=ten_crop)
            e1, e5 = _errors(probs, labels)
            top1, top5 = top1 + e1, top5 + e5
            loss -= float(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-30)).sum())
            if return_predictions:
                predictions.append(probs.argmax(1))
            bar.update(len(labels))
    # At 5 classes or fewer every label is in the top 5: 0.0 would read as a measurement.
    result = {"top1": top1 / n, "top5": top5 / n if reports_top5(model.num_classes) else None, "loss": loss / n,
              "images": n}
    if return_predictions:
        result["predictions"] = np.concatenate(predictions).astype(np.int64)
    return result


def held_out_settings(model: AlexNet, data, *, seed=None, val_fraction=None, image_size=None, mean_image=None):
    """(seed, val_fraction, image_size, mean_image) to test `model` on `data` as its run held it out, evaluate's and
    pyalexnet eval's alike; each given one is kept.
    seed, val_fraction: the run's (model.trained_on) for any data set named by a path or spec (its own data moved
      or copied to a faster disk is the same folder; with 0 and 0.1 a folder without val/ held out other images,
      some of them trained on); else 0 and 0.1.
    mean_image: the run's, the mean the model learned with, for data named by a path or spec at the run's image
      size (an image folder's training images are then not all decoded for another).
    image_size (an image folder's decode size): mean_image's side, else the run's, else the smallest whose crops
      the model takes (256 for the paper's 224)."""
    from .data._datasets import DEFAULT_VAL_FRACTION

    run = model.trained_on
    named = run is not None and isinstance(data, (str, os.PathLike))
    if named and run["data"] is None and seed is None:
        from . import data as D

        if D.is_image_folder(data) and os.path.isdir(os.path.expanduser(os.fspath(data))) and \
                not D.has_own_validation_images(Path(data).expanduser()):
            B.warn_user(f"which of {data}'s images the model's run held out is not recorded (it trained on a Splits "
                        "that load_dataset did not make): the test may include images it trained on; pass the seed "
                        "and val_fraction that split it")
    if seed is None:
        seed = run["seed"] if named else 0
    if val_fraction is None:
        val_fraction = recorded_val_fraction(data, run["val_fraction"]) if named else DEFAULT_VAL_FRACTION
    if named and mean_image is None and image_size in (None, run["image_size"]):
        mean_image = run["mean_image"]
    if image_size is None:
        image_size = (int(np.shape(mean_image)[0]) if mean_image is not None
                      else run["image_size"] if run is not None and run["image_size"]
                      else image_size_for_crop(model.input_size))
    return seed, val_fraction, image_size, mean_image


def check_trained_classes(trained, classes, data) -> None:
    """Refuses a data set whose class names are not the ones a model was trained on: labels are class indices in
    name order, so its labels would not mean the model's classes. trained None: nothing recorded to check."""
    if trained is not None and list(trained) != list(classes):
        differ = [f"{a!r} / {b!r}" for a, b in zip(trained, classes) if a != b][:3]
        raise ValueError(f"{data} has classes other than the ones the model was trained on ("
                         + (", ".join(differ) if differ else f"{len(classes)} against {len(trained)}")
                         + ", trained / here): its labels would not mean the model's classes")


def _validate(model: AlexNet, loader, bar) -> dict:
    """Centre-crop loss and errors over a (non-training) loader: the per-epoch validation figures.
    `bar` (a tqdm bar over the images, closed here) shows its progress."""
    n = top1 = top5 = 0
    loss = 0.0
    with bar:
        for x, y in loader:
            labels = _labels_for(model, y)
            logits = model.forward(x, train=False)
            read_loss, _ = ops.softmax_cross_entropy_queued(logits, labels)
            logits_on_host = B.start_host_copy(logits)  # on a GPU: one wait for both, not two
            batch_loss = read_loss()
            e1, e5 = _errors(logits_on_host(), np.asarray(y))
            n, top1, top5, loss = n + len(y), top1 + e1, top5 + e5, loss + batch_loss * len(y)
            bar.update(len(y))
    if n == 0:
        return {"val_loss": None, "val_top1": None, "val_top5": None}
    return {"val_loss": loss / n, "val_top1": top1 / n, "val_top5": top5 / n if reports_top5(model.num_classes) else None}


def _labels_for(model: AlexNet, y):
    """`y` where the model's logits will be (tower a's device), sent before the forward is queued."""
    place = model.place_of("fc8.weight")
    if place.gpu is None:
        return y
    if isinstance(y, place.xp.ndarray) and y.device.id != place.gpu:
        with y.device:  # the copy between GPUs is ordered on the logits' GPU only: y's own stream first
            place.xp.cuda.get_current_stream().synchronize()
    with place.xp.cuda.Device(place.gpu):
        return place.xp.asarray(y)


# ----- training ----------------------------------------------------------------------------------------
class StepResult(NamedTuple):
    """What one sgd_step saw: the batch's mean loss and its top-1 and top-5 mistakes (before the update)."""

    loss: float
    top1_errors: int
    top5_errors: int


def sgd_step(model: AlexNet, x, labels, velocities: dict, *, lr: float, momentum: float = 0.9,
             weight_decay: float = 5e-4, decay_biases: bool = False, step: int | None = None) -> StepResult:
    """One training step of the paper's SGD: forward in training mode (dropout masks from `step`, as in
    model.forward), softmax cross-entropy, backward, and the update of every parameter with its velocity
    (`velocities`: model.parameters()'s names, arrays of the same shapes and places, updated in place).
    weight_decay applies to the weights; to the biases too only with decay_biases=True (cuda-convnet, whose
    rule the paper writes for "weight w", gave biases none, as Caffe's AlexNet does; PyTorch's SGD decays all).

    A loss that is not finite leaves the parameters and velocities as they were: the caller decides what
    to do. The order is chosen for a GPU: the backward pass is queued before the host waits for the loss
    and the logits (copied back on their own), so the GPU works through it while Python checks the loss,
    counts the mistakes and queues the update; reading the loss first left the GPU idle while Python queued
    each backward kernel. On the CPU the order changes no result.
    """
    if not isinstance(model, AlexNet):
        raise TypeError(f"model must be a pyalexnet.AlexNet, got {type(model).__name__}")
    params = model.parameters()
    if not isinstance(velocities, Mapping) or any(k not in velocities for k in params):
        raise ValueError("velocities must map each of model.parameters()'s names to an array of its shape and place "
                         "(zeros to start: pyalexnet.sgd_velocities(model))" + (
                             f"; missing {_few([k for k in params if k not in velocities])}"
                             if isinstance(velocities, Mapping) else f", got {type(velocities).__name__}"))
    # Checked before anything is queued: the update is several calls (per device, weights then biases), and a
    # refusal at a later one left the earlier ones done, half a step (tower b's velocities made on tower a's GPU).
    places = {k: model.place_of(k) for k in params}  # looked up once: the check and the update's groups
    for k, p in params.items():
        v, gpu = velocities[k], places[k].gpu
        on_gpu = B.is_gpu_array(v)
        if on_gpu != (gpu is not None) or (on_gpu and getattr(v.device, "id", None) != gpu):
            raise ValueError(f"velocities[{k!r}] is not where its parameter is ({places[k].device}): make "
                             "them with pyalexnet.sgd_velocities(model)")
        if tuple(v.shape) != tuple(p.shape):
            raise ValueError(f"velocities[{k!r}] has shape {tuple(v.shape)}, its parameter {tuple(p.shape)}")
    labels_on_host = B.start_host_copy(labels)  # CuPy labels: a read now would wait for the last update
    # Sent before the forward is queued (CuPy stages it through pinned memory, asynchronously; where that memory
    # runs out a pageable copy waits for what the stream holds, and then better the last update's).
    labels = _labels_for(model, labels)
    logits = model.forward(x, train=True, step=step)
    read_loss, dlogits = ops.softmax_cross_entropy_queued(logits, labels)
    logits_on_host = B.start_host_copy(logits)
    model.backward(dlogits)
    loss = read_loss()
    e1, e5 = _errors(logits_on_host(), labels_on_host())
    if math.isfinite(loss):
        grads = model.gradients()
        # One update per device (one call may not take arrays on two GPUs: towers a and b) and weight decay.
        groups: dict[tuple[str, float], list[str]] = {}
        for k in params:
            decay = weight_decay if decay_biases or not is_bias(k) else 0.0
            groups.setdefault((places[k].device, decay), []).append(k)
        for (_, decay), names in groups.items():
            ops.sgd_update([params[k] for k in names], [grads[k] for k in names], [velocities[k] for k in names],
                           lr=lr, momentum=momentum, weight_decay=decay)
    return StepResult(loss, e1, e5)


def sgd_velocities(model: AlexNet) -> dict:
    """Zero velocities for sgd_step: {name: zeros} for each of model.parameters(), each on its parameter's
    device (zeros_like under one current GPU put tower b's on tower a's GPU)."""
    out, places = {}, {}
    for name, p in model.parameters().items():
        place = places[name] = model.place_of(name)
        with place.active():
            out[name] = place.xp.zeros_like(p)
    for place in {id(p): p for p in places.values()}.values():
        place.before_caller()  # zeroed on the towers' streams: the caller's (sgd_step's update) waits for them
    return out


def is_bias(name: str) -> bool:
    """Whether model.parameters()'s `name` is a bias (no weight decay unless asked: see sgd_step)."""
    return name.endswith(".bias")


@dataclasses.dataclass(repr=False)
class TrainResult:
    """What train() returns: the trained model, one dict per epoch, where things were written, and the
    data set it trained on (pyalexnet.data.Splits: evaluate(result.model, result.data) tests on the very
    images it held out)."""

    model: AlexNet
    history: list
    checkpoint: str | None
    history_path: str | None
    mean_image: np.ndarray
    classes: list
    data: Any = None

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    def __repr__(self) -> str:
        # One line, as a notebook shows it when a cell ends with train(...): the dataclass's printed the mean image
        # twice (its own and the data's) in some hundred lines, and every epoch's row of the history.
        from .data._datasets import summary

        history = summary(self.history)
        if isinstance(self.history, list):  # a repr must not raise, whatever a caller put there
            last = self.history[-1] if self.history and isinstance(self.history[-1], dict) else {}
            figures = [f"{k} {float(last[k]):.4g}" for k in ("val_top1", "val_loss") if isinstance(last.get(k), numbers.Real)
                       and not isinstance(last[k], bool)]  # None for an empty split
            history = f"[{_count(len(self.history), 'epoch')}" + (f"; last: {', '.join(figures)}" if figures else "") + "]"
        return (f"TrainResult(model={self.model!r}, history={history}, checkpoint={self.checkpoint!r}, "
                f"history_path={self.history_path!r}, mean_image={summary(self.mean_image)}, "
                f"classes={summary(self.classes)}, data={self.data!r})")


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_number(value, name: str, *, low: float, low_ok: bool = True, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (value == low and not low_ok) or (high is not None and value >= high):
        bound = f"> {low}" if not low_ok else f">= {low}"
        if high is not None:
            bound += f" and < {high}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def _resolve_devices(device):
    if device in (None, "auto"):
        return None
    if isinstance(device, str) and device.strip().lower() in ("cuda", "gpu"):
        return ("cuda:0", "cuda:0")
    return device


LOCK_NAME = ".lock"  # held (flock) by the run training in a checkpoint folder; holds its pid


class _RunLock:
    """An exclusive, non-blocking lock on DIR/.lock for as long as a run trains in DIR, so that two runs never
    write one folder (their history rows interleaved, the checkpoint and pictures whichever wrote last). The
    file stays (removing it would let a run that opened it just before lock a file no longer there while a
    third locks a new one); what counts is the flock, which the system drops when the process ends, however
    it ends. Where fcntl is missing (Windows) there is no lock."""

    def __init__(self) -> None:
        self.fd: int | None = None

    def acquire(self, folder) -> None:
        try:
            import fcntl
        except ImportError:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = os.read(fd, 32).decode("ascii", "replace").strip()
            except OSError:
                pid = ""
            os.close(fd)
            raise BlockingIOError(f"{folder} is in use by another run" + (f" (pid {pid})" if pid.isdigit() else "")
                               + ": wait for it to end, or choose another folder (--checkpoint-dir)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # drops the flock


# What train() writes of a run's state and a resumed run reads back.
_RESUME_KEYS = frozenset({"epoch", "step_in_epoch", "global_step", "seed", "batch_size", "epochs", "momentum",
                          "weight_decay", "schedule", "running", "history"})


def _check_resumable(meta: dict, ckpt_path) -> None:
    """Refuses a checkpoint without a training run's state (one save_checkpoint wrote of a model alone): resuming
    it was a KeyError traceback."""
    t = meta.get("training")
    missing = sorted(_RESUME_KEYS - set(t)) if isinstance(t, dict) else None
    if missing is None or missing:
        raise ValueError(f"{ckpt_path} holds no training run's state to continue ("
                         + ("a model save_checkpoint wrote alone" if missing is None
                            else f"its training metadata lacks {', '.join(missing)}")
                         + "): --overwrite (overwrite=True) starts a new run there, or choose another folder")


def _remove_unfinished_checkpoints(ckpt_path) -> None:
    """Removes the temporary files of checkpoints whose writing was cut short (save_checkpoint writes
    NAME.*.tmp and renames it; a killed run leaves it, half a gigabyte for the paper network, and nothing
    else would ever remove it). Called holding the folder's lock, so no other run is writing one now."""
    path = Path(ckpt_path)
    for tmp in path.parent.glob(glob.escape(path.name) + ".*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass


def _check_writable(folder) -> None:
    """Makes `folder`, refusing one that cannot be written: it was found only when the first epoch's checkpoint
    was written, an epoch (or the time to load a big data set) later."""
    problem = B.output_folder_problem(folder, "checkpoint_dir (--checkpoint-dir)", create=True)
    if problem:
        raise OSError(f"{problem}; choose a folder this user can write to")


def train(data=None, *, model: AlexNet | None = None, epochs: int | None = None, batch_size: int | None = None,
          lr: float | None = None, momentum: float | None = None, weight_decay: float | None = None, schedule=None,
          patience: int | None = None, device="auto", seed: int | None = None, checkpoint_dir=None,
          resume: bool = False, history=None, init=None, preset: str | None = None, workers: int = 2,
          val_fraction: float | None = None, image_size: int | None = None,
          checkpoint_every: int | None = None, progress: bool | None = None, verbose: bool = True,
          stop_after_steps: int | None = None, overwrite: bool = False,
          decay_biases: bool | None = None) -> TrainResult:
    """Trains AlexNet with the paper's SGD: v = momentum*v - weight_decay*lr*w - lr*grad; w += v.

    data: None or "builtin" (the built-in synthetic set), "fashion-mnist", "cifar10:PATH", an image folder
      (root/<class>/<image>), a store written by `pyalexnet prepare`, or pyalexnet.data.Splits.
    model: an AlexNet to train; by default one is built from the data: the "small" preset for crops under
      96 px, else "paper", with data's classes, placed by `device`, seeded by `seed`.
    epochs, lr, batch_size, schedule, patience, init: default per preset (pyalexnet.training.defaults_for(preset)): the
      paper's 90 epochs, lr 0.01, batch 128 and plateau schedule for "paper"; short, tuned values for "small".
    schedule: "plateau" (lr / 10 when validation top-1 error stops improving for `patience` epochs, at
      most three times, as the paper did), "constant", or a list of epochs (0-based) at whose start lr
      is / 10.
    device: "auto" (every GPU there is, else the CPU), "cpu", "cuda", "cuda:0", "cuda:0,cuda:1".
    checkpoint_dir: where checkpoint.npz (after every epoch, and every `checkpoint_every` steps) and
      history.jsonl go. resume=True continues from checkpoint_dir's checkpoint exactly where it stopped.
      A folder that already holds a checkpoint is refused unless resume=True or overwrite=True (a new run
      over it), so a forgotten --resume never replaces days of training. A run holds checkpoint_dir (a lock on
      checkpoint_dir/.lock) until it returns: a second run there is refused (BlockingIOError). With a checkpoint_dir, Ctrl-C
      stops at the end of the step, writes a checkpoint and raises KeyboardInterrupt (twice: at once).
      What a resumed run's call leaves out (None) is the run's own: data, preset, init, seed, batch_size,
      val_fraction, epochs, momentum, weight_decay, decay_biases, the schedule and where it stands (see
      lr below).
      An lr other than the one the resumed run started with sets the rate from then on (plateau) or the
      rate the milestones divide; the run's own lr (or None) continues it exactly.
    decay_biases: weight decay on the biases too (default False: the weights only, as cuda-convnet and Caffe's
      AlexNet did; PyTorch's SGD decays every parameter). A resumed run keeps its own (runs begun before
      this option decayed them).
    seed: the weights, the data order, augmentation, dropout and a folder's held-out images (default 0).
    val_fraction: the share of each class an image folder without val/ holds out (default 0.1).
    image_size: the side an image folder's images are decoded to (shorter side resized, centre crop; default
      256, the paper's, whose 7/8 crop is 224); a folder of small images trains the small network from
      image_size 109 down (crops under 96). Other sources have their own size.
    history: a JSON-lines path for the per-epoch figures (default checkpoint_dir/history.jsonl).
    progress: tqdm bars for decoding an image folder, each epoch and its validation (default: on a
      terminal or in a Jupyter notebook). verbose: a summary line per epoch.
    stop_after_steps: stop (after checkpointing) once this many steps have run in this call (tests,
      time-boxed runs); resume=True picks up from there.

    Raises TrainingDiverged when the loss becomes NaN or infinite (the last good checkpoint is kept).
    """
    # --- arguments ---
    # What the caller left out (None) a resumed run takes from its checkpoint, a new one from the defaults.
    given = dict(lr=lr is not None, schedule=schedule is not None, patience=patience is not None,
                 val_fraction=val_fraction is not None)
    from . import data as D

    if data is not None and not isinstance(data, (str, os.PathLike, D.Splits)):  # 5 gave "'int' object has no
        # attribute 'partition'"
        raise TypeError(f"data must be a data set's name or path (builtin, fashion-mnist, cifar10:PATH, an image "
                        f"folder, a store) or a pyalexnet.data.Splits, got {type(data).__name__}")
    for what, path in (("checkpoint_dir", checkpoint_dir), ("history", history)):
        if path is not None and not isinstance(path, (str, os.PathLike)):  # a StringIO gave a bare TypeError
            raise TypeError(f"{what} must be a {'folder' if what == 'checkpoint_dir' else 'file'} path, got "
                            f"{type(path).__name__}")
    if model is not None:
        # Each of these builds the model train() makes; with a model given they were ignored without a word.
        ignored = [name for name, value in (("preset", preset), ("init", init)) if value is not None]
        if ignored:
            raise ValueError(f"{' and '.join(ignored)} {'are' if len(ignored) > 1 else 'is'} for the model train() "
                             f"builds: with model= given, leave {'them' if len(ignored) > 1 else 'it'} out (the "
                             f"model is {model.preset if isinstance(model, AlexNet) else model!r})")
        if device not in (None, "auto") and isinstance(model, AlexNet) \
                and tuple(parse_devices(_resolve_devices(device))) != tuple(model.devices):
            raise ValueError(f"device {device!r} is not where the model is ({'+'.join(model.devices)}): the model "
                             "trains where it was placed (AlexNet(devices=...)); leave device out")
    workers = 2 if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral):
        raise TypeError(f"workers must be a whole number of loader threads (0: none), got {workers!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (where the checkpoint to resume from is)")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("checkpoint_every (--checkpoint-every) needs checkpoint_dir (--checkpoint-dir), the folder "
                         "the checkpoints go to")
    for what, path, folder in (("checkpoint_dir", checkpoint_dir, True), ("history", history, False)):
        if path is not None and Path(path).exists() and Path(path).is_dir() != folder:
            raise ValueError(f"{what} {path} is a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}")
    if history is not None and not resume and not overwrite and Path(history).is_file() and Path(history).stat().st_size:
        # (it was emptied without a word: another run's record of its epochs, or any file of that name)
        raise ValueError(f"history (--history) {history} already exists: --overwrite (overwrite=True) replaces it, "
                         f"--resume (resume=True) continues its run, or choose another file")
    ckpt_path = str(Path(checkpoint_dir) / CHECKPOINT_NAME) if checkpoint_dir is not None else None
    if resume and overwrite:
        raise ValueError("resume=True continues the run in checkpoint_dir and overwrite=True replaces it: pick one")
    saved = _read_checkpoint(ckpt_path, meta_only=True)[0] if ckpt_path and Path(ckpt_path).exists() else None
    if saved is not None and not resume and not overwrite:
        t = saved.get("training", {})
        where = (f" (after epoch {t['epoch']} of {t['epochs']}, step {t['step_in_epoch']})"
                 if {"epoch", "epochs", "step_in_epoch"} <= set(t) else "")
        raise ValueError(f"{checkpoint_dir} already holds a run{where}: --resume (resume=True) continues it, "
                         f"--overwrite (overwrite=True) starts a new one over it, or choose another folder")
    if saved is not None and resume:
        _check_resumable(saved, ckpt_path)
    resumed_size = False  # image_size taken from the checkpoint, not given: errors say so
    changed: list[str] = []  # notes on momentum / weight decay other than a resumed run's
    if saved is not None and resume:
        t = saved["training"]
        if data is None:
            data = saved.get("data") or None
            if data is None:
                raise ValueError(f"{ckpt_path} does not say which data set it was trained on: pass it again")
        seed = t["seed"] if seed is None else seed
        if model is None:
            if preset is not None and preset != saved["model"]["preset"]:
                # Said as itself: it was refused later, after the data loaded, and on the built-in set as "image_size
                # 40 ... too small for the paper network", an option the command had not given.
                raise ValueError(f"{ckpt_path} holds a {saved['model']['preset']} network, not a {preset} one: resume "
                                 "without preset (--preset) or with the same one (a new run: --overwrite or another "
                                 "folder)")
            preset = preset or saved["model"]["preset"]
            was = saved["model"].get("init")
            if init is not None and was is not None and _resolve_init(init) != _resolve_init(was):
                # The weights were drawn with the checkpoint's init; another would be written as theirs.
                names = [n for n, spec in INITS.items() if spec == _resolve_init(was)]
                raise ValueError(f"{ckpt_path}'s weights were initialised with init {names[0] if names else was!r}, "
                                 f"not {init!r}: resume without init (--init) or with the same one (a new run with "
                                 "another init: --overwrite or another folder)")
            init = init or saved["model"]["init"]
        batch_size = batch_size or t["batch_size"]
        val_fraction = t.get("val_fraction", 0.1) if val_fraction is None else val_fraction
        if image_size is None and t.get("image_size") is not None:
            image_size, resumed_size = t["image_size"], True
        epochs = epochs or t["epochs"]  # say --epochs 20 at the start, then a plain --resume
        # Another momentum or weight decay than the run's goes on from here, said as another lr is.
        changed = [f"{name} {value:g} from now on (it was {t[key]:g})" for name, key, value in
                   (("momentum", "momentum", momentum), ("weight decay", "weight_decay", weight_decay))
                   if isinstance(value, numbers.Real) and not isinstance(value, bool) and key in t
                   and float(value) != float(t[key])]
        momentum = t["momentum"] if momentum is None else momentum
        weight_decay = t["weight_decay"] if weight_decay is None else weight_decay
        was_decaying = t.get("decay_biases", True)  # checkpoints from before the option: every parameter decayed
        if decay_biases is not None and bool(decay_biases) != was_decaying:
            changed.append(("weight decay on the biases" if decay_biases else "no weight decay on the biases")
                           + " from now on (the run had " + ("it" if was_decaying else "none") + ")")
        decay_biases = was_decaying if decay_biases is None else decay_biases
    seed = 0 if seed is None else seed
    val_fraction = 0.1 if val_fraction is None else val_fraction
    momentum = _check_number(0.9 if momentum is None else momentum, "momentum", low=0.0, high=1.0)
    weight_decay = _check_number(5e-4 if weight_decay is None else weight_decay, "weight_decay", low=0.0)
    if decay_biases is None:
        decay_biases = False
    elif not isinstance(decay_biases, (bool, np.bool_)):
        raise TypeError(f"decay_biases must be True or False, got {decay_biases!r}")
    decay_biases = bool(decay_biases)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if model is not None and not isinstance(model, AlexNet):
        raise TypeError(f"model must be a pyalexnet.AlexNet, got {type(model).__name__}")
    for value, name in ((epochs, "epochs"), (batch_size, "batch_size"), (patience, "patience"),
                        (checkpoint_every, "checkpoint_every"), (stop_after_steps, "stop_after_steps")):
        if value is not None:
            _check_positive_int(value, name)
    if lr is not None:
        _check_number(lr, "lr", low=0.0, low_ok=False)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    devices = parse_devices(_resolve_devices(device)) if model is None else model.devices
    from . import data as D

    # What can be checked without the data is checked before it loads (an image folder can take long).
    run_schedule = _make_schedule(schedule, 1.0, 1) if schedule is not None else None  # refuses a bad one
    known_preset = model.preset if model is not None else preset  # a new run's may wait for the data's size
    schedule_checked = False
    if saved is not None and resume:
        t = saved["training"]
        # val_fraction (with the seed) picks a folder's held-out images: another would move images between
        # the splits mid-run. Checkpoints from before it was kept do not say, and are taken as they are.
        written = (t["seed"], t["batch_size"], t.get("val_fraction", val_fraction))
        if written != (seed, batch_size, val_fraction):
            raise ValueError(f"{ckpt_path} was written by a run with seed={t['seed']} batch_size={t['batch_size']} "
                             f"val_fraction={written[2]}; resume with the same values (got seed={seed} "
                             f"batch_size={batch_size} val_fraction={val_fraction})")
        _check_schedule(run_schedule.state() if run_schedule else t["schedule"], given=given, epochs=epochs,
                        resume=True, saved_state=t["schedule"], ckpt_path=ckpt_path)
        schedule_checked = True
    elif known_preset is not None:
        _check_schedule((run_schedule or _make_schedule(defaults_for(known_preset)["schedule"], 1.0, 1)).state(),
                        given=given, epochs=epochs or defaults_for(known_preset)["epochs"], resume=resume,
                        saved_state=None, ckpt_path=ckpt_path)
        schedule_checked = True

    if image_size is not None:
        image_size = _check_positive_int(image_size, "image_size")
        # Checked before a folder is decoded (which can take long), and said as the size asked for, not as
        # the model's "input size 14 is too small".
        crop = D.crop_size_for(image_size)  # a folder's (builtin's crop is its own: resumed, image_size is 40)
        p = model.preset if model is not None else preset or ("small" if crop < SMALL_PRESET_BELOW else "paper")
        if image_size < D.smallest_image_size(p):
            raise ValueError(f"image_size (--image-size) {image_size} gives {crop}x{crop} crops, too small for the "
                             f"{p} network (its maps vanish before fc6): at least {D.smallest_image_size(p)}")
    # Held from here (before the data, which can take long to load) to the end, however the call ends.
    lock = _RunLock()
    try:
        if checkpoint_dir is not None:
            _check_writable(checkpoint_dir)
            lock.acquire(checkpoint_dir)
            _remove_unfinished_checkpoints(ckpt_path)
            if saved is None and not overwrite and Path(ckpt_path).exists():  # a run that ended since it was looked at
                raise ValueError(f"{checkpoint_dir} already holds a run (written since this call began): --resume "
                                 "(resume=True) continues it, --overwrite (overwrite=True) starts a new one over it")
        splits = _load_data(data, seed=seed, val_fraction=val_fraction if given["val_fraction"]
                            else recorded_val_fraction(data, val_fraction), progress=progress, image_size=image_size,
                            note_small_images=image_size is None)
        if image_size is not None and splits.image_size != image_size:
            # Only a folder is decoded to a size; ignoring the option would train on other images than asked for.
            held = f"{getattr(splits, 'source', 'the data set')} holds {splits.image_size}x{splits.image_size} images"
            if resumed_size:
                raise ValueError(f"{held}, but the run resumed from {ckpt_path} trained on {image_size}x{image_size} "
                                 f"ones: resume it with the data it trained on ({saved.get('data') or 'not recorded'})")
            raise ValueError(f"{held}: image_size (--image-size) {image_size} sets the side an image folder is decoded to"
                             + (" (prepare the store again with --size for another)" if getattr(splits, "source", "")
                                and D.is_store(Path(splits.source)) else ""))
        source_name = str(getattr(splits, "source", "") or "")
        if given["val_fraction"] and isinstance(data, D.Splits) and not D.is_image_folder(source_name):
            # Only an image folder without val/ holds a share out: elsewhere the option was ignored without a word.
            # load_dataset refuses it for a source's name (and warns of a folder with its own val/); a Splits is
            # split already, and its val_fraction is recorded (eval finds the run's held-out images by it):
            # refused where the Splits' source has a split of its own, as for that source's name.
            src = Path(source_name)
            raise ValueError(f"val_fraction (--val-fraction) is the share an image folder without val/ holds out; "
                             f"{splits.source or 'this data set'} has its own validation split"
                             + (" (a store's is made by prepare --val-fraction)" if D.is_store(src) else ""))
        if len(splits.val) == 0:
            source = str(getattr(splits, "source", "") or "")
            if source and D.is_store(Path(source)):  # its split was made when it was prepared
                hint = f"{source} is a store prepared without any: prepare it again with --val-fraction above 0"
            elif val_fraction > 0:
                hint = (f"at val_fraction (--val-fraction) {val_fraction:g} each class keeps its only image for "
                        "training (a class gives one up from 2 images): add images, or a val/ folder")
            else:
                hint = "for an image folder without val/, a val_fraction (--val-fraction) above 0"
            raise ValueError("the data set has no validation images, which each epoch's validation and the plateau "
                             f"schedule need: {hint}")

        # --- the model ---
        if model is None:
            if preset is None:
                preset = "small" if splits.crop_size < SMALL_PRESET_BELOW else "paper"
            if splits.image_size < D.smallest_image_size(preset) and splits.crop_size == D.crop_size_for(splits.image_size):
                raise ValueError(f"{getattr(splits, 'source', 'the data set')} holds {splits.image_size}x{splits.image_size} "
                                 f"images ({splits.crop_size}x{splits.crop_size} crops), too small for the {preset} network "
                                 f"(its maps vanish before fc6): it needs images of at least {D.smallest_image_size(preset)} px")
            d = defaults_for(preset)
            model = AlexNet(splits.num_classes, preset=preset, input_size=splits.crop_size, devices=devices, seed=seed,
                            init=init or d["init"])
        else:
            d = defaults_for(model.preset)
            if model.input_size != splits.crop_size:
                raise ValueError(f"the model takes {model.input_size}x{model.input_size} crops but the data set gives "
                                 f"{splits.crop_size}x{splits.crop_size}")
            if model.num_classes != splits.num_classes:
                raise ValueError(f"the model has {model.num_classes} classes but the data set has {splits.num_classes}")
        epochs = epochs or d["epochs"]
        batch_size = batch_size or d["batch_size"]
        lr = float(lr if lr is not None else d["lr"])
        base_lr = lr  # the rate the run started at (a resumed run's is in its checkpoint)
        patience = patience or d["patience"]
        sched = _make_schedule(d["schedule"] if schedule is None else schedule, lr, patience)
        loader_device = model.devices[0]
        loader = splits.loader("train", batch_size, seed=seed, workers=workers, device=loader_device)
        val_loader = splits.loader("val", max(batch_size, 128), workers=workers, device=loader_device)
        steps_per_epoch = len(loader)
        if steps_per_epoch == 0:
            raise ValueError(f"batch_size {batch_size} is larger than the training set ({len(splits.train)} images): "
                             "pass a smaller one (--batch-size)")

        velocities = sgd_velocities(model)

        history_path = history if history is not None else (
            str(Path(checkpoint_dir) / HISTORY_NAME) if checkpoint_dir is not None else None)

        # --- resume ---
        epoch, step_in_epoch, global_step = 0, 0, 0
        running = dict(loss=0.0, top1=0, top5=0, images=0, seconds=0.0)
        hist: list[dict] = []
        if resume and Path(ckpt_path).exists():
            meta, params, vels, _ = _read_checkpoint(ckpt_path)
            m = meta["model"]
            if (m["num_classes"], m["input_size"], m["preset"]) != (model.num_classes, model.input_size, model.preset):
                raise ValueError(f"{ckpt_path} holds a {m['preset']} model for {m['num_classes']} classes at "
                                 f"{m['input_size']} px, not this run's {model.preset} / {model.num_classes} / "
                                 f"{model.input_size}")
            # Other data with the run's classes goes on (a data set moved, or copied to a faster disk), said; other
            # classes would train each output on another class than before, and are refused.
            source, trained_on = str(getattr(splits, "source", "") or ""), str(meta.get("data") or "")
            if meta.get("classes") is not None and list(meta["classes"]) != list(splits.classes):
                raise ValueError(f"{ckpt_path}'s run was trained on {trained_on or 'data'} with the classes "
                                 f"{_few(meta['classes'])}; {source or 'this data set'} has {_few(splits.classes)}: "
                                 "resume it with the data it trained on")
            if source and trained_on and not _same_source(source, trained_on):
                B.warn_user(f"{ckpt_path}'s run was trained on {trained_on}; it goes on with {source} (the same "
                            "classes), which its checkpoint records from now on")
            t = meta["training"]
            if set(vels) != set(params):  # zeros for the missing would go on, but not as the run would have
                raise ValueError(f"{ckpt_path} lacks momentum buffers (velocities) for "
                                 f"{_few(sorted(set(params) - set(vels)))}: the run cannot continue exactly; "
                                 "--overwrite (overwrite=True) starts a new one")
            # Before any parameter is copied: a refusal leaves train(model=...)'s model as it was.
            nonfinite = [name for name, v in vels.items() if not np.isfinite(np.asarray(v, np.float32)).all()]
            if nonfinite:  # the first step would diverge, and blame the learning rate
                raise ValueError(f"{ckpt_path}: the momentum buffers (velocities) of {_few(nonfinite)} hold NaN or "
                                 "infinite values: the file is damaged or its run had diverged")
            _load_saved_parameters(model, params, ckpt_path)
            for name, v in vels.items():
                place = model.place_of(name)
                with place.active():
                    velocities[name][...] = place.take(v)
            model.step = int(m["step"])
            epoch, step_in_epoch, global_step = int(t["epoch"]), int(t["step_in_epoch"]), int(t["global_step"])
            running = dict(t["running"])
            sched, base_lr, lr_note = _resumed_schedule(t, sched, given, lr=lr, patience=patience, epoch=epoch,
                                                        ckpt_path=ckpt_path)
            hist = list(t["history"])
            if epoch >= epochs:  # "resuming ... epoch 5" then "training ... for 1 epochs" said nothing of it
                # A run stopped mid-epoch has steps beyond its whole epochs in its weights ("has done its 2 epochs"
                # left them out, and evaluation then tested them).
                print(f"{ckpt_path}'s run has done " + (
                    f"{_count(epoch, 'epoch')} and {step_in_epoch} of epoch {epoch + 1}'s {steps_per_epoch} steps"
                    if step_in_epoch else f"its {_count(epoch, 'epoch')}") + ": nothing to train"
                      + (f" (epochs={epochs} asks for fewer)" if epoch > epochs or step_in_epoch else "")
                      + f"; pass epochs (--epochs) above {epoch} to go on", file=B.message_stream())
            elif verbose:
                print(f"resuming from {ckpt_path}: epoch {epoch + 1}, step {step_in_epoch}/{steps_per_epoch}"
                      + "".join(f"; {note}" for note in [lr_note] + changed if note), file=B.message_stream())
        elif resume:  # said even when quiet: a mistyped folder would otherwise start a new run without a word
            B.warn_user(f"no checkpoint in {checkpoint_dir} yet: starting from scratch")
        if not schedule_checked:  # a new run whose preset (so its default schedule or epochs) the data chose
            _check_schedule(sched.state(), given=given, epochs=epochs, resume=resume, saved_state=None,
                            ckpt_path=ckpt_path)
        if overwrite and saved is not None:
            # The replaced run's checkpoint goes with its history (below): kept until the new run's first one, it was
            # called "the last good checkpoint" when the new run diverged, and a --resume continued the old run.
            # Its pictures go too: the new run's summary named the old curves and filters as its own.
            from .viz import RUN_PICTURES

            for name in (CHECKPOINT_NAME,) + RUN_PICTURES:
                (Path(checkpoint_dir) / name).unlink(missing_ok=True)
        if history_path is not None:
            Path(history_path).parent.mkdir(parents=True, exist_ok=True)
            with open(history_path, "w") as f:  # rewritten to match the checkpoint on resume
                for row in hist:
                    f.write(json.dumps(row) + "\n")

        def checkpoint() -> None:
            if ckpt_path is None:
                return
            try:
                _save_run_checkpoint()
            except OSError as exc:  # a full disk said only "[Errno 28] No space left on device", not what was kept
                raise OSError(f"the checkpoint {ckpt_path} could not be written ({exc}); " + (
                    "the one written before is kept: --resume (resume=True) continues from it once that is put right"
                    if Path(ckpt_path).exists() else "none had been written yet")) from exc

        # The images the data held out were chosen when it was loaded, by the seed and fraction load_dataset records
        # (a Splits passed in: its own, not train()'s); other sources have their own split. An image folder's Splits
        # made otherwise cannot be loaded again as it was: evaluate(model) asks for it.
        held_out = getattr(splits, "held_out", None)
        if held_out is None and not D.is_image_folder(getattr(splits, "source", "") or ""):
            held_out = {"seed": seed, "val_fraction": val_fraction}
        model.trained_on = training_record(getattr(splits, "source", "") if held_out else None,
                                           seed=(held_out or {}).get("seed", seed),
                                           val_fraction=(held_out or {}).get("val_fraction", val_fraction),
                                           image_size=splits.image_size, classes=splits.classes,
                                           mean_image=splits.mean_image)

        def _save_run_checkpoint() -> None:
            save_checkpoint(ckpt_path, model, velocities=velocities, mean_image=splits.mean_image, meta=dict(
                training=dict(epoch=epoch, step_in_epoch=step_in_epoch, global_step=global_step, seed=seed,
                              batch_size=batch_size, val_fraction=val_fraction, image_size=splits.image_size,
                              epochs=epochs, lr=sched.lr,
                              base_lr=base_lr, momentum=momentum,
                              weight_decay=weight_decay, decay_biases=decay_biases, schedule=sched.state(),
                              running=running, history=hist,
                              # Every source of randomness is a pure function of these (see the module docstring).
                              random_state=dict(init_seed=model.seed, dropout=dict(seed=model.seed, step=model.step),
                                                loader=dict(seed=seed, epoch=epoch, step=step_in_epoch))),
                classes=list(splits.classes), data=str(getattr(splits, "source", "")), held_out=held_out))

        if verbose and epoch < epochs:  # a finished run said "nothing to train" above
            where = model.devices[0] if model.devices[0] == model.devices[1] else "+".join(model.devices)
            print(f"training {model.describe()} on {getattr(splits, 'source', 'data')} "
                  f"({len(splits.train)} train / {len(splits.val)} val images, {splits.num_classes} classes) for "
                  f"{_count(epochs, 'epoch')}" + (f" (this call stops after {_count(stop_after_steps, 'step')})"
                                                 if stop_after_steps else "")
                  + f", batch {batch_size}, lr {sched.lr:g}, on {where}", file=B.message_stream())

        steps_this_call = 0
        show = B.show_progress(progress)
        with _stop_on_interrupt(ckpt_path) as interrupted, _said_unsaved(ckpt_path, lambda: (
                epoch, step_in_epoch, steps_per_epoch)):
            while epoch < epochs:
                lr_now = sched.at_epoch_start(epoch) if step_in_epoch == 0 else sched.lr
                loader.set_epoch(epoch)
                bar = B.progress_bar(show, total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{epochs}",
                                     leave=True)
                t_epoch = time.perf_counter()
                batches = loader.iter_from(step_in_epoch)
                stopped = False
                try:
                    for x, y in batches:
                        loss, e1, e5 = sgd_step(model, x, y, velocities, lr=lr_now, momentum=momentum,
                                                weight_decay=weight_decay, decay_biases=decay_biases,
                                                step=global_step)
                        if not math.isfinite(loss):
                            raise TrainingDiverged(
                                f"the training loss became {loss} at epoch {epoch + 1}, step {step_in_epoch + 1} of "
                                f"{steps_per_epoch} (global step {global_step + 1}) with lr {lr_now:g}; "
                                + (f"the last good checkpoint, {ckpt_path}, is kept. " if ckpt_path and Path(ckpt_path).exists()
                                   else "no checkpoint was written. ")
                                + "Try a smaller learning rate.",
                                epoch=epoch, step=step_in_epoch, global_step=global_step, loss=loss,
                                checkpoint=ckpt_path if ckpt_path and Path(ckpt_path).exists() else None)
                        running["loss"] += loss * len(y)
                        running["top1"] += e1
                        running["top5"] += e5
                        running["images"] += len(y)
                        step_in_epoch += 1
                        global_step += 1
                        steps_this_call += 1
                        model.step = global_step
                        elapsed = running["seconds"] + time.perf_counter() - t_epoch
                        bar.set_postfix(loss=f"{running['loss'] / running['images']:.3f}",
                                        err=f"{running['top1'] / running['images']:.3f}", lr=f"{lr_now:g}",
                                        img_s=f"{running['images'] / max(elapsed, 1e-9):.0f}", refresh=False)
                        bar.update(1)
                        if checkpoint_every and step_in_epoch % checkpoint_every == 0 and step_in_epoch < steps_per_epoch:
                            running["seconds"] = elapsed
                            t_epoch = time.perf_counter()
                            checkpoint()
                        if (stop_after_steps and steps_this_call >= stop_after_steps or interrupted) \
                                and step_in_epoch < steps_per_epoch:
                            stopped = True
                            break
                finally:
                    batches.close()
                    bar.close()
                running["seconds"] += time.perf_counter() - t_epoch
                if stopped:
                    checkpoint()
                    if interrupted:
                        raise KeyboardInterrupt(_interrupted_message(ckpt_path, epoch, step_in_epoch, steps_per_epoch,
                                                                         epochs))
                    # Said when quiet too: the final validation that follows read as a finished run's.
                    print(f"stopped after {_count(steps_this_call, 'step')}, at step {step_in_epoch}/{steps_per_epoch} of epoch "
                          f"{epoch + 1}" + (" (the checkpoint continues it: --resume)" if ckpt_path else ""),
                          file=B.message_stream())
                    break
                # --- end of an epoch: validation, schedule, history, checkpoint ---
                val = _validate(model, val_loader, B.progress_bar(show, total=len(splits.val), unit="img", leave=False,
                                                                  desc=f"epoch {epoch + 1}/{epochs} validation"))
                row = dict(epoch=epoch + 1, step=global_step, lr=lr_now,
                           train_loss=running["loss"] / running["images"], train_top1=running["top1"] / running["images"],
                           train_top5=running["top5"] / running["images"] if reports_top5(model.num_classes) else None,
                           **val,
                           images_per_s=running["images"] / max(running["seconds"], 1e-9), seconds=running["seconds"])
                hist.append(row)
                sched.after_epoch(epoch, val["val_top1"])
                if history_path is not None:
                    with open(history_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                msg = (f"epoch {epoch + 1}/{epochs}: train loss {row['train_loss']:.4f} top-1 error {row['train_top1']:.3f} | "
                       f"val loss {row['val_loss']:.4f} top-1 error {row['val_top1']:.3f}"
                       + (f" top-5 {row['val_top5']:.3f}" if reports_top5(model.num_classes) else "") + " | "
                       f"lr {lr_now:g} | {row['images_per_s']:.0f} images/s, {row['seconds']:.0f} s")
                epoch += 1
                step_in_epoch = 0
                running = dict(loss=0.0, top1=0, top5=0, images=0, seconds=0.0)
                checkpoint()
                if checkpoint_dir is not None:
                    save_training_pictures(model, hist, checkpoint_dir, data=splits.source or None, epochs=epochs)
                if verbose:
                    # Said only once the epoch is saved. A stderr that cannot be written (`train 2>&1 | head -3`:
                    # BrokenPipeError; OSError) stops the run as Ctrl-C does, with nothing lost: the checkpoint
                    # just written continues it (--resume), and the command exits quietly as a program killed by
                    # SIGPIPE does. Going on instead would train for hours (days, for the paper's network) with
                    # nobody left to read the output, and the reader's going away is how a pipe says "enough".
                    (B.progress_bar_class(show).write if show else print)(msg, file=B.message_stream())
                if interrupted:  # after the last epoch too: the caller's final evaluation was not asked for
                    raise KeyboardInterrupt(_interrupted_message(ckpt_path, epoch, 0, steps_per_epoch, epochs))
                if stop_after_steps and steps_this_call >= stop_after_steps:
                    break
        return TrainResult(model, hist, ckpt_path, history_path, splits.mean_image, list(splits.classes), splits)
    finally:
        lock.release()
