"""The two-tower AlexNet of Krizhevsky, Sutskever and Hinton (2012), composed from pyalexnet.ops.

Each tower holds half of every layer (cuda-convnet's names: conv1a is tower a's conv1). The towers
exchange activations only before conv3, fc6, fc7 and fc8; everywhere else a tower sees only its own
maps, which is what makes conv2, conv4 and conv5 equal to grouped convolutions with groups=2. LRN
too normalises across each tower's own maps (as cuda-convnet's per-GPU layers did), so the equivalent
single network applies LRN per group; Caffe's one-GPU AlexNet instead normalised across all 96 maps.

Placement: each tower runs on a device ("cpu" or "cuda:N"). On GPUs each tower has its own CuPy
stream, so two towers on one GPU overlap, and on two GPUs activations cross only at the four exchange
points (peer copies). Work enters the towers' streams after the caller's current stream and results
are handed back the same way, so callers never need to synchronise by hand.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _backend as B
from . import ops

__all__ = ["AlexNet", "PRESETS", "parameter_shapes", "parse_devices"]

# Per tower: (filters, kernel, stride, padding). input_scale multiplies the images first: the paper's
# network takes pixel units (0..255 minus the mean) as cuda-convnet did; the small ones take them / 64,
# about unit variance, which lets them use a scale-preserving (He) initialisation and train in minutes. "pool" lists the conv layers followed by max-pool 3/2,
# "lrn" those followed by local response normalisation (after the ReLU, before the pool).
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's network (PAPER.md): 224x224 crops, 60,965,224 parameters for 1000 classes.
    "paper": dict(input_size=224, conv1=(48, 11, 4, 2), conv2=(128, 5, 1, 2), conv3=(192, 3, 1, 1),
                  conv4=(192, 3, 1, 1), conv5=(128, 3, 1, 1), fc=2048, input_scale=1.0),
    # Same layer types and wiring for 32x32 to 64x64 crops: laptops, the built-in dataset, fast tests.
    # conv1 takes stride 2 from 48 px up (see _preset_config) so the maps stay about 32x32.
    "small": dict(input_size=32, conv1=(16, 5, 1, 2), conv2=(32, 5, 1, 2), conv3=(48, 3, 1, 1),
                  conv4=(48, 3, 1, 1), conv5=(32, 3, 1, 1), fc=256, input_scale=1 / 64),
    # A few hundred parameters per layer: finite-difference checks of the whole network.
    "tiny": dict(input_size=15, conv1=(2, 3, 1, 1), conv2=(3, 3, 1, 1), conv3=(3, 3, 1, 1),
                 conv4=(2, 3, 1, 1), conv5=(2, 3, 1, 1), fc=5, input_scale=1 / 64),
}
_CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
_LRN_AFTER = ("conv1", "conv2")
_POOL_AFTER = ("conv1", "conv2", "conv5")
_EXCHANGE_BEFORE = ("conv3",)  # among the convs; fc6, fc7 and fc8 always see both towers
_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")  # the paper's bias-1 layers
_LAYER_IDS = {name: i for i, name in enumerate(_CONVS + ("fc6", "fc7", "fc8"))}
POOL_SIZE, POOL_STRIDE = 3, 2
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
DROPOUT_P = 0.5

# Initialisations: weights N(0, std); `bias` in the bias-1 layers above, 0 elsewhere.
INITS = {
    "paper": dict(std=0.01, bias=1.0),
    "caffe": dict(std=0.01, bias=0.1),  # what Caffe's replication used (bias 1 gave it a flat loss)
    # std sqrt(2 / fan_in) in conv1..fc7, so each layer keeps its input's scale where N(0, 0.01) makes
    # a deep narrow network's signal vanish (the small preset's loss stays flat); fc8 sqrt(1 / fan_in),
    # so the first gradients reach the lower layers. Meant for unit-scale inputs: the small presets' default.
    "he": dict(std="he", bias=0.0),
}


def default_init(preset: str) -> str:
    """The initialisation a preset gets when none is given, by AlexNet() and by train() alike: the paper's
    for "paper", He for the small presets (the paper's gives them a flat loss)."""
    return "paper" if preset == "paper" else "he"


def _preset_config(preset: str, input_size: int | None) -> dict[str, Any]:
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = dict(PRESETS[preset])
    if input_size is not None:
        if isinstance(input_size, bool):  # True was taken as 1
            raise TypeError(f"input_size must be a positive integer, got {input_size!r}")
        if int(input_size) != input_size or input_size < 1:
            raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
        cfg["input_size"] = int(input_size)
    if preset == "small" and cfg["input_size"] >= 48:
        f, k, _, p = cfg["conv1"]
        cfg["conv1"] = (f, k, 2, p)
    return cfg


def _spatial_sizes(cfg: dict[str, Any], preset: str = "this") -> dict[str, int]:
    """Output height (= width) of every conv layer after its pool, and the input size of fc6."""
    size, out = cfg["input_size"], {}
    for name in _CONVS:
        _, k, stride, pad = cfg[name]
        size = (size + 2 * pad - k) // stride + 1
        if name in _POOL_AFTER:
            size = (size - POOL_SIZE) // POOL_STRIDE + 1
        if size < 1:
            raise ValueError(f"input size {cfg['input_size']} is too small for {preset} preset: the maps vanish at {name}")
        out[name] = size
    return out


def smallest_input_size(preset: str) -> int:
    """The smallest crop side the preset's network takes (below it the maps vanish before fc6)."""
    _preset_config(preset, None)  # an unknown preset says so (the loop below takes ValueError as "too small")
    for side in range(1, 1024):
        try:
            _spatial_sizes(_preset_config(preset, side))
            return side
        except ValueError:
            continue
    raise ValueError(f"no input size up to 1023 fits the {preset} preset")  # not reached by the presets


def _check_input_size(preset: str, cfg: dict[str, Any]) -> None:
    """Refuses crops too small for the preset, saying what it takes and which preset takes them: AlexNet(10,
    input_size=32) said only that the maps vanish at conv5."""
    try:
        _spatial_sizes(cfg, f"the {preset!r}")
    except ValueError as exc:
        n = cfg["input_size"]
        fits = [p for p in PRESETS if p != preset and p != "tiny" and smallest_input_size(p) <= n]
        raise ValueError(f"{exc}; it takes crops of {smallest_input_size(preset)} px and up"
                         + (f", preset={fits[0]!r} takes {n}" if fits else "")) from None


def _layer_specs(cfg: dict[str, Any], num_classes: int) -> list[tuple[str, int, tuple[int, ...]]]:
    """(layer name, tower, weight shape) in parameter order; fc8 is one layer, on tower a."""
    sizes = _spatial_sizes(cfg)
    specs, in_ch = [], 3
    for name in _CONVS:
        f, k = cfg[name][:2]
        # conv3 sees both towers' maps; the other convs only their own tower's.
        c = 2 * in_ch if name in _EXCHANGE_BEFORE else in_ch
        for t, suffix in enumerate("ab"):
            specs.append((name + suffix, t, (f, c, k, k)))
        in_ch = f
    fc_in = 2 * in_ch * sizes["conv5"] ** 2
    for name in ("fc6", "fc7"):
        for t, suffix in enumerate("ab"):
            specs.append((name + suffix, t, (cfg["fc"], fc_in)))
        fc_in = 2 * cfg["fc"]
    specs.append(("fc8", 0, (num_classes, fc_in)))
    return specs


def parameter_shapes(num_classes: int = 1000, *, preset: str = "paper", input_size: int | None = None) -> dict[str, tuple]:
    """{name: shape} of every parameter, in model.parameters() order, without building the model."""
    shapes, cfg = {}, _preset_config(preset, input_size)
    _check_input_size(preset, cfg)
    for layer, _, wshape in _layer_specs(cfg, num_classes):
        shapes[layer + ".weight"] = wshape
        shapes[layer + ".bias"] = (wshape[0],)
    return shapes


def _as_array(x, what: str = "argument 'x'"):
    """x itself if it is a numpy or CuPy array, else numpy's array of it (a nested list); None refused."""
    if x is None:
        raise TypeError(f"{what} must be an array, got None")
    if isinstance(x, np.ma.MaskedArray):
        # Refused as pyalexnet.ops refuses them: the towers' np.asarray dropped the mask without a word and
        # computed on the masked values.
        raise ValueError(f"{what} is a numpy masked array, whose masked elements would be used as they are; "
                         "pass x.filled(value) or numpy.asarray(x) for what you mean")
    if hasattr(x, "__cuda_array_interface__") or isinstance(x, np.ndarray):
        return x
    return np.asarray(x)


def parse_devices(devices) -> tuple[str, str]:
    """Normalises a placement: None (all GPUs that exist, else the CPU), "cpu", "cuda", "cuda:N",
    or a pair such as ("cuda:0", "cuda:1")."""
    if devices is None or devices == "auto":
        if B.cuda_available():
            n = B.cupy_module().cuda.runtime.getDeviceCount()
            return ("cuda:0", "cuda:1") if n >= 2 else ("cuda:0", "cuda:0")
        return ("cpu", "cpu")
    if isinstance(devices, str):
        devices = tuple(d.strip() for d in devices.split(",")) if "," in devices else (devices, devices)
    if not isinstance(devices, (tuple, list)) or not all(isinstance(d, str) for d in devices):
        raise TypeError(f"devices must be 'auto', 'cpu', 'cuda', 'cuda:N' or a pair of them (one per tower), "
                        f"got {devices!r}")
    devices = tuple(devices)
    if len(devices) != 2:
        raise ValueError(f"devices must name one device per tower (two), got {devices!r}")
    out = []
    for d in devices:
        d = str(d).strip().lower()
        if d == "gpu":
            d = "cuda"
        if d == "cuda":
            d = "cuda:0"
        if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit()):
            raise ValueError(f"unknown device {d!r}: use 'cpu', 'cuda' or 'cuda:N'")
        if d.startswith("cuda") and not B.cuda_available():
            raise ValueError(f"device {d!r} asked for, but the GPU backend is not usable: {B.backend_info()['reason']}")
        if d.startswith("cuda"):  # was CUDA's own "invalid device ordinal" from inside the placement
            n = B.cupy_module().cuda.runtime.getDeviceCount()
            if int(d[5:]) >= n:
                raise ValueError(f"device {d!r} asked for, but this machine has {n} GPU{'s' if n != 1 else ''} "
                                 f"(cuda:0{f' to cuda:{n - 1}' if n > 1 else ''})")
        out.append(d)
    if ("cpu" in out) and any(d.startswith("cuda") for d in out):
        raise ValueError(f"both towers must be on the CPU or both on GPUs, got {tuple(out)}")
    return tuple(out)


