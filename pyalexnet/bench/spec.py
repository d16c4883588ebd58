"""AlexNet's layer shapes (the paper's grouped two-tower form) and the work each op does.

The benchmark rows and the composed training step both read this one table, so
a row's shape is always the shape that layer has in the network.
"""
from __future__ import annotations

from dataclasses import dataclass, field

F32 = 4  # bytes per float32


@dataclass(frozen=True)
class Conv:
    name: str
    c: int          # input channels (both towers)
    k: int          # output channels (both towers)
    r: int          # square filter size
    stride: int
    pad: int
    groups: int     # 2 where each tower sees only its own maps

    def out_hw(self, hw: int) -> int:
        return (hw + 2 * self.pad - self.r) // self.stride + 1

    def weight_shape(self):
        return (self.k, self.c // self.groups, self.r, self.r)

    def macs(self, n: int, hw: int) -> int:
        """Multiply-adds of the forward pass; the input and filter gradients do as many."""
        p = self.out_hw(hw)
        return n * self.k * p * p * (self.c // self.groups) * self.r * self.r


@dataclass(frozen=True)
class Linear:
    name: str
    fin: int
    fout: int

    def macs(self, n: int) -> int:
        return n * self.fin * self.fout


@dataclass(frozen=True)
class Stage:
    """One conv or fc layer and what follows it before the next one."""
    layer: Conv | Linear
    relu: bool = True
    lrn: bool = False
    pool: bool = False
    dropout: bool = False


LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)   # the paper's constants, its formula
POOL = dict(size=3, stride=2)
DROPOUT_P = 0.5
IMAGE = (3, 224, 224)
NUM_CLASSES = 1000

PAPER = (
    Stage(Conv("conv1", 3, 96, 11, 4, 2, 1), lrn=True, pool=True),
    Stage(Conv("conv2", 96, 256, 5, 1, 2, 2), lrn=True, pool=True),
    Stage(Conv("conv3", 256, 384, 3, 1, 1, 1)),
    Stage(Conv("conv4", 384, 384, 3, 1, 1, 2)),
    Stage(Conv("conv5", 384, 256, 3, 1, 1, 2), pool=True),
    Stage(Linear("fc6", 9216, 4096), dropout=True),
    Stage(Linear("fc7", 4096, 4096), dropout=True),
    Stage(Linear("fc8", 4096, NUM_CLASSES), relu=False),
)


def pool_hw(hw: int) -> int:
    return (hw - POOL["size"]) // POOL["stride"] + 1


@dataclass
class Shapes:
    """Per-stage activation shapes for a batch of n images."""
    n: int
    conv_in: dict = field(default_factory=dict)    # conv name -> (n, c, h, w) input
    conv_out: dict = field(default_factory=dict)   # conv name -> (n, k, p, p) output (before pooling)
    pool_out: dict = field(default_factory=dict)   # conv name -> pooled shape


def preset_stages(preset: str, num_classes: int = NUM_CLASSES):
    """(stages, image shape) of one of pyalexnet.AlexNet's presets at its default crop size, in PAPER's
    form: each layer's two towers as one layer, grouped where a tower sees only its own maps. Read from
    the model's own table, so a reference runs the very network `pyalexnet train` trains."""
    from .. import model as M

    cfg = M._preset_config(preset, None)
    sizes = M._spatial_sizes(cfg)
    stages, c = [], 3
    for name in M._CONVS:
        f, r, stride, pad = cfg[name]
        groups = 1 if name == M._CONVS[0] or name in M._EXCHANGE_BEFORE else 2
        stages.append(Stage(Conv(name, c, 2 * f, r, stride, pad, groups), lrn=name in M._LRN_AFTER,
                            pool=name in M._POOL_AFTER))
        c = 2 * f
    fin, fc = c * sizes[M._CONVS[-1]] ** 2, 2 * cfg["fc"]
    stages += [Stage(Linear("fc6", fin, fc), dropout=True), Stage(Linear("fc7", fc, fc), dropout=True),
               Stage(Linear("fc8", fc, num_classes), relu=False)]
    return tuple(stages), (3, cfg["input_size"], cfg["input_size"])


def shapes(n: int, stages=PAPER, image=IMAGE) -> Shapes:
    s = Shapes(n)
    c, hw = image[0], image[1]
    for st in stages:
        L = st.layer
        if isinstance(L, Conv):
            s.conv_in[L.name] = (n, c, hw, hw)
            hw = L.out_hw(hw)
            c = L.k
            s.conv_out[L.name] = (n, c, hw, hw)
            if st.pool:
                hw = pool_hw(hw)
                s.pool_out[L.name] = (n, c, hw, hw)
    return s


def parameter_shapes(stages=PAPER):
    """(name, weight shape, bias shape) per layer, in network order."""
    out = []
    for st in stages:
        L = st.layer
        if isinstance(L, Conv):
            out.append((L.name, L.weight_shape(), (L.k,)))
        else:
            out.append((L.name, (L.fout, L.fin), (L.fout,)))
    return out


def parameter_count(stages=PAPER) -> int:
    total = 0
    for _, w, b in parameter_shapes(stages):
        size = 1
        for d in w:
            size *= d
        total += size + b[0]
    return total


def step_flops(n: int, stages=PAPER, image=IMAGE) -> int:
    """FLOPs (2 per multiply-add) of one training step's convolutions and matrix products:
    forward, input gradient (except the image's, which training never needs) and weight gradient."""
    sh = shapes(n, stages, image)
    total = 0
    for i, st in enumerate(stages):
        L = st.layer
        macs = L.macs(n, sh.conv_in[L.name][2]) if isinstance(L, Conv) else L.macs(n)
        total += 2 * macs * (2 if i == 0 else 3)
    return total
