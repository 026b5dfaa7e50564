"""Backpropagation through a convolutional layer, written as the paper derives it (section 2).

Soydaner (2019) shows on a 3x3 input X and a 2x2 filter F (Fig. 4) that

* the forward pass O = X (*) F is a *valid* convolution (Eqs. 1-4, Figs. 2-3),
* dL/dF is again a valid convolution, of X with dL/dO (Eqs. 5-10),
* dL/dX is a *full* convolution of dL/dO with F rotated by 180 degrees (Eqs. 11-21),
* and the filter is updated by F_new = F_old - alpha dL/dF (Eq. 22).

Every gradient below is computed with that one convolution routine, :func:`correlate_valid`,
so the code reads as the claim itself rather than as a generic autodiff. As in CNN
libraries (and in the paper's Eqs. 1-4), "convolution" means cross-correlation: the filter
is slid over the input without being flipped.

Beyond the paper's single-channel, stride-1 example, the functions handle what a real layer
does: a batch, several input channels and several filters (Fig. 3), and strides. Layouts
follow Keras: inputs are NHWC, filters are (kh, kw, c_in, c_out). Padding is "valid".
"""

from __future__ import annotations

import numpy as np


def correlate_valid(x: np.ndarray, kernel: np.ndarray, stride: int = 1) -> np.ndarray:
    """Slide ``kernel`` over ``x`` without padding (Figs. 2-3; Eqs. 1-4 for one channel).

    Each output entry is the sum of the input window times the kernel, summed over the
    input channels too (Fig. 3); one output channel per filter.

    x: (N, H, W, C_in); kernel: (kh, kw, C_in, C_out); returns (N, Ho, Wo, C_out) with
    Ho = (H - kh) // stride + 1 and likewise Wo.
    """
    n, h, w, c_in = x.shape
    kh, kw, kernel_c_in, c_out = kernel.shape
    if kernel_c_in != c_in:
        raise ValueError(f"kernel has {kernel_c_in} input channels, input has {c_in}")
    if kh > h or kw > w:
        raise ValueError(f"kernel {kh}x{kw} is larger than the input {h}x{w}")
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, ho, wo, c_out), dtype=np.result_type(x, kernel))
    for i in range(ho):
        for j in range(wo):
            window = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(window, kernel, axes=([1, 2, 3], [0, 1, 2]))
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
    """Insert ``stride - 1`` zeros between the entries of dL/dO along H and W.

    With stride s, output O_ij read the input window starting at (s*i, s*j); spreading
    dL/dO out to that grid lets the stride-1 formulas of Eqs. (7)-(21) apply unchanged.
    """
    n, ho, wo, c = d_out.shape
    spread = np.zeros((n, stride * (ho - 1) + 1, stride * (wo - 1) + 1, c), dtype=d_out.dtype)
    spread[:, ::stride, ::stride, :] = d_out
    return spread