class _Place:
    """Where one tower runs: the CPU, or a GPU with the tower's own stream."""

    def __init__(self, device: str) -> None:
        self.device = device
        if device == "cpu":
            self.gpu, self.xp, self.stream = None, np, None
        else:
            cp = B.cupy_module()
            self.gpu, self.xp = int(device[5:]), cp
            with cp.cuda.Device(self.gpu):
                self.stream = cp.cuda.Stream(non_blocking=True)

    @contextlib.contextmanager
    def active(self):
        """Ops issued inside run on this tower's device and stream."""
        if self.gpu is None:
            yield
            return
        with self.xp.cuda.Device(self.gpu), self.stream:
            yield

    def record(self):
        """An event after everything queued so far on this tower's stream."""
        with self.xp.cuda.Device(self.gpu):
            return self.stream.record()

    def wait(self, event) -> None:
        with self.xp.cuda.Device(self.gpu):
            self.stream.wait_event(event)

    def after_caller(self) -> None:
        """This tower's stream waits for what the caller has queued on this device."""
        if self.gpu is not None:
            with self.xp.cuda.Device(self.gpu):  # an event is recorded on its stream's device
                self.stream.wait_event(_caller_stream(self.xp, self.gpu).record())

    def before_caller(self) -> None:
        """The caller's stream on this device waits for this tower's queued work."""
        if self.gpu is not None:
            ev = self.record()
            with self.xp.cuda.Device(self.gpu):
                _caller_stream(self.xp, self.gpu).wait_event(ev)

    def take(self, a):
        """`a` (numpy, or CuPy on any GPU, queued on the caller's stream) as an array of this place."""
        if self.gpu is None:
            return B.to_host(a)
        cp = self.xp
        if not B.is_gpu_array(a):
            with self.active():
                return cp.asarray(a)
        src = a.device.id
        if src == self.gpu:
            return a  # after_caller() already ordered this stream after the caller's
        if not a.flags.c_contiguous:
            with cp.cuda.Device(src):
                a = cp.ascontiguousarray(a)
        with cp.cuda.Device(src):
            self.wait(_caller_stream(cp, src).record())
        with self.active():
            out = cp.empty(a.shape, a.dtype)
            if a.nbytes:
                out.data.copy_from_device_async(a.data, a.nbytes, self.stream)
        ev = self.record()
        with cp.cuda.Device(src):
            _caller_stream(cp, src).wait_event(ev)
        return out


