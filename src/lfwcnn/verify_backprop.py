"""Claim C3: check :mod:`lfwcnn.backprop` against TensorFlow, numerical gradients and the paper.

Four checks, all deterministic for a given ``--seed`` (NumPy's RNG draws every case):

* ``autodiff``: random conv layers (batch 1-3, channels 1-4, filters 1-5, kernel 1-5,
  input 3-16, stride 1-3), max pooling and ReLU, against ``tf.GradientTape`` in float64;
* ``numerical``: central differences through conv -> ReLU -> max pool on small layers;
* ``fig4``: the worked example of Fig. 4, equation by equation: every term that Eqs.
  (1)-(5), (7)-(11) and (13)-(21) print is read off the code and compared with the paper;
* ``keras_sgd``: one step of Eq. (22) in NumPy equals one Keras SGD step.

Writes a JSON summary and an HTML fragment with the Fig. 4 tables; exits 1 if a check fails.

    python -m lfwcnn.verify_backprop --cases 200 --seed 0 \\
        --json results/backprop/check.json --html results/backprop/fig4.html
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jinja2  # noqa: E402
import numpy as np  # noqa: E402
from markupsafe import Markup  # noqa: E402

from lfwcnn import backprop  # noqa: E402
from lfwcnn.atomic import write_text  # noqa: E402
from lfwcnn.cli import run  # noqa: E402
from lfwcnn.errors import LfwcnnError  # noqa: E402

log = logging.getLogger(__name__)

AUTODIFF_TOLERANCE = 1e-10
NUMERICAL_TOLERANCE = 1e-6
NUMERICAL_STEP = 1e-6
NUMERICAL_CASES = 8
# Keras keeps the learning rate in a float32 variable: 0.1 would become 0.10000000149 there
# (a 1.5e-8 relative difference); 1/8 is exact in float32 and float64 alike.
KERAS_LEARNING_RATE = 0.125

# Eqs. (1)-(4), transcribed from the paper: O_ij -> its products (X index, F index).
PAPER_FORWARD = {
    "11": [("11", "11"), ("12", "12"), ("21", "21"), ("22", "22")],
    "12": [("12", "11"), ("13", "12"), ("22", "21"), ("23", "22")],
    "21": [("21", "11"), ("22", "12"), ("31", "21"), ("32", "22")],
    "22": [("22", "11"), ("23", "12"), ("32", "21"), ("33", "22")],
}
FORWARD_EQUATION = {"11": 1, "12": 2, "21": 3, "22": 4}
# Eq. (5): dO_11/dF_pq = X_ab, as F index -> X index; Eq. (11): dO_11/dX_ab = F_pq.
PAPER_EQ5 = {"11": "11", "12": "12", "21": "21", "22": "22"}
PAPER_EQ11 = {"11": "11", "12": "12", "21": "21", "22": "22"}
# Eqs. (7)-(10) sum dL/dO_ij * dO_ij/dF_pq over all four O_ij; the local gradients come
# from Eqs. (1)-(4), so the expected products are derived from PAPER_FORWARD.
GRAD_FILTER_EQUATION = {"11": 7, "12": 8, "21": 9, "22": 10}
# Eqs. (13)-(21), transcribed: X_ab -> (equation, its products (O index, F index)).
PAPER_GRAD_INPUT = {
    "11": (13, [("11", "11")]),
    "12": (14, [("11", "12"), ("12", "11")]),
    "13": (15, [("12", "12")]),
    "21": (16, [("11", "21"), ("21", "11")]),
    "22": (17, [("11", "22"), ("12", "21"), ("21", "12"), ("22", "11")]),
    "23": (18, [("12", "22"), ("22", "12")]),
    "31": (19, [("21", "21")]),
    "32": (20, [("21", "22"), ("22", "21")]),
    "33": (21, [("22", "22")]),
}
# Numbers for the Fig. 4 tables (the figure itself has none): small integers, easy by hand.
FIG4_X = np.arange(1.0, 10.0).reshape(3, 3)
FIG4_F = np.array([[2.0, -1.0], [1.0, 3.0]])
FIG4_DO = np.array([[1.0, -2.0], [3.0, 2.0]])

Terms = dict[str, list[tuple[str, str]]]


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest reference entry (0 if both are 0)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    diff = float(np.max(np.abs(got - want), initial=0.0))
    scale = float(np.max(np.abs(want), initial=0.0))
    return diff / scale if scale > 0 else diff


def _merge_max(into: dict[str, float], errors: dict[str, float]) -> None:
    """Keep the largest error per key; a NaN stays NaN (the built-in max would drop it)."""
    for key, value in errors.items():
        into[key] = float(np.maximum(into.get(key, 0.0), value))


def _all_within(errors: dict[str, float], tolerance: float) -> bool:
    return all(np.isfinite(e) and e <= tolerance for e in errors.values())


# --- TensorFlow references -------------------------------------------------------------


def tf_conv_reference(x, kernel, bias, d_out, stride):
    """O and (dL/dX, dL/dF, dL/db) from tf.GradientTape, for L = sum(O * dL/dO)."""
    import tensorflow as tf

    x_t, f_t, b_t = (tf.constant(a, dtype=tf.float64) for a in (x, kernel, bias))
    with tf.GradientTape() as tape:
        tape.watch([x_t, f_t, b_t])
        out = tf.nn.conv2d(x_t, f_t, strides=stride, padding="VALID") + b_t
        loss = tf.reduce_sum(out * d_out)
    grads = tape.gradient(loss, [x_t, f_t, b_t])
    return out.numpy(), *(g.numpy() for g in grads)


def tf_pool_reference(x, d_out, pool_size, stride):
    """Max-pool output and dL/dX from tf.GradientTape."""
    import tensorflow as tf

    x_t = tf.constant(x, dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        out = tf.nn.max_pool2d(x_t, pool_size, stride, padding="VALID")
        loss = tf.reduce_sum(out * d_out)
    return out.numpy(), tape.gradient(loss, x_t).numpy()


def tf_relu_reference(x, d_out):
    """dL/dx of ReLU from tf.GradientTape."""
    import tensorflow as tf

    x_t = tf.constant(x, dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        loss = tf.reduce_sum(tf.nn.relu(x_t) * d_out)
    return tape.gradient(loss, x_t).numpy()


# --- check 1: random layers against tf.GradientTape --------------------------------------


@dataclass(frozen=True)
class Case:
    """Shapes of one random conv layer, plus a max-pooling window for the pool check."""

    batch: int
    height: int
    width: int
    channels: int
    filters: int
    kernel_h: int
    kernel_w: int
    stride: int
    pool_size: int
    pool_stride: int


def draw_case(rng: np.random.Generator) -> Case:
    """Shapes as the issue asks: channels 1-4, filters 1-5, kernel 1-5, input 3-16, stride 1-3."""
    kernel_h, kernel_w = (int(k) for k in rng.integers(1, 6, size=2))
    height = int(rng.integers(max(3, kernel_h), 17))
    width = int(rng.integers(max(3, kernel_w), 17))
    return Case(
        batch=int(rng.integers(1, 4)),
        height=height,
        width=width,
        channels=int(rng.integers(1, 5)),
        filters=int(rng.integers(1, 6)),
        kernel_h=kernel_h,
        kernel_w=kernel_w,
        stride=int(rng.integers(1, 4)),
        pool_size=int(rng.integers(1, 4)),
        pool_stride=int(rng.integers(1, 4)),
    )


def check_conv_case(case: Case, rng: np.random.Generator) -> dict[str, float]:
    """Relative errors of the forward pass and the three conv gradients against TF."""
    x = rng.normal(size=(case.batch, case.height, case.width, case.channels))
    kernel = rng.normal(size=(case.kernel_h, case.kernel_w, case.channels, case.filters))
    bias = rng.normal(size=case.filters)
    out = backprop.conv2d_forward(x, kernel, bias, case.stride)
    d_out = rng.normal(size=out.shape)
    tf_out, tf_dx, tf_df, tf_db = tf_conv_reference(x, kernel, bias, d_out, case.stride)
    kernel_size = (case.kernel_h, case.kernel_w)
    return {
        "forward": relative_error(out, tf_out),
        "filter": relative_error(backprop.grad_filter(x, d_out, kernel_size, case.stride), tf_df),
        "input": relative_error(backprop.grad_input(d_out, kernel, x.shape, case.stride), tf_dx),
        "bias": relative_error(backprop.grad_bias(d_out), tf_db),
    }


def check_pool_case(case: Case, rng: np.random.Generator) -> dict[str, float]:
    """Relative errors of max pooling (forward and backward) against TF."""
    x = rng.normal(size=(case.batch, case.height, case.width, case.channels))
    size, stride = case.pool_size, case.pool_stride
    out = backprop.maxpool_forward(x, size, stride)
    d_out = rng.normal(size=out.shape)
    tf_out, tf_dx = tf_pool_reference(x, d_out, size, stride)
    return {
        "forward": relative_error(out, tf_out),
        "pool": relative_error(backprop.maxpool_backward(x, d_out, size, stride), tf_dx),
    }


def check_relu_case(case: Case, rng: np.random.Generator) -> dict[str, float]:
    """Relative error of ReLU's backward against TF, with exact zeros to pin the convention."""
    x = rng.normal(size=(case.batch, case.height, case.width, case.channels))
    x[rng.random(x.shape) < 0.2] = 0.0
    d_out = rng.normal(size=x.shape)
    return {"relu": relative_error(backprop.relu_backward(x, d_out), tf_relu_reference(x, d_out))}