def pad_full(a: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Zero-pad H and W by kh-1 and kw-1 on both sides, turning a valid into a full convolution.

    The border zeros are why Eq. (13) has one term and Eq. (17) four: an input corner
    meets the filter in one position only.
    """
    return np.pad(a, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))


def grad_filter(
    x: np.ndarray, d_out: np.ndarray, kernel_size: tuple[int, int], stride: int = 1
) -> np.ndarray:
    """dL/dF as the valid convolution of X with dL/dO (Eqs. 5-10).

    Eq. (5): dO_ij/dF_pq is the input entry under F_pq when the filter sits at O_ij, so the
    chain rule of Eq. (6) slides dL/dO over X like a filter (Eqs. 7-10). With a batch, the
    batch axis is what gets summed, so X's batch and channel axes swap roles (and dL/dO
    becomes a (Ho, Wo, N, C_out) kernel); with stride s, dL/dO is dilated first and only the
    input rows and columns the forward pass read are used.

    Returns (kh, kw, C_in, C_out), the layout of the filter.
    """
    kh, kw = kernel_size
    _, ho, wo, _ = d_out.shape
    read = x[:, : stride * (ho - 1) + kh, : stride * (wo - 1) + kw, :]
    spread = dilate(d_out, stride)
    grad = correlate_valid(read.transpose(3, 1, 2, 0), spread.transpose(1, 2, 0, 3))
    return grad.transpose(1, 2, 0, 3)


def grad_input(
    d_out: np.ndarray, kernel: np.ndarray, input_shape: tuple[int, ...], stride: int = 1
) -> np.ndarray:
    """dL/dX as the full convolution of dL/dO with the 180-degree rotated filter (Eqs. 11-21).

    Eq. (11): dO_ij/dX_ab is the filter entry lying on X_ab, so dL/dX_ab collects dL/dO_ij
    times those entries (Eqs. 13-21); that is dL/dO, zero-padded by the filter size minus
    one, convolved with the rotated filter. Each filter maps an output channel back onto
    every input channel, so the filter's in/out axes swap.

    For stride s > 1, dL/dX is the full convolution of the *dilated* dL/dO (s - 1 zeros
    between entries, see :func:`dilate`) with the rotated filter. Input rows or columns the
    forward pass never read (when (H - kh) is not a multiple of s) get zero gradient.

    ``input_shape`` is X's shape (N, H, W, C_in); returns an array of that shape.
    """
    kh, kw = kernel.shape[:2]
    h, w = input_shape[1], input_shape[2]
    padded = pad_full(dilate(d_out, stride), kh, kw)
    d_x = correlate_valid(padded, rot180(kernel).transpose(0, 1, 3, 2))
    return np.pad(d_x, ((0, 0), (0, h - d_x.shape[1]), (0, w - d_x.shape[2]), (0, 0)))


def grad_bias(d_out: np.ndarray) -> np.ndarray:
    """dL/db: each bias is added to every output position of its filter, so sum dL/dO there.

    The paper omits the bias; this is the same chain rule as Eq. (6) with dO_ij/db = 1.
    """
    return d_out.sum(axis=(0, 1, 2))


def _pool_windows(shape: tuple[int, ...], pool_size: int, stride: int) -> tuple[int, int]:
    """Number of valid pooling windows along H and W (Keras' "valid" max pooling)."""
    h, w = shape[1], shape[2]
    if pool_size > h or pool_size > w:
        raise ValueError(f"pool {pool_size}x{pool_size} is larger than the input {h}x{w}")
    return (h - pool_size) // stride + 1, (w - pool_size) // stride + 1


def maxpool_forward(x: np.ndarray, pool_size: int = 2, stride: int | None = None) -> np.ndarray:
    """Max pooling over pool_size x pool_size windows (stride defaults to the pool size)."""
    stride = pool_size if stride is None else stride
    ho, wo = _pool_windows(x.shape, pool_size, stride)
    out = np.empty((x.shape[0], ho, wo, x.shape[3]), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            window = x[:, i * stride : i * stride + pool_size, j * stride : j * stride + pool_size]
            out[:, i, j, :] = window.max(axis=(1, 2))
    return out


def maxpool_backward(
    x: np.ndarray, d_out: np.ndarray, pool_size: int = 2, stride: int | None = None
) -> np.ndarray:
    """dL/dX of max pooling: each window passes its gradient to its maximum, the rest get 0.

    The paper only says pooling gradients follow "the similar procedure" (end of section
    2.3): the max is locally the identity on the winning entry. Overlapping windows
    (stride < pool size) add up; ties go to the first maximum in row-major order.
    """
    stride = pool_size if stride is None else stride
    ho, wo = _pool_windows(x.shape, pool_size, stride)
    n, c = x.shape[0], x.shape[3]
    batch, channel = np.indices((n, c))
    d_x = np.zeros_like(x)
    for i in range(ho):
        for j in range(wo):
            window = x[:, i * stride : i * stride + pool_size, j * stride : j * stride + pool_size]
            winner = window.reshape(n, pool_size * pool_size, c).argmax(axis=1)
            row, col = np.divmod(winner, pool_size)
            d_x[batch, i * stride + row, j * stride + col, channel] += d_out[:, i, j, :]
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