def _caller_stream(cp, gpu: int):
    with cp.cuda.Device(gpu):
        return cp.cuda.get_current_stream()


def _transfer(a, src: _Place, dst: _Place):
    """`a`, produced on src's stream, as an array dst's stream may use.

    On GPUs this is the exchange point: dst waits for src, copies (a peer copy between GPUs), and src
    then waits for the copy, so src's memory pool cannot hand the source buffer out again too early.
    """
    if src is dst or src.gpu is None:
        return a
    if not a.flags.c_contiguous:
        with src.active():
            a = src.xp.ascontiguousarray(a)
    dst.wait(src.record())
    with dst.active():
        out = dst.xp.empty(a.shape, a.dtype)
        if a.nbytes:
            out.data.copy_from_device_async(a.data, a.nbytes, dst.stream)
    src.wait(dst.record())
    return out


def _resolve_init(init) -> dict[str, Any]:
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {sorted(INITS)} or pass a dict(std=..., bias=...)")
        return dict(INITS[init])
    if isinstance(init, Mapping):
        unknown = set(init) - {"std", "bias"}
        if unknown:
            raise ValueError(f"init accepts the keys 'std' and 'bias', got {sorted(unknown)}")
        out = dict(INITS["paper"])
        out.update(init)
        if out["std"] != "he" and B.real_number(out["std"], "init std") < 0:  # NaN weights, else
            raise ValueError(f"init std must be >= 0 or 'he', got {out['std']!r}")
        B.real_number(out["bias"], "init bias")
        return out
    raise TypeError(f"init must be a name ({sorted(INITS)}) or a dict(std=..., bias=...), got {type(init).__name__}")