def check_autodiff(cases: int, rng: np.random.Generator) -> dict:
    """Random layers against tf.GradientTape in float64 (claim C3's main evidence)."""
    worst: dict[str, float] = {}
    worst_case, worst_value = None, -1.0
    for _ in range(cases):
        case = draw_case(rng)
        errors = check_conv_case(case, rng)
        _merge_max(errors, check_pool_case(case, rng))
        _merge_max(errors, check_relu_case(case, rng))
        _merge_max(worst, errors)
        largest = float(np.max(list(errors.values())))  # NaN-propagating, unlike max()
        if not math.isnan(worst_value) and not largest <= worst_value:
            worst_case, worst_value = case, largest
    return {
        "cases": cases,
        "tolerance": AUTODIFF_TOLERANCE,
        "max_relative_error": worst,
        "worst_case": asdict(worst_case) if worst_case else None,
        "pass": _all_within(worst, AUTODIFF_TOLERANCE),
    }


# --- check 2: central differences -------------------------------------------------------


def numerical_gradient(loss: Callable[[np.ndarray], float], at: np.ndarray) -> np.ndarray:
    """Central difference (L(a + h) - L(a - h)) / 2h, one entry at a time."""
    grad = np.zeros_like(at)
    for index in np.ndindex(at.shape):
        step = np.zeros_like(at)
        step[index] = NUMERICAL_STEP
        grad[index] = (loss(at + step) - loss(at - step)) / (2 * NUMERICAL_STEP)
    return grad


