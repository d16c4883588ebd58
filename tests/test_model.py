"""The two-tower AlexNet: names, shapes, the parameter count, equality with the grouped network, placement."""
import numpy as np
import pytest

import pyalexnet
from pyalexnet import ops
from pyalexnet.model import AlexNet, parameter_shapes

PAPER_SHAPES = {
    "conv1a.weight": (48, 3, 11, 11), "conv2a.weight": (128, 48, 5, 5), "conv3a.weight": (192, 256, 3, 3),
    "conv4a.weight": (192, 192, 3, 3), "conv5a.weight": (128, 192, 3, 3), "fc6a.weight": (2048, 9216),
    "fc7a.weight": (2048, 4096), "fc8.weight": (1000, 4096), "fc8.bias": (1000,), "conv3b.bias": (192,),
}


def test_paper_parameter_names_shapes_and_count():
    shapes = parameter_shapes(1000)
    expected_names = [f"{layer}{t}.{kind}" for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
                      for t in "ab" for kind in ("weight", "bias")] + ["fc8.weight", "fc8.bias"]
    assert list(shapes) == expected_names
    for name, shape in PAPER_SHAPES.items():
        assert shapes[name] == shape, name
        other = name.replace("a.", "b.")
        assert shapes[other] == shapes[name]
    assert sum(int(np.prod(s)) for s in shapes.values()) == 60_965_224


def test_full_model_builds_with_paper_init():
    m = AlexNet(1000, devices="cpu", seed=3)
    assert m.num_parameters() == 60_965_224
    p = m.parameters()
    assert {k: v.shape for k, v in p.items()} == parameter_shapes(1000)
    assert all(v.dtype == np.float32 for v in p.values())
    for layer in ("conv2a", "conv4b", "conv5a", "fc6b", "fc7a"):
        np.testing.assert_array_equal(p[layer + ".bias"], 1.0)
    for layer in ("conv1a", "conv3b", "fc8"):
        np.testing.assert_array_equal(p[layer + ".bias"], 0.0)
    w = p["fc6a.weight"]
    assert abs(float(w.mean())) < 1e-4 and abs(float(w.std()) - 0.01) < 1e-4


def test_init_is_configurable_and_seeded():
    a = AlexNet(10, preset="small", devices="cpu", seed=1, init=dict(std=0.02, bias=0.1))
    b = AlexNet(10, preset="small", devices="cpu", seed=1, init="caffe")
    c = AlexNet(10, preset="small", devices="cpu", seed=2, init="caffe")
    np.testing.assert_array_equal(a.parameters()["conv2b.bias"], np.float32(0.1))
    assert abs(float(a.parameters()["fc6a.weight"].std()) - 0.02) < 1e-3
    np.testing.assert_array_equal(a.parameters()["conv3a.weight"], 2 * b.parameters()["conv3a.weight"])
    assert not np.array_equal(b.parameters()["conv3a.weight"], c.parameters()["conv3a.weight"])


def grouped_forward(m: AlexNet, x, *, train=False, step=0):
    """The same network written as one grouped network with pyalexnet.ops (groups=2 in conv2, 4, 5)."""
    p, cfg = m.parameters(), m.config

    def both(layer, kind):
        return np.concatenate([p[f"{layer}a.{kind}"], p[f"{layer}b.{kind}"]])

    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    h = x * np.float32(cfg["input_scale"])
    # conv1's towers are separate filters on the same image: a full conv with both towers' filters.
    for layer, groups in (("conv1", 1), ("conv2", 2), ("conv3", 1), ("conv4", 2), ("conv5", 2)):
        _, _, stride, pad = cfg[layer]
        h = ops.relu(ops.conv2d(h, both(layer, "weight"), both(layer, "bias"), stride=stride, padding=pad,
                                groups=groups))
        if layer in ("conv1", "conv2"):
            # Each tower normalises across its own maps (cuda-convnet's per-GPU layers): LRN per group.
            half = h.shape[1] // 2
            h = np.concatenate([ops.lrn(np.ascontiguousarray(h[:, :half]), **lrn),
                                ops.lrn(np.ascontiguousarray(h[:, half:]), **lrn)], axis=1)
        if layer in ("conv1", "conv2", "conv5"):
            h = ops.max_pool(h, size=3, stride=2)
    h = h.reshape(len(x), -1)
    fc = cfg["fc"]
    for layer in ("fc6", "fc7"):
        h = ops.relu(ops.linear(h, both(layer, "weight"), both(layer, "bias")))
        if train:
            halves = [ops.dropout(h[:, t * fc:(t + 1) * fc], p=0.5, seed=m._dropout_seed(step, layer, t))[0]
                      for t in (0, 1)]
            h = np.concatenate(halves, axis=1)
    return ops.linear(h, p["fc8.weight"], p["fc8.bias"])