class _NonFiniteParameter(ValueError):
    """load_parameters' refusal of a NaN or infinite value (a checkpoint's says its run may have diverged)."""


class AlexNet:
    """The paper's two-tower network.

    AlexNet(num_classes=1000, *, devices=None, seed=0, preset="paper", input_size=None, init=None)

    (all but num_classes keyword-only)

    - preset: "paper" (224x224 crops), "small" (32x32 to 64x64 crops) or "tiny" (gradient checks);
      input_size overrides the preset's crop size (fc6's input follows from it).
    - devices: None (every GPU there is, else the CPU), "cpu", "cuda:0", or one device per tower,
      e.g. ("cuda:0", "cuda:1").
    - init: "paper" (weights N(0, 0.01), bias 1 in conv2, conv4, conv5, fc6, fc7, 0 elsewhere),
      "caffe" (bias 0.1), "he" (std sqrt(2/fan_in), fc8 sqrt(1/fan_in), bias 0), or dict(std=..., bias=...).
      None (the default): what train() uses for the preset, "paper" for "paper" and "he" for "small" and
      "tiny" (default_init(preset)).
    - seed: the initial weights and, with the training step, every dropout mask.

    forward(x, train=False) -> logits; backward(dlogits) fills gradients(); features(x) -> the fc7
    activations; predict(x) -> class probabilities. x is NCHW float32 of input_size x input_size.
    """

    def __init__(self, num_classes: int = 1000, *, devices=None, seed: int = 0, preset: str = "paper",
                 input_size: int | None = None, init=None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.num_classes = int(num_classes)
        self.preset = preset
        self.config = _preset_config(preset, input_size)
        _check_input_size(preset, self.config)
        self.input_size = self.config["input_size"]
        self.seed = int(seed)
        self.init = _resolve_init(default_init(preset) if init is None else init)
        self.devices = parse_devices(devices)
        places = {d: _Place(d) for d in dict.fromkeys(self.devices)}
        # Two towers on one GPU still get a stream each, so they overlap.
        if self.devices[0] == self.devices[1] and self.devices[0] != "cpu":
            self._places = (places[self.devices[0]], _Place(self.devices[1]))
        else:
            self._places = (places[self.devices[0]], places[self.devices[1]])
        self.step = 0  # training forwards so far; with seed, it fixes the dropout masks
        # The data set train() trained it on (load_checkpoint: the run's), with what evaluate(model) needs to test it
        # there as the run held it out: data (its spec; None for a Splits load_dataset did not make), the seed and
        # val_fraction that held its images out, image_size, classes, mean_image. None: never trained by train().
        self.trained_on: dict | None = None
        self._specs = _layer_specs(self.config, self.num_classes)
        self._tower_of = {layer: t for layer, t, _ in self._specs}
        self._params: dict[str, Any] = {}
        self._grads: dict[str, Any] = {}
        self._cache = None
        self._init_parameters()

    # ----- parameters -----------------------------------------------------------------------------
    def _init_parameters(self) -> None:
        std, bias = self.init["std"], float(self.init["bias"])
        for index, (layer, t, wshape) in enumerate(self._specs):
            # One generator per layer, seeded by (seed, layer): the same numbers on every device.
            rng = np.random.default_rng([self.seed, index])
            fan_in = int(np.prod(wshape[1:]))
            if std == "he":
                s = math.sqrt((1.0 if layer == "fc8" else 2.0) / fan_in)
            else:
                s = float(std)
            w = rng.standard_normal(wshape, dtype=np.float32) * np.float32(s)
            b = np.full(wshape[0], bias if layer[:-1] in _BIAS_ONE or layer in _BIAS_ONE else 0.0, np.float32)
            place = self._places[t]
            self._params[layer + ".weight"] = place.take(w)
            self._params[layer + ".bias"] = place.take(b)
        for p in self._places:  # the uploads were queued on the towers' streams: the caller's waits for them
            p.before_caller()

    def parameters(self) -> dict[str, Any]:
        """{name: array} of every parameter (the model's own arrays: updating them in place trains it)."""
        return dict(self._params)

    def gradients(self) -> dict[str, Any]:
        """{name: array} of the gradients of the last backward(), same names as parameters().

        The next backward() may write into these arrays (on the CPU the fully connected layers' weight
        gradients are reused, as a framework's .grad buffers are): copy one to keep it across steps."""
        if not self._grads:
            raise RuntimeError("no gradients yet: call forward(x, train=True) then backward(dlogits)")
        return {name: self._grads[name] for name in self._params}

    def num_parameters(self) -> int:
        """How many numbers the parameters hold in all (60,965,224 for the paper preset at 1000 classes)."""
        return int(sum(int(np.prod(p.shape)) for p in self._params.values()))

    def place_of(self, name: str) -> _Place:
        """Where parameter `name` lives (its tower's device and stream)."""
        return self._places[self._tower_of[name.rsplit(".", 1)[0]]]

    def load_parameters(self, params: Mapping[str, Any]) -> None:
        """Copies arrays (numpy or CuPy, any device) into the parameters, checking names, shapes and dtypes
        (floating point) of all of them before it changes any: a bad one leaves the model as it was."""
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping of parameter names to arrays (as parameters() gives), "
                            f"got {type(params).__name__}")
        missing = set(self._params) - set(params)
        extra = set(params) - set(self._params)
        if missing or extra:
            raise ValueError(f"parameters do not match this model: missing {sorted(missing)}, unexpected {sorted(extra)}")
        params = {name: _as_array(value, f"parameter {name}") for name, value in params.items()}
        for name, value in params.items():
            if tuple(value.shape) != tuple(self._params[name].shape):
                raise ValueError(f"parameter {name}: shape {tuple(value.shape)} does not match the model's "
                                 f"{tuple(self._params[name].shape)}")
            if value.dtype.kind != "f":
                raise TypeError(f"parameter {name} must be a floating-point array, got dtype {value.dtype}")
            # Counted in float32, as the model will hold them (a float64 1e300 becomes inf there): one NaN or inf
            # makes every prediction NaN, and nothing downstream would say why.
            with B.own_device(value), np.errstate(over="ignore", invalid="ignore"):
                xp = B.cupy_module() if B.is_gpu_array(value) else np
                bad = int((~xp.isfinite(xp.asarray(value).astype(np.float32, copy=False))).sum())
            if bad:
                raise _NonFiniteParameter(f"parameter {name} has {bad} NaN or infinite value{'s' if bad > 1 else ''} "
                                          "in float32, which the model holds: it would give NaN for every image")
        for name, value in params.items():
            place = self.place_of(name)
            # take() and the copy run on the tower's stream: it must first wait for the caller's work
            # that produced `value`, and the caller's stream must then wait for the copy (as in forward).
            place.after_caller()
            with place.active():
                self._params[name][...] = place.take(value).astype(np.float32, copy=False)
            place.before_caller()

    def describe(self) -> str:
        """One line naming the preset, input size, classes, parameter count and devices (also the repr)."""
        d = self.devices
        where = d[0] if d[0] == d[1] else f"{d[0]} + {d[1]}"
        return (f"AlexNet preset={self.preset} input={self.input_size}x{self.input_size} classes={self.num_classes} "
                f"parameters={self.num_parameters():,} devices={where}")

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    # ----- the forward pass ----------------------------------------------------------------------
    def _check_input(self, x):
        """x checked, as an array (a nested list becomes a numpy one, so its dtype is checked too)."""
        x = _as_array(x)
        shape = tuple(x.shape)
        s = self.input_size
        how = ("pyalexnet.data.center_crop(images, crop_size, mean_image) makes them from uint8 (N, H, W, 3) "
               "images, as training saw them")
        if len(shape) != 4 or shape[1] != 3 or shape[2] != s or shape[3] != s:
            raise ValueError(f"argument 'x' must be NCHW images of shape (N, 3, {s}, {s}) for this model "
                             f"(preset {self.preset!r}), got {shape}" + ("; " + how if len(shape) == 4 else ""))
        dtype = np.dtype(getattr(x, "dtype", np.float32))
        if dtype.kind not in "f":
            # Raw pixels (uint8) would pass as numbers without the training mean subtracted: wrong answers.
            raise TypeError(f"argument 'x' must be floating point pixels minus the training mean image, got {dtype}; "
                            + how)
        if shape[0] == 0:
            raise ValueError("argument 'x' is an empty batch")
        return x

    def _dropout_seed(self, step: int, layer: str, tower: int) -> int:
        # Seeds derived from (model seed, step, layer, tower): reproducible on any device and on resume.
        ss = np.random.SeedSequence([self.seed, int(step), _LAYER_IDS[layer], tower])
        return int(ss.generate_state(1, np.uint32)[0])

    def _gather(self, parts, t: int, axis: int = 1):
        """[tower a's part, tower b's part] concatenated on tower t: an exchange point."""
        dst = self._places[t]
        pieces = [_transfer(p, self._places[s], dst) for s, p in enumerate(parts)]
        with dst.active():
            return dst.xp.concatenate(pieces, axis=axis)

    def _conv_forward(self, t: int, layer: str, x, cache: dict):
        name = layer + "ab"[t]
        _, _, stride, pad = self.config[layer]
        w, b = self._params[name + ".weight"], self._params[name + ".bias"]
        y = ops.relu(ops.conv2d(x, w, b, stride=stride, padding=pad))
        c = {"x": x, "relu": y}
        if layer in _LRN_AFTER:
            c["lrn_x"], y = y, ops.lrn(y, **LRN)
            c["lrn"] = y
        if layer in _POOL_AFTER:
            # The winners (one byte per output) rather than y: the backward gathers from them without
            # recomputing the argmax. pool_x is the LRN's or ReLU's output, cached anyway: it gives dx's shape.
            c["pool_x"] = y
            y, c["pool_indices"] = ops.max_pool(y, size=POOL_SIZE, stride=POOL_STRIDE, return_indices=True)
        cache[name] = c
        return y

    def _fc_forward(self, t: int, layer: str, x, cache: dict, train: bool, step: int):
        name = layer + "ab"[t]
        y = ops.relu(ops.linear(x, self._params[name + ".weight"], self._params[name + ".bias"]))
        c = {"x": x, "relu": y}
        if train:
            y, c["mask"] = ops.dropout(y, p=DROPOUT_P, seed=self._dropout_seed(step, layer, t))
        cache[name] = c
        return y

    def _run(self, x, *, train: bool, step: int | None, until_fc7: bool = False):
        x = self._check_input(x)
        places = self._places
        for p in places:
            p.after_caller()
        if train:
            if step is None:
                step, self.step = self.step, self.step + 1
            else:  # the dropout masks' seed: 1.5 or -1 failed inside numpy's SeedSequence
                step = B.integer(step, "step", low=0, high=2**63 - 1)
        cache: dict[str, Any] = {"train": train}
        h = [places[t].take(x) for t in (0, 1)]
        if self.config["input_scale"] != 1.0:
            for t in (0, 1):
                with places[t].active():
                    h[t] = h[t] * places[t].xp.float32(self.config["input_scale"])
        n = h[0].shape[0]
        for layer in _CONVS:
            if layer in _EXCHANGE_BEFORE:
                h = [self._gather(h, t) for t in (0, 1)]
            for t in (0, 1):
                with places[t].active():
                    h[t] = self._conv_forward(t, layer, h[t], cache)
        for t in (0, 1):
            with places[t].active():
                h[t] = h[t].reshape(n, -1)  # (C, H, W) order: [pool5a, pool5b] is the grouped net's flatten
        for layer in ("fc6", "fc7"):
            h = [self._gather(h, t) for t in (0, 1)]
            for t in (0, 1):
                with places[t].active():
                    h[t] = self._fc_forward(t, layer, h[t], cache, train, step)
        if until_fc7:
            out = self._gather(h, 0)
        else:
            x8 = self._gather(h, 0)
            with places[0].active():
                out = ops.linear(x8, self._params["fc8.weight"], self._params["fc8.bias"])
            cache["fc8"] = {"x": x8}
        for p in places:
            p.before_caller()
        return out, cache

    def forward(self, x, *, train: bool = False, step: int | None = None):
        """Logits (N, num_classes) on tower a's device.

        train=True applies dropout and keeps what backward() needs. Its masks come from (seed, step,
        layer, tower); step defaults to model.step, which then advances by one.
        """
        if not isinstance(train, (bool, np.bool_)):  # train="no" ran in training mode
            raise TypeError(f"train must be True or False, got {train!r}")
        train = bool(train)
        if step is not None:  # checked in eval mode too, where it is not used
            step = B.integer(step, "step", low=0, high=2**63 - 1)
        out, cache = self._run(x, train=train, step=step)
        self._cache = cache if train else None
        return out

    __call__ = forward

    def features(self, x, *, batch_size: int = 256):
        """The 4096-d (2 x fc units) fc7 activations after ReLU, without dropout: the paper's image descriptor."""
        return self._batched(lambda xb: self._run(xb, train=False, step=None, until_fc7=True)[0], x, batch_size)

    def predict(self, x, *, batch_size: int = 256):
        """Class probabilities (softmax of the logits), in eval mode."""
        return self._batched(lambda xb: self._softmax(self._run(xb, train=False, step=None)[0]), x, batch_size)

    def _softmax(self, logits):
        self._places[0].after_caller()  # outside active(), where the caller's stream is the tower's own
        with self._places[0].active():
            out = ops.softmax(logits)
        self._places[0].before_caller()
        return out

    def _batched(self, fn, x, batch_size: int):
        x = self._check_input(x)
        batch_size = B.integer(batch_size, "batch_size", low=1)
        parts = [fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        if len(parts) == 1:
            return parts[0]
        xp = self._places[0].xp
        self._places[0].after_caller()
        with self._places[0].active():
            out = xp.concatenate(parts)
        self._places[0].before_caller()
        return out

    # ----- the backward pass ---------------------------------------------------------------------
    def _scatter(self, grads, sizes, axis: int = 1):
        """Inverse of _gather: each tower's share of the input gradients of the layers on every tower,
        summed on the tower that produced that input."""
        out, offsets = [], np.cumsum([0] + list(sizes))
        for t in (0, 1):
            total = None
            for s, g in grads.items():
                sl = [slice(None)] * g.ndim
                sl[axis] = slice(int(offsets[t]), int(offsets[t + 1]))
                with self._places[s].active():
                    piece = g[tuple(sl)]
                piece = _transfer(piece, self._places[s], self._places[t])
                with self._places[t].active():
                    total = piece if total is None else total + piece
            out.append(total)
        return out

    def _conv_backward(self, t: int, layer: str, dy, need_dx: bool):
        name = layer + "ab"[t]
        c = self._cache[name]
        if layer in _POOL_AFTER:
            dy = ops.max_pool_backward(dy, c["pool_x"], indices=c["pool_indices"], size=POOL_SIZE,
                                       stride=POOL_STRIDE, check_indices=False)  # its own forward's
        if layer in _LRN_AFTER:
            dy = ops.lrn_backward(dy, c["lrn_x"], c["lrn"], **LRN)
        dy = ops.relu_backward(dy, c["relu"])
        _, _, stride, pad = self.config[layer]
        dx, dw, db = ops.conv2d_backward(dy, c["x"], self._params[name + ".weight"], stride=stride, padding=pad,
                                         need_dx=need_dx)
        self._grads[name + ".weight"], self._grads[name + ".bias"] = dw, db
        return dx

    def _fc_backward(self, t: int, layer: str, dy):
        name = layer + "ab"[t]
        c = self._cache[name]
        if "mask" in c:
            dy = ops.dropout_backward(dy, c["mask"], p=DROPOUT_P)
        dy = ops.relu_backward(dy, c["relu"])
        dx, dw, db = ops.linear_backward(dy, c["x"], self._params[name + ".weight"], dw_out=self._reusable_grad(name))
        self._grads[name + ".weight"], self._grads[name + ".bias"] = dw, db
        return dx

    def _reusable_grad(self, name: str):
        """The last backward's weight gradient of a fully connected layer, to be overwritten by this one, on the
        CPU: a new one is a fresh allocation above glibc's 32 MB mmap limit (fc6: 75 MB per tower), whose pages
        the kernel faults in and zeroes every step, which took longer than the product itself (batch 8: 16 vs
        9.5 ms for fc6). CuPy's memory pool reuses GPU memory anyway, so GPU arrays are left to it."""
        g = self._grads.get(name + ".weight")
        return g if isinstance(g, np.ndarray) else None

    def backward(self, dlogits) -> None:
        """Gradients of the loss w.r.t. every parameter, given dL/dlogits of the last forward(train=True)."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward(x, train=True) first (eval-mode forwards keep nothing)")
        cache, places = self._cache, self._places
        dlogits = _as_array(dlogits, "argument 'dlogits'")
        if dlogits.dtype.kind != "f":
            raise TypeError(f"argument 'dlogits' must be a floating-point array, got dtype {dlogits.dtype}")
        n = cache["fc8"]["x"].shape[0]
        if tuple(dlogits.shape) != (n, self.num_classes):
            raise ValueError(f"argument 'dlogits' must have shape {(n, self.num_classes)}, got {tuple(dlogits.shape)}")
        for p in places:
            p.after_caller()
        with places[0].active():
            d8 = places[0].take(dlogits)
            dx, dw, db = ops.linear_backward(d8, cache["fc8"]["x"], self._params["fc8.weight"],
                                             dw_out=self._reusable_grad("fc8"))
            self._grads["fc8.weight"], self._grads["fc8.bias"] = dw, db
        fc = self.config["fc"]
        d = self._scatter({0: dx}, [fc, fc])
        for layer in ("fc7", "fc6"):
            dxs = {}
            for t in (0, 1):
                with places[t].active():
                    dxs[t] = self._fc_backward(t, layer, d[t])
            in_sizes = [cache[layer + "ab"[t]]["x"].shape[1] // 2 for t in (0, 1)]
            d = self._scatter(dxs, in_sizes)
        c5 = self._cache["conv5a"]["pool_indices"].shape  # pool5's output shape
        for t in (0, 1):
            with places[t].active():
                d[t] = d[t].reshape(c5)
        for layer in reversed(_CONVS):
            dxs = {}
            for t in (0, 1):
                with places[t].active():
                    dxs[t] = self._conv_backward(t, layer, d[t], need_dx=layer != "conv1")
            if layer in _EXCHANGE_BEFORE:
                f_prev = self.config[_CONVS[_CONVS.index(layer) - 1]][0]
                d = self._scatter(dxs, [f_prev, f_prev])
            else:
                d = [dxs[0], dxs[1]]
        for p in places:
            p.before_caller()
        self._cache = None