def _layer_loss(x, kernel, bias, stride, pool_size) -> float:
    """L = 1/2 sum(maxpool(relu(conv(X, F) + b))^2): the layer stack of the paper's network."""
    pooled = backprop.maxpool_forward(
        backprop.relu(backprop.conv2d_forward(x, kernel, bias, stride)), pool_size
    )
    return 0.5 * float(np.sum(pooled**2))


def _layer_gradients(x, kernel, bias, stride, pool_size):
    """Backprop of :func:`_layer_loss` with the module's functions, layer by layer."""
    pre = backprop.conv2d_forward(x, kernel, bias, stride)
    act = backprop.relu(pre)
    pooled = backprop.maxpool_forward(act, pool_size)
    d_pre = backprop.relu_backward(pre, backprop.maxpool_backward(act, pooled, pool_size))
    return (
        backprop.grad_filter(x, d_pre, kernel.shape[:2], stride),
        backprop.grad_input(d_pre, kernel, x.shape, stride),
        backprop.grad_bias(d_pre),
    )


def numerical_case_errors(x, kernel, bias, stride: int, pool: int) -> dict[str, float]:
    """Relative errors of the backprop gradients of one layer against central differences."""
    d_f, d_x, d_b = _layer_gradients(x, kernel, bias, stride, pool)

    def loss_of_filter(f):
        return _layer_loss(x, f, bias, stride, pool)

    def loss_of_input(a):
        return _layer_loss(a, kernel, bias, stride, pool)

    def loss_of_bias(b):
        return _layer_loss(x, kernel, b, stride, pool)

    return {
        "filter": relative_error(d_f, numerical_gradient(loss_of_filter, kernel)),
        "input": relative_error(d_x, numerical_gradient(loss_of_input, x)),
        "bias": relative_error(d_b, numerical_gradient(loss_of_bias, bias)),
    }