@pytest.mark.parametrize("preset,size", [("small", 32), ("small", 48), ("tiny", 15)])
def test_forward_equals_the_grouped_network(rng, preset, size):
    m = AlexNet(7, preset=preset, input_size=size, devices="cpu", seed=5, init=dict(std=0.05, bias=0.1))
    x = rng.standard_normal((3, 3, size, size)).astype(np.float32) * 20
    want = grouped_forward(m, x)
    got = m.forward(x)
    assert got.shape == (3, 7)
    assert np.abs(want).max() > 1e-3  # the signal reaches the logits
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # Training mode: the dropout masks are the ones the seeds promise.
    got = m.forward(x, train=True, step=11)
    np.testing.assert_allclose(got, grouped_forward(m, x, train=True, step=11), rtol=1e-4,
                               atol=1e-5 * np.abs(want).max())


def test_paper_forward_at_batch_one_equals_grouped_network(rng):
    m = AlexNet(1000, devices="cpu", seed=0)
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32) * 50
    want = grouped_forward(m, x)
    got = m.forward(x)
    assert got.shape == (1, 1000)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_features_and_predict(rng):
    m = AlexNet(6, preset="small", devices="cpu")
    x = rng.standard_normal((5, 3, 32, 32)).astype(np.float32)
    f = m.features(x, batch_size=2)
    assert f.shape == (5, 2 * m.config["fc"]) and (f >= 0).all()
    prob = m.predict(x, batch_size=2)
    assert prob.shape == (5, 6)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(prob, ops.softmax(m.forward(x)), rtol=1e-5, atol=1e-7)


def test_a_nan_weight_reaches_the_logits(rng):
    # So a step that leaves a NaN in the filters gives a NaN loss next, and training stops (TrainingDiverged)
    # instead of running on: ReLU once mapped NaN to 0 and hid a NaN conv1 filter from every later layer.
    m = AlexNet(6, preset="small", devices="cpu", seed=0)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert np.isfinite(m.forward(x)).all()
    m.parameters()["conv1a.weight"][0, 0, 0, 0] = np.nan  # as a step would leave it (load_parameters refuses it)
    assert np.isnan(m.forward(x)).all()


def test_dropout_masks_follow_seed_and_step(rng):
    m = AlexNet(5, preset="tiny", devices="cpu", init="he")
    x = rng.standard_normal((4, 3, 15, 15)).astype(np.float32)
    a = m.forward(x, train=True, step=3)
    np.testing.assert_array_equal(a, m.forward(x, train=True, step=3))
    assert not np.array_equal(a, m.forward(x, train=True, step=4))
    assert m.step == 0
    m.forward(x, train=True)
    m.forward(x, train=True)
    assert m.step == 2


