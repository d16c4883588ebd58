"""pyalexnet.gradcheck and `pyalexnet gradcheck`: every layer passes, and a wrong gradient is caught."""
import numpy as np
import pytest

import pyalexnet
from pyalexnet import cli, ops
from pyalexnet.gradcheck import check_function, check_layers, format_table


def test_every_layer_passes_on_cpu():
    results = check_layers("cpu", points=12)
    checked = {r.check for r in results}
    assert {"conv2d", "conv2d groups=2", "linear", "relu", "lrn", "max_pool", "dropout (fixed mask)",
            "softmax_cross_entropy"} <= checked
    bad = [r for r in results if not r.passed]
    assert not bad, format_table(bad)
    assert all(r.points > 0 for r in results)


def _linear_problem(rng):
    x, w = rng.standard_normal((3, 6)).astype(np.float32), rng.standard_normal((4, 6)).astype(np.float32)
    r = rng.standard_normal((3, 4))

    def loss(inp):
        yr = np.asarray(ops.linear(inp["x"], inp["w"]), np.float64) * r
        return float(yr.sum()), float(np.abs(yr).sum())

    dx, dw, _ = ops.linear_backward(r.astype(np.float32), x, w)
    return loss, dict(x=x, w=w), dict(x=dx, w=dw)


@pytest.mark.parametrize("corrupt", ["scale", "one element", "transposed"])
def test_a_wrong_gradient_fails(rng, corrupt):
    loss, inputs, grads = _linear_problem(rng)
    assert all(r.passed for r in check_function("linear", loss, grads, inputs))
    bad = dict(grads)
    if corrupt == "scale":
        bad["w"] = grads["w"] * np.float32(1.05)
    elif corrupt == "one element":
        bad["w"] = grads["w"].copy()
        bad["w"].flat[7] += 0.1 * np.abs(grads["w"]).max()
    else:
        bad["x"] = grads["x"][::-1].copy()
    results = check_function("linear", loss, bad, inputs, points=100)
    assert not all(r.passed for r in results)


def test_kinks_are_skipped_not_failed():
    # ReLU inputs within the step of 0 cross the kink and are skipped; the one far from it is compared.
    x = np.array([1e-4, -1e-4, 2e-4, 5.0], np.float32)

    def loss(inp):
        y = np.asarray(ops.relu(inp["x"]), np.float64)
        return float(y.sum()), float(np.abs(y).sum())

    (r,) = check_function("relu", loss, {"x": np.array([1, 0, 1, 1], np.float32)}, {"x": x},
                          pattern=lambda a: a["x"] > 0)
    assert r.skipped == 3 and r.points == 1 and r.passed


def test_cli_gradcheck_cpu(capsys):
    assert cli.main(["gradcheck", "--device", "cpu", "--points", "4"]) == 0
    out = capsys.readouterr().out
    assert "max rel. error" in out and "network (tiny, two towers)" in out and "FAIL" not in out
    assert "gradient checks passed on the cpu backend" in out
    assert "tol 0.01 x max(|analytic|, |numeric|, 1% of the largest compared) + 16 float32 ulps" in out  # stated


@pytest.mark.parametrize("kwargs, exc, match", [(dict(points=0), ValueError, "points must be >= 1"),
                                                 (dict(points=2.5), TypeError, "points must be an integer"),
                                                 (dict(tol=float("nan")), ValueError, "tol must be a finite"),
                                                 (dict(tol=0.0), ValueError, "tol must be > 0, got 0.0"),
                                                 (dict(tol=-1), ValueError, "tol must be > 0, got -1.0"),
                                                 (dict(seed=-1), ValueError, "seed must be >= 0, got -1")])
def test_settings_that_would_fail_every_check_are_refused(kwargs, exc, match):
    # points=0 and tol=NaN reported every check as FAIL with NaN errors.
    for check in (check_layers, pyalexnet.gradcheck.check_network):
        with pytest.raises(exc, match=match):
            check("cpu", **kwargs)


