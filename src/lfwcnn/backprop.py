"""Backpropagation through a convolutional layer, written as the paper derives it (section 2).

The forward pass O = X (*) F is a *valid* convolution (Eqs. 1-4), dL/dF the valid convolution
of X with dL/dO (Eqs. 5-10), dL/dX the *full* convolution of dL/dO with F rotated by 180
degrees (Eqs. 11-21), all by the one routine :func:`correlate_valid` ("convolution" is
cross-correlation, as in Eqs. 1-4 and Keras). Beyond Fig. 4's example: batches, several
channels and filters (Fig. 3), strides; Keras layouts (NHWC, (kh, kw, c_in, c_out) filters).
"""

from __future__ import annotations

import numpy as np


def _windows(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """The kh x kw windows of NHWC ``x`` a valid convolution or pooling reads: (N, Ho, Wo, kh,
    kw, C) with Ho = (H - kh) // stride + 1 and likewise Wo (NumPy refuses a larger window)."""
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return np.moveaxis(view[:, ::stride, ::stride], 3, 5)


def correlate_valid(x: np.ndarray, kernel: np.ndarray, stride: int = 1) -> np.ndarray:
    """Slide ``kernel`` (kh, kw, C_in, C_out) over ``x`` (N, H, W, C_in) without padding, summing
    window times kernel over the input channels too (Figs. 2-3, Eqs. 1-4): (N, Ho, Wo, C_out)."""
    windows = _windows(x, *kernel.shape[:2], stride)
    out = np.zeros((*windows.shape[:3], kernel.shape[3]), dtype=np.result_type(x, kernel))
    for i, j in np.ndindex(windows.shape[1:3]):
        out[:, i, j, :] = np.tensordot(windows[:, i, j], kernel, axes=3)
    return out


def conv2d_forward(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None, stride: int = 1
) -> np.ndarray:
    """Forward pass of a conv layer: O = X (*) F + b (Eqs. 1-4; Fig. 3 for several filters)."""
    out = correlate_valid(x, kernel, stride)
    return out if bias is None else out + bias


def rot180(kernel: np.ndarray) -> np.ndarray:
    """Rotate each filter by 180 degrees in the spatial plane, as Eqs. (13)-(21) require."""
    return np.flip(kernel, axis=(0, 1))


def dilate(d_out: np.ndarray, stride: int) -> np.ndarray:
    """Insert ``stride - 1`` zeros between the entries of dL/dO along H and W: O_ij read the
    window at (s*i, s*j), and on that grid the stride-1 Eqs. (7)-(21) hold unchanged."""
    n, ho, wo, c = d_out.shape
    spread = np.zeros((n, stride * (ho - 1) + 1, stride * (wo - 1) + 1, c), dtype=d_out.dtype)
    spread[:, ::stride, ::stride, :] = d_out
    return spread


def pad_full(a: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Zero-pad H and W by kh-1 and kw-1 on both sides: a valid becomes a full convolution
    (the border zeros are why Eq. (13) has one term and Eq. (17) four)."""
    return np.pad(a, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))


def grad_filter(
    x: np.ndarray, d_out: np.ndarray, kernel_size: tuple[int, int], stride: int = 1
) -> np.ndarray:
    """dL/dF as the valid convolution of X with dL/dO (Eqs. 5-10); (kh, kw, C_in, C_out).

    Eq. (5): dO_ij/dF_pq is the input entry under F_pq, so the chain rule (Eq. 6) slides dL/dO
    over X like a filter. The batch axis is summed, so X's batch and channel axes swap roles
    (dL/dO becomes a (Ho, Wo, N, C_out) kernel); with stride s, dL/dO is dilated first and
    only the input rows and columns the forward pass read are used.
    """
    kh, kw = kernel_size
    _, ho, wo, _ = d_out.shape
    read = x[:, : stride * (ho - 1) + kh, : stride * (wo - 1) + kw, :]
    grad = correlate_valid(read.transpose(3, 1, 2, 0), dilate(d_out, stride).transpose(1, 2, 0, 3))
    return grad.transpose(1, 2, 0, 3)


def grad_input(
    d_out: np.ndarray, kernel: np.ndarray, input_shape: tuple[int, ...], stride: int = 1
) -> np.ndarray:
    """dL/dX as the full convolution of dL/dO with the 180-degree rotated filter (Eqs. 11-21).

    Eq. (11): dO_ij/dX_ab is the filter entry on X_ab, so dL/dX is dL/dO (dilated for stride
    s > 1), zero-padded by the filter size minus one, convolved with the rotated filter whose
    in/out axes swap. Rows or columns the forward pass never read get zero gradient.
    ``input_shape`` is X's shape (N, H, W, C_in), the shape returned.
    """
    h, w = input_shape[1], input_shape[2]
    padded = pad_full(dilate(d_out, stride), *kernel.shape[:2])
    d_x = correlate_valid(padded, rot180(kernel).transpose(0, 1, 3, 2))
    return np.pad(d_x, ((0, 0), (0, h - d_x.shape[1]), (0, w - d_x.shape[2]), (0, 0)))


def grad_bias(d_out: np.ndarray) -> np.ndarray:
    """dL/db, the sum of dL/dO over a filter's positions (Eq. 6 with dO_ij/db = 1; the paper
    omits the bias)."""
    return d_out.sum(axis=(0, 1, 2))


def maxpool_forward(x: np.ndarray, pool_size: int = 2, stride: int | None = None) -> np.ndarray:
    """Max pooling over pool_size x pool_size windows (stride defaults to the pool size)."""
    return _windows(x, pool_size, pool_size, stride or pool_size).max(axis=(3, 4))


def maxpool_backward(
    x: np.ndarray, d_out: np.ndarray, pool_size: int = 2, stride: int | None = None
) -> np.ndarray:
    """dL/dX of max pooling: each window passes its gradient to its maximum, the rest get 0.

    The paper says only "the similar procedure" (section 2.3). Overlapping windows add up;
    ties go to the first maximum."""
    stride = stride or pool_size
    windows = _windows(x, pool_size, pool_size, stride)
    n, ho, wo, _, _, c = windows.shape
    row, col = np.divmod(windows.reshape(n, ho, wo, -1, c).argmax(axis=3), pool_size)
    batch, i, j, channel = np.indices(row.shape)
    d_x = np.zeros_like(x)
    np.add.at(d_x, (batch, i * stride + row, j * stride + col, channel), d_out)
    return d_x


def relu(x: np.ndarray) -> np.ndarray:
    """ReLU, max(x, 0), the activation of the paper's network (section 3)."""
    return np.maximum(x, 0)


def relu_backward(x: np.ndarray, d_out: np.ndarray) -> np.ndarray:
    """dL/dx of ReLU: the gradient passes where x > 0 and stops elsewhere (0 at x = 0, as TF)."""
    return d_out * (x > 0)


def sgd_update(param: np.ndarray, grad: np.ndarray, learning_rate: float) -> np.ndarray:
    """Eq. (22): F_new = F_old - alpha * dL/dF (also used for the bias); returns a new array."""
    return param - learning_rate * grad