def test_backward_fills_every_gradient(rng):
    m = AlexNet(5, preset="tiny", devices="cpu", init="he")
    x = rng.standard_normal((2, 3, 15, 15)).astype(np.float32)
    with pytest.raises(RuntimeError, match="forward"):
        m.backward(np.zeros((2, 5), np.float32))
    logits = m.forward(x, train=True)
    loss, d = ops.softmax_cross_entropy(logits, np.array([1, 3]))
    m.backward(d)
    g = m.gradients()
    assert list(g) == list(m.parameters())
    for k, v in g.items():
        assert v.shape == m.parameters()[k].shape, k
    assert np.abs(g["conv1a.weight"]).max() > 0 and np.abs(g["fc8.weight"]).max() > 0


def test_cpu_backward_reuses_the_fully_connected_weight_gradients(rng):
    # Two steps on one model: the second writes its fc weight gradients into the first's arrays (no fresh
    # 75 MB allocation per step in the paper network) and gets what a fresh model gets, bit for bit.
    x = [rng.standard_normal((2, 3, 15, 15)).astype(np.float32) for _ in range(2)]
    labels = np.array([1, 3])
    m = AlexNet(5, preset="tiny", devices="cpu", init="he", seed=4)
    first = None
    for i in range(2):
        _, d = ops.softmax_cross_entropy(m.forward(x[i], train=True, step=i), labels)
        m.backward(d)
        if first is None:
            first = m.gradients()
    second = m.gradients()
    fresh = AlexNet(5, preset="tiny", devices="cpu", init="he", seed=4)
    _, d = ops.softmax_cross_entropy(fresh.forward(x[1], train=True, step=1), labels)
    fresh.backward(d)
    for k, g in second.items():
        assert g.tobytes() == fresh.gradients()[k].tobytes(), k
        if k.startswith("fc") and k.endswith(".weight"):
            assert g is first[k], k


def test_whole_tiny_network_matches_finite_differences():
    from pyalexnet.gradcheck import check_network

    results = check_network("cpu", points=4)
    assert len(results) == len(parameter_shapes(7, preset="tiny"))
    bad = [r for r in results if not r.passed]
    assert not bad, bad


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="preset"):
        AlexNet(10, preset="huge")
    with pytest.raises(ValueError, match="num_classes"):
        AlexNet(1, devices="cpu")
    with pytest.raises(ValueError, match="device"):
        AlexNet(10, preset="tiny", devices="tpu")
    # What it takes, and the preset that takes these crops (it said only where the maps vanish).
    with pytest.raises(ValueError, match=r"too small for the 'paper' preset: the maps vanish at conv5; it takes "
                                         r"crops of 63 px and up, preset='small' takes 40$"):
        AlexNet(10, preset="paper", input_size=40, devices="cpu")
    AlexNet(10, preset="paper", input_size=63, devices="cpu")
    with pytest.raises(ValueError, match=r"the 'small' preset: .* of 15 px and up$"):
        AlexNet(10, preset="small", input_size=14, devices="cpu")
    with pytest.raises(ValueError, match=r"the 'paper' preset: the maps vanish at conv1; it takes crops of 63 px"):
        pyalexnet.model.parameter_shapes(10, input_size=10)
    with pytest.raises(ValueError, match="init"):
        AlexNet(10, preset="tiny", devices="cpu", init="xavier")
    m = AlexNet(10, preset="tiny", devices="cpu")
    with pytest.raises(ValueError, match=r"\(N, 3, 15, 15\)"):
        m.forward(np.zeros((2, 3, 16, 16), np.float32))
    # Raw pixels, either layout, would be wrong answers: both name the function that prepares them.
    with pytest.raises(ValueError, match=r"got \(2, 15, 15, 3\); pyalexnet.data.center_crop"):
        m.predict(np.zeros((2, 15, 15, 3), np.uint8))
    with pytest.raises(TypeError, match="floating point pixels minus the training mean image, got uint8"):
        m.predict(np.zeros((2, 3, 15, 15), np.uint8))
    with pytest.raises(TypeError, match="got int64"):
        m.forward(np.zeros((2, 3, 15, 15), np.int64))
    with pytest.raises(ValueError, match="shape"):
        m.load_parameters({k: np.zeros((1,), np.float32) for k in m.parameters()})
    # Integer pixels in a nested list are integer pixels too; lists of floats are taken.
    with pytest.raises(TypeError, match="got int64"):
        m.forward(np.zeros((2, 3, 15, 15), np.uint8).tolist())
    assert m.predict(np.zeros((2, 3, 15, 15)).tolist()).shape == (2, 10)
    for step, exc in ((1.5, TypeError), (-1, ValueError)):  # the dropout masks' seed
        with pytest.raises(exc, match="step must be"):
            m.forward(np.zeros((2, 3, 15, 15), np.float32), train=True, step=step)
    with pytest.raises(TypeError, match="argument 'x' must be an array, got None"):
        m.predict(None)
    with pytest.raises(ValueError, match="step must be >= 0"):  # eval mode does not use it, but it is wrong
        m.forward(np.zeros((2, 3, 15, 15), np.float32), step=-1)
    for bs, exc in ((2.5, TypeError), ("2", TypeError), (True, TypeError), (0, ValueError)):
        with pytest.raises(exc, match="batch_size must be"):  # a Python error about floats or '<' before
            m.predict(np.zeros((2, 3, 15, 15), np.float32), batch_size=bs)
    with pytest.raises(TypeError, match="devices must be 'auto', 'cpu', 'cuda', 'cuda:N' or a pair"):
        AlexNet(10, preset="tiny", devices=5)
    # backward names its own argument (it named forward's 'x', or linear_backward's 'dy').
    m.forward(np.zeros((2, 3, 15, 15), np.float32), train=True)
    with pytest.raises(TypeError, match="argument 'dlogits' must be an array, got None"):
        m.backward(None)
    with pytest.raises(TypeError, match="argument 'dlogits' must be a floating-point array, got dtype int64"):
        m.backward(np.zeros((2, 10), np.int64))
    m.backward(np.zeros((2, 10), np.float32))  # still usable
    for init in (dict(std=float("nan")), dict(std=-1.0), dict(bias=float("inf"))):  # NaN weights and logits
        with pytest.raises(ValueError, match="init (std|bias)"):
            AlexNet(10, preset="tiny", devices="cpu", init=init)