def test_gpu_is_another_name_for_cuda():
    # As AlexNet(devices="gpu") takes it; without a GPU, the reason is said instead of "must be 'cpu' or 'cuda'".
    if pyalexnet.cuda_available():
        assert check_layers("gpu", points=2)
    else:
        with pytest.raises(ValueError, match="GPU backend is not usable"):
            check_layers("gpu")
    with pytest.raises(ValueError, match="unknown device 'tpu': use 'cpu', 'cuda' or 'cuda:N'"):  # AlexNet's words
        check_layers("tpu")
    with pytest.raises(ValueError, match="device must be one device"):
        check_layers("cpu,cpu")
    if not pyalexnet.cuda_available():  # "cuda:0", as AlexNet(devices=) takes it, was "must be 'cpu' or 'cuda'"
        with pytest.raises(ValueError, match="device 'cuda:0' asked for, but the GPU backend is not usable"):
            check_layers("cuda:0")


def test_cli_gradcheck_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["gradcheck", "--points", "0"])
    assert exc.value.code == 2 and "argument --points: must be at least 1, got 0" in capsys.readouterr().err
    if not pyalexnet.cuda_available():
        assert cli.main(["gradcheck", "--device", "cuda"]) == 2
        assert "GPU backend is not usable" in capsys.readouterr().err


@pytest.mark.gpu
def test_every_layer_passes_on_gpu():
    bad = [r for r in check_layers("cuda", points=12) if not r.passed]
    assert not bad, format_table(bad)


def _sparse_problem(rng):
    # y = relu(x) summed against r, with 95% of x negative: the gradient is zero almost everywhere.
    x = -np.abs(rng.standard_normal(400)).astype(np.float32) - 0.5
    live = rng.choice(400, 20, replace=False)
    x[live] = -x[live]
    r = rng.standard_normal(400)

    def loss(inp):
        yr = np.asarray(ops.relu(inp["x"]), np.float64) * r
        return float(yr.sum()), float(np.abs(yr).sum())

    return loss, dict(x=x), dict(x=ops.relu_backward(r.astype(np.float32), ops.relu(x)))


def test_points_are_taken_where_the_gradient_is_not_zero_too(rng):
    # fc7's weights in the tiny network have 12% non-zero gradients: uniform picks compared zeros against zeros
    # and passed whatever the backward computed there.
    loss, inputs, grads = _sparse_problem(rng)
    (r,) = check_function("relu", loss, grads, inputs, points=4, seed=3)
    assert r.passed and r.points == 4 and r.nonzero >= 2
    bad = {"x": grads["x"] * np.float32(1.05)}  # wrong only where it is not zero
    for seed in range(10):
        (r,) = check_function("relu", loss, bad, inputs, points=4, seed=seed)
        assert not r.passed, seed


def test_a_check_that_compared_only_zeros_says_so(capsys, monkeypatch):
    x = np.full(8, -1.0, np.float32)

    def loss(inp):  # relu of negative inputs: no gradient anywhere
        y = np.asarray(ops.relu(inp["x"]), np.float64)
        return float(y.sum()), float(np.abs(y).sum())

    (r,) = check_function("relu", loss, {"x": np.zeros(8, np.float32)}, {"x": x}, points=4)
    assert r.passed and r.zeros_only and r.nonzero == 0
    assert "pass, zeros only" in format_table([r])
    # The command says which checks those were.
    import pyalexnet.gradcheck as gc

    monkeypatch.setattr(gc, "run_all", lambda *a, **k: [r])
    assert cli.main(["gradcheck"]) == 0
    assert "1 check compared only zero gradients" in capsys.readouterr().out


def test_cli_gradcheck_says_when_tol_is_below_round_off(capsys):
    assert cli.main(["gradcheck", "--layers-only", "--points", "4", "--tol", "1e-7"]) == 0
    out = capsys.readouterr().out
    assert "--tol 1e-07 did, so --tol decided little" in out
    assert cli.main(["gradcheck", "--layers-only", "--points", "4"]) == 0
    assert "decided little" not in capsys.readouterr().out
    assert cli.main(["gradcheck", "--seed", "-1"]) == 2
    assert "--seed must be >= 0, got -1" in capsys.readouterr().err


def test_the_api_is_reached_from_the_package():
    # `pyalexnet.gradcheck.run_all` was an AttributeError until `import pyalexnet.gradcheck`.
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "import pyalexnet; print(pyalexnet.gradcheck.run_all.__doc__)"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "check_layers" in r.stdout, r.stderr


