"""The functional API's refusals that the per-op tests did not pin (found by mutation testing): each is a ValueError
or TypeError naming the argument, before the compiled layer sees the call."""
import numpy as np
import pytest

from pyalexnet import ops


def _f32(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def test_linear_refuses_a_one_dimensional_x_and_a_bias_of_another_shape():
    # A 1-d x against w (out, 1) was taken as a batch of one-feature rows; a bias (1, out) was broadcast in.
    with pytest.raises(ValueError, match=r"argument 'x' must be \(N, in\) or \(N, \.\.\.\), got shape \(3,\)"):
        ops.linear(_f32(3), _f32(2, 1))
    with pytest.raises(ValueError, match=r"argument 'b' must have shape \(2,\), got \(1, 2\)"):
        ops.linear(_f32(3, 4), _f32(2, 4), _f32(1, 2))


def test_linear_backward_refuses_a_dw_out_that_shares_memory_with_x():
    # cuBLAS would read x while writing dw over it; numpy hid it by copying.
    x, w, dy = _f32(3, 3), _f32(3, 3), _f32(3, 3)
    with pytest.raises(ValueError, match="'dw_out' must not share memory with dy, x or w"):
        ops.linear_backward(dy, x, w, dw_out=x)


def test_lrn_refuses_an_even_size_and_a_subnormal_k():
    x = _f32(1, 4, 2, 2)
    with pytest.raises(ValueError, match="LRN size must be an odd number >= 1"):
        ops.lrn(x, size=4)
    with pytest.raises(ValueError, match="smallest normal number"):
        ops.lrn(x, k=1e-40)  # above 0, below float32's smallest normal: the GPU's fast division overflows


def test_pooling_indices_are_refused_where_a_byte_cannot_hold_or_name_the_winner():
    x = _f32(1, 1, 17, 17)
    with pytest.raises(ValueError, match="needs size <= 16"):
        ops.max_pool(x, size=17, stride=17, return_indices=True)  # 17 * 17 taps: a byte wraps
    x = _f32(1, 1, 7, 7)
    y, idx = ops.max_pool(x, size=3, stride=2, return_indices=True)
    bad = idx.copy()
    bad[0, 0, 0, 0] = 9  # one past a 3x3 window's last tap
    with pytest.raises(ValueError, match="holds winner 9, outside a 3x3 window"):
        ops.max_pool_backward(np.ones_like(y), x, indices=bad, size=3, stride=2)
    with pytest.raises(ValueError, match=r"argument 'dy' must have shape \(1, 1, 3, 3\)"):
        ops.max_pool_backward(np.ones((1, 1, 3, 2), np.float32), x, indices=idx, size=3, stride=2)


def test_dropout_refuses_p_one_and_a_mask_that_is_not_uint8():
    x = _f32(2, 3)
    with pytest.raises(ValueError, match=r"dropout p must be in \[0, 1\), got 1.0"):
        ops.dropout(x, p=1.0, seed=0)  # every unit dropped and the rest scaled by 1/0
    _, mask = ops.dropout(x, seed=0)
    with pytest.raises(TypeError, match="'mask' must be the uint8 mask returned by dropout, got bool"):
        ops.dropout_backward(x, mask.astype(bool))


def test_softmax_cross_entropy_refuses_an_empty_batch_and_labels_it_cannot_pair():
    with pytest.raises(ValueError, match="needs at least one row"):
        ops.softmax_cross_entropy(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"'labels' must have shape \(2,\) \(one per row"):
        ops.softmax_cross_entropy(_f32(2, 3), np.array([0, 1, 2]))
    # A uint64 label of 2^63 is said as it is, not as the int64 it wraps to (-2^63).
    with pytest.raises(ValueError, match="label 9223372036854775808 is out of range for 3 classes"):
        ops.softmax_cross_entropy(_f32(2, 3), np.array([0, 2**63], np.uint64))


def test_conv2d_refuses_negative_padding_and_a_dy_of_another_shape_with_as_many_elements():
    x, w = _f32(1, 2, 5, 5), _f32(3, 2, 3, 3)
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        ops.conv2d(x, w, padding=-1)
    dy = _f32(1, 3, 3, 3).transpose(0, 1, 3, 2).reshape(1, 3, 3, 3)  # right shape
    ops.conv2d_backward(dy, x, w)
    with pytest.raises(ValueError, match=r"argument 'dy' must have shape \(1, 3, 3, 3\)"):
        ops.conv2d_backward(dy.reshape(1, 9, 3, 1), x, w)  # the same 27 values, read as another layout


def test_sgd_update_refuses_lists_of_different_lengths():
    w, dw, v = [_f32(3), _f32(2)], [_f32(3), _f32(2)], [np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match="w, dw and v must be as many arrays each, got 2, 2 and 1"):
        ops.sgd_update(w, dw, v, lr=0.1)