def test_masked_arrays_are_refused_not_unmasked():
    # forward, predict, features, backward and load_parameters silently dropped the mask (np.asarray in the towers'
    # take) and computed on the masked values; the ops refuse masked arrays, and so does the model.
    m = AlexNet(10, preset="tiny", devices="cpu")
    x = np.zeros((2, 3, 15, 15), np.float32)
    masked = np.ma.masked_array(x, mask=x == 0)
    for call in (m.forward, m.predict, m.features, lambda a: m.forward(a, train=True)):
        with pytest.raises(ValueError, match="argument 'x' is a numpy masked array"):
            call(masked)
    m.forward(x, train=True)
    with pytest.raises(ValueError, match="argument 'dlogits' is a numpy masked array"):
        m.backward(np.ma.masked_array(np.zeros((2, 10)), mask=True))
    before = {k: np.array(v) for k, v in m.parameters().items()}
    last = list(before)[-1]
    with pytest.raises(ValueError, match=f"parameter {last} is a numpy masked array"):
        m.load_parameters(dict(before, **{last: np.ma.masked_array(before[last] + 1, mask=True)}))
    for k, v in m.parameters().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_parameters_checks_every_array_before_changing_any():
    m = AlexNet(10, preset="tiny", devices="cpu", seed=0)
    before = {k: np.array(v) for k, v in m.parameters().items()}
    good = {k: np.full(v.shape, 0.5, np.float32) for k, v in before.items()}
    last = list(good)[-1]
    for value, exc, match in [(np.array(["a"] * before[last].size).reshape(before[last].shape), TypeError,
                               "must be a floating-point array, got dtype <U1"),
                              (np.zeros(before[last].shape, np.int64), TypeError, "got dtype int64"),  # was cast
                              (np.zeros(before[last].shape, np.complex64), TypeError, "complex64"),
                              (None, TypeError, f"parameter {last} must be an array, got None"),
                              # every prediction would be NaN, said nowhere
                              (np.where(np.arange(before[last].size) % 2, np.nan, 0.5).reshape(before[last].shape),
                               ValueError, f"parameter {last} has {before[last].size // 2} NaN or infinite values"),
                              (np.full(before[last].shape, -np.inf, np.float32), ValueError, "infinite value"),
                              (np.full(before[last].shape, 1e300), ValueError,  # inf once in float32
                               f"has {before[last].size} NaN or infinite values in float32")]:
        with pytest.raises(exc, match=match):
            m.load_parameters(dict(good, **{last: value}))
        for k, v in m.parameters().items():  # the earlier arrays were written before the bad one was found
            np.testing.assert_array_equal(v, before[k])
    m.load_parameters(dict(good, **{last: before[last].astype(np.float64).tolist()}))  # a list of floats is fine
    assert (m.parameters()[list(good)[0]] == 0.5).all()
    if not pyalexnet.cuda_available():
        with pytest.raises(ValueError, match="GPU backend"):
            AlexNet(10, preset="tiny", devices="cuda:0")