def test_check_function_refuses_what_breaks_its_contract(rng):
    # A gradient of shape (3,) for a 50-element input was compared on 3 points, silently; a loss returning a
    # bare float failed with "cannot unpack non-iterable float".
    x = rng.standard_normal(50).astype(np.float32)
    x0 = x.copy()

    def loss(inp):
        return float(np.sum(inp["x"], dtype=np.float64)), float(np.abs(inp["x"]).sum())

    ones = np.ones(50, np.float32)
    assert check_function("sum", loss, {"x": ones}, {"x": x}, points=4)[0].passed
    for analytic, inputs, exc, match in [
            ({"x": np.ones(3, np.float32)}, {"x": x}, ValueError,
             r"analytic\['x'\] has shape \(3,\), but inputs\['x'\] has shape \(50,\)"),
            ({"x": ones.reshape(5, 10)}, {"x": x}, ValueError, r"has shape \(5, 10\), but"),
            ({"y": ones}, {"x": x}, ValueError, "analytic gradients for 'y', which inputs has not"),
            ({"x": ones}, {"x": list(x)}, TypeError, r"inputs\['x'\] must be a host float32 numpy array, got list"),
            ({"x": ones}, {"x": np.arange(50)}, TypeError, "got an array of int64"),
            ({"x": ones[:25]}, {"x": np.ones((50, 2), np.float32)[:, 0]}, ValueError, "C-contiguous"),
            ([ones], {"x": x}, TypeError, "analytic must be a dict")]:
        with pytest.raises(exc, match=match):
            check_function("sum", loss, analytic, inputs)
    for bad, said in [(lambda inp: 1.5, "got float 1.5"), (lambda inp: (1.0, 2.0, 3.0), "got a tuple of 3"),
                      (lambda inp: (np.ones(2), 1.0), "got a tuple of 2"), (lambda inp: None, "got NoneType None")]:
        with pytest.raises(TypeError, match=r"loss\(inputs\) must return \(value, magnitude\), two numbers, " + said):
            check_function("sum", bad, {"x": ones}, {"x": x}, points=4)
    np.testing.assert_array_equal(x, x0)  # restored after a failing loss


def _wide_linear_problem(rng):
    """linear with a 50 x 60 weight: far more elements than the 24 points a check compares."""
    x, w = rng.standard_normal((8, 60)).astype(np.float32), rng.standard_normal((50, 60)).astype(np.float32)
    r = rng.standard_normal((8, 50))

    def loss(inp):
        yr = np.asarray(ops.linear(inp["x"], inp["w"]), np.float64) * r
        return float(yr.sum()), float(np.abs(yr).sum())

    return loss, dict(x=x, w=w), ops.linear_backward(r.astype(np.float32), x, w)[1]


@pytest.mark.parametrize("corrupt", ["inf", "nan", "huge element, the rest 50% off"])
def test_a_wrong_element_not_compared_still_fails(rng, corrupt):
    # The relative error's floor was 1% of the whole analytic tensor's largest value: one inf (or 1e6) where no
    # point was compared made it inf (or 1e4), and every compared point passed, 50% wrong or not.
    loss, inputs, dw = _wide_linear_problem(rng)
    assert check_function("linear", loss, {"w": dw}, inputs)[0].passed
    bad = dw.copy()
    if corrupt == "huge element, the rest 50% off":
        bad *= np.float32(1.5)
    bad.flat[123] = {"inf": np.inf, "nan": np.nan}.get(corrupt, 1e6)
    for seed in range(3):
        (r,) = check_function("linear", loss, {"w": bad}, inputs, seed=seed)
        assert not r.passed, (seed, format_table([r]))
        assert "FAIL" in format_table([r])
        if corrupt in ("inf", "nan"):
            assert r.nonfinite == 1 and "FAIL (1 NaN/inf)" in format_table([r])