def check_numerical(rng: np.random.Generator, cases: int = NUMERICAL_CASES) -> dict:
    """Small layers (input 3-6, kernel 1-3, stride 1-2) against central differences."""
    worst: dict[str, float] = {}
    for _ in range(cases):
        kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
        stride = int(rng.integers(1, 3))
        shape = (int(rng.integers(1, 3)), int(rng.integers(3, 7)), int(rng.integers(3, 7)))
        x = rng.normal(size=(*shape, int(rng.integers(1, 3))))
        kernel = rng.normal(size=(kh, kw, x.shape[3], int(rng.integers(1, 3))))
        bias = rng.normal(size=kernel.shape[3])
        out_hw = ((x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1)
        pool = 2 if min(out_hw) >= 2 else 1
        _merge_max(worst, numerical_case_errors(x, kernel, bias, stride, pool))
    return {
        "cases": cases,
        "step": NUMERICAL_STEP,
        "tolerance": NUMERICAL_TOLERANCE,
        "max_relative_error": worst,
        "pass": _all_within(worst, NUMERICAL_TOLERANCE),
    }


# --- check 3: Fig. 4, term by term ------------------------------------------------------


def _label(index: tuple[int, ...]) -> str:
    """1-based subscript as the paper writes it: (0, 1) -> "12"."""
    return "".join(str(i + 1) for i in index)


def _one_hot(shape: tuple[int, ...], index: tuple[int, ...]) -> np.ndarray:
    a = np.zeros(shape)
    a[index] = 1.0
    return a


def read_off_terms(
    bilinear: Callable[[np.ndarray, np.ndarray], np.ndarray],
    a_shape: tuple[int, int],
    b_shape: tuple[int, int],
) -> tuple[Terms, list[str]]:
    """Which products a_k * b_l make up each output entry of a bilinear map.

    Feeds one-hot a and b: the output entry is 1 exactly where the paper's equation must
    contain the term a_k b_l. Coefficients other than 0 or 1 are returned as problems.
    """
    terms: Terms = {}
    problems: list[str] = []
    for ia in np.ndindex(a_shape):
        for ib in np.ndindex(b_shape):
            out = bilinear(_one_hot(a_shape, ia), _one_hot(b_shape, ib))
            for io in np.ndindex(out.shape):
                terms.setdefault(_label(io), [])
                if out[io] == 1.0:
                    terms[_label(io)].append((_label(ia), _label(ib)))
                elif out[io] != 0.0:
                    problems.append(f"coefficient {out[io]} at {_label(io)}")
    return terms, problems


def _as_layer(x2d, f2d, d_out2d):
    """2-D Fig. 4 arrays as a one-image, one-channel, one-filter NHWC layer."""
    return x2d[None, :, :, None], f2d[:, :, None, None], d_out2d[None, :, :, None]


def fig4_forward(x2d: np.ndarray, f2d: np.ndarray) -> np.ndarray:
    x, f, _ = _as_layer(x2d, f2d, np.zeros((2, 2)))
    return backprop.conv2d_forward(x, f)[0, :, :, 0]


def fig4_grad_filter(d_out2d: np.ndarray, x2d: np.ndarray) -> np.ndarray:
    x, _, d_out = _as_layer(x2d, np.zeros((2, 2)), d_out2d)
    return backprop.grad_filter(x, d_out, (2, 2))[:, :, 0, 0]


def fig4_grad_input(d_out2d: np.ndarray, f2d: np.ndarray) -> np.ndarray:
    _, f, d_out = _as_layer(np.zeros((3, 3)), f2d, d_out2d)
    return backprop.grad_input(d_out, f, (1, 3, 3, 1))[0, :, :, 0]


def code_terms() -> tuple[dict[str, Terms], list[str]]:
    """The products in O, dL/dF and dL/dX of Fig. 4 as the code computes them."""
    forward, p1 = read_off_terms(fig4_forward, (3, 3), (2, 2))
    d_filter, p2 = read_off_terms(fig4_grad_filter, (2, 2), (3, 3))
    d_input, p3 = read_off_terms(fig4_grad_input, (2, 2), (2, 2))
    return {"O": forward, "dF": d_filter, "dX": d_input}, p1 + p2 + p3


def paper_terms() -> dict[str, Terms]:
    """The same products as the paper prints them (Eqs. 7-10 via the local gradients of 1-4)."""
    d_filter: Terms = {pq: [] for pq in GRAD_FILTER_EQUATION}
    for o_index, products in PAPER_FORWARD.items():
        for x_index, f_index in products:
            d_filter[f_index].append((o_index, x_index))
    d_input = {x_index: products for x_index, (_, products) in PAPER_GRAD_INPUT.items()}
    return {"O": dict(PAPER_FORWARD), "dF": d_filter, "dX": d_input}


def _same(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> bool:
    return sorted(a) == sorted(b)


def compare_equations(code: dict[str, Terms], paper: dict[str, Terms]) -> dict[str, bool]:
    """Equation number -> whether the code produces exactly the paper's terms."""
    result = {str(eq): _same(code["O"][o], paper["O"][o]) for o, eq in FORWARD_EQUATION.items()}
    local_f = {f: [x for oi, x in code["dF"][f] if oi == "11"] for f in code["dF"]}
    result["5"] = all(local_f[f] == [x] for f, x in PAPER_EQ5.items())
    for f_index, eq in GRAD_FILTER_EQUATION.items():
        complete = len(paper["dF"][f_index]) == 4  # the paper prints one term per O_ij
        result[str(eq)] = complete and _same(code["dF"][f_index], paper["dF"][f_index])
    local_x = {x: [f for oi, f in code["dX"][x] if oi == "11"] for x in code["dX"]}
    result["11"] = all(local_x[x] == [f] for x, f in PAPER_EQ11.items()) and all(
        not local_x[x] for x in local_x if x not in PAPER_EQ11
    )
    for x_index, (eq, products) in PAPER_GRAD_INPUT.items():
        result[str(eq)] = _same(code["dX"][x_index], products)
    return dict(sorted(result.items(), key=lambda kv: int(kv[0])))


def evaluate_terms(terms: Terms, a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Evaluate sums of products a_k * b_l, the paper's equations with numbers put in."""
    return {out: sum(a[k] * b[m] for k, m in products) for out, products in terms.items()}


def _entries(a2d: np.ndarray) -> dict[str, float]:
    return {_label(i): float(a2d[i]) for i in np.ndindex(a2d.shape)}


def _grid(values: dict[str, float], shape: tuple[int, int]) -> np.ndarray:
    return np.array([[values[_label((i, j))] for j in range(shape[1])] for i in range(shape[0])])


def fig4_numbers() -> dict[str, np.ndarray]:
    """X, F, dL/dO of the example and what the code, the paper's equations and TF make of them."""
    x, f, d_out = _as_layer(FIG4_X, FIG4_F, FIG4_DO)
    paper = paper_terms()
    tf_o, tf_dx, tf_df, _ = tf_conv_reference(x, f, np.zeros(1), d_out, 1)
    d_f = fig4_grad_filter(FIG4_DO, FIG4_X)
    return {
        "X": FIG4_X,
        "F": FIG4_F,
        "dO": FIG4_DO,
        "O": fig4_forward(FIG4_X, FIG4_F),
        "dF": d_f,
        "dX": fig4_grad_input(FIG4_DO, FIG4_F),
        "F_new": backprop.sgd_update(FIG4_F, d_f, KERAS_LEARNING_RATE),
        "paper_O": _grid(evaluate_terms(paper["O"], _entries(FIG4_X), _entries(FIG4_F)), (2, 2)),
        "paper_dF": _grid(evaluate_terms(paper["dF"], _entries(FIG4_DO), _entries(FIG4_X)), (2, 2)),
        "paper_dX": _grid(evaluate_terms(paper["dX"], _entries(FIG4_DO), _entries(FIG4_F)), (3, 3)),
        "tf_O": tf_o[0, :, :, 0],
        "tf_dF": tf_df[:, :, 0, 0],
        "tf_dX": tf_dx[0, :, :, 0],
    }


def check_fig4() -> tuple[dict, dict[str, Terms], dict[str, np.ndarray]]:
    """Eqs. (1)-(5), (7)-(11), (13)-(21) term by term, and the example's numbers three ways."""
    code, problems = code_terms()
    equations = compare_equations(code, paper_terms())
    numbers = fig4_numbers()
    errors = {
        f"{name}_vs_{source}": relative_error(numbers[name], numbers[f"{source}_{name}"])
        for name in ("O", "dF", "dX")
        for source in ("paper", "tf")
    }
    terms_match = all(equations.values()) and not problems
    result = {
        "equations": equations,
        "mismatched_equations": [eq for eq, ok in equations.items() if not ok],
        "coefficient_problems": problems,
        "numbers_max_relative_error": errors,
        "tolerance": AUTODIFF_TOLERANCE,
        "pass": terms_match and _all_within(errors, AUTODIFF_TOLERANCE),
    }
    return result, code, numbers


# --- check 4: one Keras SGD step -------------------------------------------------------


def keras_step(x, kernel, bias, target, stride, learning_rate):
    """New (kernel, bias) after one Keras SGD step of a Conv2D+ReLU layer with MSE loss."""
    import keras

    layer = keras.layers.Conv2D(
        kernel.shape[3], kernel.shape[:2], strides=stride, activation="relu", dtype="float64"
    )
    model = keras.Sequential([keras.Input(x.shape[1:], dtype="float64"), layer])
    layer.set_weights([kernel, bias])
    # Keras losses compute in floatx (float32) unless told otherwise.
    loss = keras.losses.MeanSquaredError(dtype="float64")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss=loss)
    model.train_on_batch(x, target)
    return layer.get_weights()


def numpy_step(x, kernel, bias, target, stride, learning_rate):
    """The same step by hand: MSE -> ReLU backward -> dL/dF, dL/db -> Eq. (22)."""
    pre = backprop.conv2d_forward(x, kernel, bias, stride)
    d_act = 2.0 * (backprop.relu(pre) - target) / target.size
    d_pre = backprop.relu_backward(pre, d_act)
    d_f = backprop.grad_filter(x, d_pre, kernel.shape[:2], stride)
    return (
        backprop.sgd_update(kernel, d_f, learning_rate),
        backprop.sgd_update(bias, backprop.grad_bias(d_pre), learning_rate),
    )


def check_keras_sgd(rng: np.random.Generator) -> dict:
    """Eq. (22) in NumPy against keras.optimizers.SGD on one batch."""
    x = rng.normal(size=(3, 10, 9, 3))
    kernel = rng.normal(size=(3, 2, 3, 4)) * 0.5
    bias = rng.normal(size=4) * 0.1
    stride = 2
    target = rng.normal(size=(3, 4, 4, 4))
    mine = numpy_step(x, kernel, bias, target, stride, KERAS_LEARNING_RATE)
    theirs = keras_step(x, kernel, bias, target, stride, KERAS_LEARNING_RATE)
    errors = {
        "filter": relative_error(mine[0], theirs[0]),
        "bias": relative_error(mine[1], theirs[1]),
        "filter_change": relative_error(mine[0] - kernel, theirs[0] - kernel),
    }
    return {
        "learning_rate": KERAS_LEARNING_RATE,
        "max_relative_error": errors,
        "tolerance": AUTODIFF_TOLERANCE,
        "pass": _all_within(errors, AUTODIFF_TOLERANCE),
    }


# --- report -------------------------------------------------------------------------------

PARTIAL = "\u2202L/\u2202"

FRAGMENT = jinja2.Template(
    """\
<section class="claim-c3" id="c3-backprop">
<h3>C3: backpropagation through convolution &mdash; {{ "PASS" if report.pass else "FAIL" }}</h3>
<p>{{ autodiff.cases }} random conv layers (batch 1-3, channels 1-4, filters 1-5, kernel 1-5,
input 3-16, stride 1-3), with max pooling and ReLU, against <code>tf.GradientTape</code> in
float64; largest relative error per gradient:
{% for name, err in autodiff.max_relative_error.items() -%}
{{ name }} {{ "%.1e"|format(err) }}{{ ", " if not loop.last else "" }}
{%- endfor %} (tolerance {{ "%.0e"|format(autodiff.tolerance) }}).
Central differences on {{ numerical.cases }} small layers: largest relative error
{{ "%.1e"|format(numerical.max_relative_error.values()|max) }}.
Fig. 4 term by term: {{ fig4.equations.values()|select|list|length }} of
{{ fig4.equations|length }} equations among (1)-(5), (7)-(11), (13)-(21) match the code.
One Keras SGD step against Eq. (22): largest relative error
{{ "%.1e"|format(keras.max_relative_error.values()|max) }}.</p>
<p>Fig. 4 worked example (3&times;3 input X, 2&times;2 filter F, stride 1). Each cell shows the
terms the code computes, read off by feeding it one-hot inputs, the paper's equation number and
the value for the numbers below.</p>
{% for table in tables -%}
<table class="backprop-fig4">
  <caption>{{ table.caption }}</caption>
{%- for row in table.rows %}
  <tr>{% for cell in row %}<td>{{ cell.expr }}{% if cell.eq %} <small>({{ cell.eq }})</small>
{%- endif %}<br>= {{ cell.value }}</td>{% endfor %}</tr>
{%- endfor %}
</table>
{% endfor -%}
</section>
""",
    autoescape=True,
)


def _sym(name: str, sub: str) -> Markup:
    return Markup("{}<sub>{}</sub>").format(name, sub)


def _sum(terms: list[list[tuple[str, str]]]) -> Markup:
    """A sum of products, each product a list of (symbol, subscript) factors."""
    products = [Markup("&middot;").join(_sym(name, sub) for name, sub in term) for term in terms]
    return Markup(" + ").join(products) if products else Markup("0")


def _table(caption, values, expr, equation=lambda key: None) -> dict:
    """One small table: per entry its symbolic expression, equation number and value."""
    rows = [
        [
            {"expr": expr(_label((i, j))), "eq": equation(_label((i, j))), "value": f"{v:.6g}"}
            for j, v in enumerate(row)
        ]
        for i, row in enumerate(values)
    ]
    return {"caption": caption, "rows": rows}


def fig4_tables(code: dict[str, Terms], numbers: dict[str, np.ndarray]) -> list[dict]:
    """X, F, O, dL/dO, dL/dF, rot180(F), dL/dX and F after Eq. (22), symbols from the code."""
    d_o = PARTIAL + "O"

    def rotated(key: str) -> Markup:
        return _sym("F", "".join(str(3 - int(c)) for c in key))

    return [
        _table("X (input)", numbers["X"], lambda k: _sym("X", k)),
        _table("F (filter)", numbers["F"], lambda k: _sym("F", k)),
        _table(
            "O: valid convolution of X with F, Eqs. (1)-(4)",
            numbers["O"],
            lambda k: _sum([[("X", x), ("F", f)] for x, f in sorted(code["O"][k], key=_f_first)]),
            FORWARD_EQUATION.get,
        ),
        _table(PARTIAL + "O (given)", numbers["dO"], lambda k: _sym(d_o, k)),
        _table(
            PARTIAL + "F: valid convolution of X with " + d_o + ", Eqs. (7)-(10)",
            numbers["dF"],
            lambda k: _sum([[(d_o, o), ("X", x)] for o, x in sorted(code["dF"][k])]),
            GRAD_FILTER_EQUATION.get,
        ),
        _table("F rotated by 180\u00b0", np.rot90(numbers["F"], 2), rotated),
        _table(
            PARTIAL + "X: full convolution of " + d_o + " with F rotated by 180\u00b0, "
            "Eqs. (13)-(21)",
            numbers["dX"],
            lambda k: _sum([[(d_o, o), ("F", f)] for o, f in sorted(code["dX"][k])]),
            lambda k: PAPER_GRAD_INPUT[k][0],
        ),
        _table(
            f"F after Eq. (22) with \u03b1 = {KERAS_LEARNING_RATE}",
            numbers["F_new"],
            lambda k: _sym("F", k) + Markup(" &minus; &alpha;&middot;") + _sym(PARTIAL + "F", k),
            lambda k: 22,
        ),
    ]


def _f_first(product: tuple[str, str]) -> str:
    """Order the products of Eqs. (1)-(4) as the paper does: by the filter entry."""
    return product[1]


def render_fragment(report: dict, tables: list[dict]) -> str:
    checks = report["checks"]
    return FRAGMENT.render(
        report=report,
        autodiff=checks["autodiff"],
        numerical=checks["numerical"],
        fig4=checks["fig4"],
        keras=checks["keras_sgd"],
        tables=tables,
    )


def run_checks(cases: int, seed: int) -> tuple[dict, list[dict]]:
    """All four checks; returns the JSON report and the Fig. 4 tables."""
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(seed)
    fig4, code, numbers = check_fig4()
    checks = {
        "autodiff": check_autodiff(cases, rng),
        "numerical": check_numerical(rng),
        "fig4": fig4,
        "keras_sgd": check_keras_sgd(rng),
    }
    report = {
        "claim": "C3",
        "seed": seed,
        "cases": {
            "autodiff": checks["autodiff"]["cases"],
            "numerical": checks["numerical"]["cases"],
            "fig4_equations": len(fig4["equations"]),
            "keras_sgd": 1,
        },
        "tolerance": AUTODIFF_TOLERANCE,
        "max_relative_error": checks["autodiff"]["max_relative_error"],
        "pass": all(check["pass"] for check in checks.values()),
        "checks": checks,
        "versions": {
            "numpy": np.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }
    return report, fig4_tables(code, numbers)


def _jsonable(value):
    """Non-finite errors (a NaN gradient, a shape mismatch) become null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def _failure_summary(report: dict) -> str:
    """One line naming each failed check and its worst error."""
    parts = []
    for name, check in report["checks"].items():
        if check["pass"]:
            continue
        errors = check.get("max_relative_error") or check.get("numbers_max_relative_error") or {}
        worst = max(errors.items(), key=lambda kv: kv[1], default=None)
        detail = f"{worst[0]} {worst[1]:.2e}" if worst else ""
        if check.get("mismatched_equations"):
            detail = "equations " + ", ".join(check["mismatched_equations"])
        parts.append(f"{name} ({detail})" if detail else name)
    return "; ".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lfwcnn.verify_backprop",
        description="Check the NumPy backprop of section 2 against TensorFlow (claim C3).",
    )
    parser.add_argument("--cases", type=int, default=200, help="random layers vs tf.GradientTape")
    parser.add_argument("--seed", type=int, default=0, help="seed of NumPy's random generator")
    parser.add_argument("--json", required=True, help="where to write the JSON summary")
    parser.add_argument("--html", required=True, help="where to write the Fig. 4 HTML fragment")
    args = parser.parse_args(argv)
    if args.cases < 1:
        raise LfwcnnError(f"--cases must be at least 1, got {args.cases}")
    if args.seed < 0:
        raise LfwcnnError(f"--seed must be non-negative, got {args.seed}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    report, tables = run_checks(args.cases, args.seed)
    write_text(args.json, json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    write_text(args.html, render_fragment(report, tables))
    log.info("max relative error vs tf.GradientTape: %s", report["max_relative_error"])
    if not report["pass"]:
        raise LfwcnnError(f"backprop check failed: {_failure_summary(report)}; see {args.json}")
    log.info("all checks passed; wrote %s and %s", args.json, args.html)


if __name__ == "__main__":
    raise SystemExit(run(main))