def test_load_parameters_orders_the_tower_streams_around_the_caller(monkeypatch):
    # On GPUs the copy runs on the tower's stream: it must wait for the caller's stream (which produced
    # the values) and hand back to it, as forward() does. The CPU places record the same calls.
    from pyalexnet import model as M

    log = []
    real_active = M._Place.active
    monkeypatch.setattr(M._Place, "after_caller", lambda self: log.append("after_caller"))
    monkeypatch.setattr(M._Place, "before_caller", lambda self: log.append("before_caller"))
    monkeypatch.setattr(M._Place, "active", lambda self: (log.append("active"), real_active(self))[1])
    m = AlexNet(10, preset="tiny", devices="cpu")
    new = {k: np.full(v.shape, 0.5, np.float64) for k, v in m.parameters().items()}
    log.clear()
    m.load_parameters(new)
    assert log == ["after_caller", "active", "before_caller"] * len(new)
    for k, v in m.parameters().items():
        assert v.dtype == np.float32 and np.all(v == 0.5), k


def test_default_devices_follow_the_machine():
    m = AlexNet(10, preset="tiny")
    if pyalexnet.cuda_available():
        assert m.devices[0].startswith("cuda")
    else:
        assert m.devices == ("cpu", "cpu")


# ----- GPU: the same numbers as the CPU, on one GPU and across two -----
def _gpu_pairs(cp):
    pairs = [("cuda:0", "cuda:0")]
    if cp.cuda.runtime.getDeviceCount() >= 2:
        pairs.append(("cuda:0", "cuda:1"))
    return pairs