@pytest.mark.parametrize("op", ["conv2d_backward", "lrn_backward", "max_pool_backward"])
def test_cli_fails_on_a_broken_backward(capsys, monkeypatch, op):
    # A backward 3% off, put where check_layers and the model call it: the command must say FAIL, name the
    # layer, and exit 1.
    right = getattr(ops, op)

    def broken(*args, **kwargs):
        out = right(*args, **kwargs)
        if isinstance(out, tuple):  # conv2d_backward: (dx, dw, db); dw wrong
            return (out[0], out[1] * np.float32(1.03), *out[2:])
        return out * np.float32(1.03)

    monkeypatch.setattr(ops, op, broken)
    assert cli.main(["gradcheck", "--points", "8", "--layers-only"]) == 1
    out = capsys.readouterr().out
    layer = {"conv2d_backward": "conv2d w", "lrn_backward": "lrn x", "max_pool_backward": "max_pool x"}[op]
    assert "FAIL" in out and "FAILED: " in out and layer in out.split("FAILED: ")[1]


def test_one_wrong_point_among_many_right_ones_fails(rng):
    # The verdict is the worst point's, not an average: one element 5% off among 24 compared right ones fails.
    loss, inputs, grads = _linear_problem(rng)
    bad = dict(grads, w=grads["w"].copy())
    i = int(np.argmax(np.abs(grads["w"])))
    bad["w"].flat[i] *= np.float32(1.05)
    (_, r) = check_function("linear", loss, bad, inputs, points=100)
    assert r.tensor == "w" and r.points == grads["w"].size
    assert not r.passed and r.worst_ratio > 2, format_table([r])


def test_a_small_gradient_is_judged_against_one_percent_of_the_largest():
    # The stated floor: rel = |a - n| / max(|a|, |n|, 1% of the largest compared). loss = sum(c * x) has gradient
    # c; an element 1/2000 of the largest, reported twice its value, is off by 5% of that floor: tol 1% fails it.
    c = np.array([1.0, 5e-4, 0.3, -0.2], np.float64)
    x = np.array([0.5, -0.7, 0.9, 1.1], np.float32)

    def loss(inp):
        v = c * np.asarray(inp["x"], np.float64)
        return float(v.sum()), float(np.abs(v).sum())

    right = c.astype(np.float32)
    assert check_function("sum", loss, {"x": right}, {"x": x}, points=4)[0].passed
    wrong = right.copy()
    wrong[1] *= 2
    (r,) = check_function("sum", loss, {"x": wrong}, {"x": x}, points=4)
    assert r.points == 4 and not r.passed, format_table([r])


def _cubic_problem(rng, scale):
    """loss = sum(c * x^3) over 64 elements of rms `scale`, one of them 6 times the rms, and its exact gradient."""
    x = (rng.standard_normal(64) * scale).astype(np.float32)
    x[5] = 6 * scale
    c = rng.standard_normal(64)

    def loss(inp):
        v = c * np.asarray(inp["x"], np.float64) ** 3
        return float(v.sum()), float(np.abs(v).sum())

    return loss, {"x": x}, {"x": (3 * c * np.asarray(x, np.float64) ** 2).astype(np.float32)}


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_an_exact_gradient_passes_at_any_scale_with_the_step_documented(rng, scale):
    # The step was eps * rms * |element| / 4 where |element| > 4: units squared, 12% of an element of a pixel-sized
    # tensor (rms 50), and the exact gradient of a cubic at rms 100 failed (error/allowed 3.4). It is eps times the
    # tensor's rms, or times a quarter of the element where that is larger.
    loss, inputs, grads = _cubic_problem(rng, scale)
    (r,) = check_function("cubic", loss, grads, inputs, points=64)
    assert r.passed and r.points == 64, format_table([r])
    x, rms = inputs["x"].copy(), float(np.sqrt(np.mean(np.square(inputs["x"], dtype=np.float64))))
    seen = []

    def recording(inp):
        seen.append(inp["x"].copy())
        return loss(inp)

    check_function("cubic", recording, grads, inputs, points=64, eps=1e-2)
    for i in (0, 5):  # an element under 4 x the rms, and one over
        plus = next(s[i] for s in seen if s[i] > x[i])
        want = 1e-2 * max(rms, abs(float(x[i])) / 4)
        assert float(plus) - float(x[i]) == pytest.approx(want, rel=1e-3), i