@pytest.mark.gpu
def test_gpu_forward_backward_match_cpu(cp, rng):
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32) * 30
    y = np.array([0, 1, 2, 3])
    ref = AlexNet(10, preset="small", devices="cpu", seed=2, init="caffe")
    logits = ref.forward(x, train=True, step=7)
    _, d = ops.softmax_cross_entropy(logits, y)
    ref.backward(d)
    for devices in _gpu_pairs(cp):
        m = AlexNet(10, preset="small", devices=devices, seed=2, init="caffe")
        for k, v in m.parameters().items():
            assert int(v.device.id) == int(m.place_of(k).device[5:]), k
        out = m.forward(cp.asarray(x), train=True, step=7)
        np.testing.assert_allclose(cp.asnumpy(out), logits, rtol=1e-3, atol=1e-3 * np.abs(logits).max())
        _, dg = ops.softmax_cross_entropy(out, cp.asarray(y))
        m.backward(dg)
        for k, g in m.gradients().items():
            want = ref.gradients()[k]
            np.testing.assert_allclose(cp.asnumpy(g), want, rtol=2e-3, atol=2e-3 * np.abs(want).max() + 1e-7,
                                       err_msg=f"{devices} {k}")
        np.testing.assert_allclose(cp.asnumpy(m.predict(x)), ref.predict(x), rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
def test_gpu_whole_network_gradcheck(cp):
    from pyalexnet.gradcheck import check_network

    bad = [r for r in check_network("cuda", points=4) if not r.passed]
    assert not bad, bad


@pytest.mark.gpu
def test_gpu_load_parameters_from_gpu_and_host_arrays(cp):
    for devices in _gpu_pairs(cp):
        src = AlexNet(10, preset="tiny", devices="cpu", seed=5)
        m = AlexNet(10, preset="tiny", devices=devices, seed=6)
        with cp.cuda.Device(0):
            m.load_parameters({k: cp.asarray(v, cp.float64) * 1 for k, v in src.parameters().items()})
        for k, v in m.parameters().items():
            np.testing.assert_array_equal(cp.asnumpy(v), src.parameters()[k], err_msg=k)
        m.load_parameters(src.parameters())
        for k, v in m.parameters().items():
            np.testing.assert_array_equal(cp.asnumpy(v), src.parameters()[k], err_msg=k)
        # a NaN in a GPU array is counted on its own GPU, and refused before anything is copied
        last = list(src.parameters())[-1]
        with cp.cuda.Device(cp.cuda.runtime.getDeviceCount() - 1):
            bad = cp.asarray(src.parameters()[last])
            bad[0] = cp.nan
        with pytest.raises(ValueError, match=f"parameter {last} has 1 NaN or infinite value"):
            m.load_parameters(dict(src.parameters(), **{last: bad}))
        for k, v in m.parameters().items():
            np.testing.assert_array_equal(cp.asnumpy(v), src.parameters()[k], err_msg=k)


@pytest.mark.parametrize("preset", ["small", "tiny", "paper"])
def test_smallest_image_size_is_the_first_side_whose_crops_the_network_takes(preset):
    from pyalexnet.data import crop_size_for, smallest_image_size

    side = smallest_image_size(preset)
    AlexNet(3, preset=preset, input_size=crop_size_for(side), devices="cpu")  # builds
    with pytest.raises(ValueError, match=f"too small for the '{preset}' preset"):
        AlexNet(3, preset=preset, input_size=crop_size_for(side - 1), devices="cpu")
    assert smallest_image_size("small") == 18  # what the error messages and README say


def test_constructor_defaults_and_argument_types_follow_train():
    from pyalexnet.training import defaults_for

    # The small presets defaulted to the paper's init (a flat loss on them, README) while train uses He.
    for preset in ("small", "tiny"):
        assert defaults_for(preset)["init"] == "he"
        assert AlexNet(10, preset=preset, devices="cpu").init == dict(std="he", bias=0.0)
    assert defaults_for("paper")["init"] == "paper"
    assert AlexNet(10, preset="tiny", devices="cpu", init="paper").init["std"] == 0.01  # given: kept
    m = AlexNet(10, preset="tiny", devices="cpu")
    x = np.zeros((2, 3, 15, 15), np.float32)
    for train in ("no", 0, None):
        with pytest.raises(TypeError, match="train must be True or False"):
            m.forward(x, train=train)  # "no" ran in training mode
    assert m.step == 0
    with pytest.raises(TypeError, match="params must be a mapping .* got NoneType"):
        m.load_parameters(None)  # was "'NoneType' object is not iterable"
    with pytest.raises(TypeError, match="input_size must be a positive integer, got True"):
        AlexNet(10, preset="small", input_size=True, devices="cpu")  # was taken as 1


@pytest.mark.gpu
def test_gpu_a_gpu_the_machine_lacks_is_named(cp):
    # It was CUDA's "invalid device ordinal" from inside the placement.
    n = cp.cuda.runtime.getDeviceCount()
    with pytest.raises(ValueError, match=rf"device 'cuda:{n}' asked for, but this machine has {n} GPU"):
        AlexNet(10, preset="tiny", devices=f"cuda:{n}")


def test_initial_parameters_are_handed_to_the_callers_stream(monkeypatch):
    # The uploads run on the towers' streams (take() inside active()); nothing made the caller's stream wait for
    # them, so a read or write right after AlexNet() on the caller's stream was not ordered after them. The CPU
    # places record the same calls.
    from pyalexnet import model as M

    log = []
    real_take = M._Place.take
    monkeypatch.setattr(M._Place, "take", lambda self, a: (log.append("take"), real_take(self, a))[1])
    monkeypatch.setattr(M._Place, "before_caller", lambda self: log.append("before_caller"))
    AlexNet(10, preset="tiny", devices="cpu")
    first = log.index("before_caller")
    assert first > 0 and set(log[:first]) == {"take"} and set(log[first:]) == {"before_caller"}


def test_each_tower_and_layer_draws_its_own_dropout_mask(rng):
    # The masks come from (seed, step, layer, tower): fc6a, fc6b, fc7a and fc7b have the same shape, and a seed
    # that left out the tower or the layer gave two of them one mask (the grouped reference above asks the model
    # for its seeds, so it agreed with any such mistake).
    m = AlexNet(4, preset="small", devices="cpu", seed=0)
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    m.forward(x, train=True, step=2)
    masks = {name: np.asarray(m._cache[name]["mask"]) for name in ("fc6a", "fc6b", "fc7a", "fc7b")}
    assert all(mk.shape == (3, m.config["fc"]) for mk in masks.values())
    names = list(masks)
    for i, a in enumerate(names):
        assert 0.3 < masks[a].mean() < 0.7, a  # p = 0.5
        for b in names[i + 1:]:
            assert not np.array_equal(masks[a], masks[b]), (a, b)


def test_he_init_scales_each_layer_by_its_fan_in():
    # init="he": N(0, 2 / fan_in) in conv1..fc7, N(0, 1 / fan_in) in fc8, fan_in = in_channels * kernel area
    # (conv) or the input width (fc); biases 0.
    m = AlexNet(10, preset="small", devices="cpu", seed=0, init="he")
    fan_in = {"conv1": 3 * 5 * 5, "conv2": 16 * 5 * 5, "conv3": 64 * 3 * 3, "conv4": 48 * 3 * 3,
              "conv5": 48 * 3 * 3, "fc6": 2 * 32 * 3 * 3, "fc7": 2 * 256, "fc8": 2 * 256}
    for name, w in m.parameters().items():
        layer = name.split(".")[0].rstrip("ab")
        if name.endswith(".bias"):
            np.testing.assert_array_equal(w, 0.0)
            continue
        assert int(np.prod(w.shape[1:])) == fan_in[layer], name
        want = np.sqrt((1.0 if layer == "fc8" else 2.0) / fan_in[layer])
        assert abs(float(w.std()) / want - 1) < 0.08, (name, float(w.std()), want)


@pytest.mark.parametrize("size, fc6_in", [(32, 2 * 32 * 3 * 3), (47, 2 * 32 * 5 * 5), (48, 2 * 32 * 2 * 2),
                                          (64, 2 * 32 * 3 * 3)])
def test_small_preset_takes_conv1_stride_2_from_48_pixels(size, fc6_in):
    # Sizes by hand, (size + 2 * pad - kernel) // stride + 1 then the 3/2 pools after conv1, conv2 and conv5:
    # at 47 px conv1 has stride 1 (47 -> 47 -> pool 23 -> pool 11 -> pool 5), at 48 stride 2 (48 -> 24 ->
    # pool 11 -> pool 5 -> pool 2), at 64 (64 -> 32 -> 15 -> 7 -> 3).
    shapes = parameter_shapes(10, preset="small", input_size=size)
    assert shapes["fc6a.weight"] == (256, fc6_in)
