"""Claim C3: check :mod:`lfwcnn.backprop` against TensorFlow, numerical gradients and the paper.

Four checks, all deterministic for a given ``backprop.seed`` (NumPy's RNG draws every case):

* ``autodiff``: random conv layers (batch 1-3, channels 1-4, filters 1-5, kernel 1-5,
  input 3-16, stride 1-3), max pooling and ReLU, against ``tf.GradientTape`` in float64;
* ``numerical``: central differences through conv -> ReLU -> max pool on small layers;
* ``fig4``: the worked example of Fig. 4 (:mod:`lfwcnn.fig4`), equation by equation: every
  term that Eqs. (1)-(5), (7)-(11) and (13)-(21) print is read off the code and compared with
  the paper, and its numbers with the paper's equations and TensorFlow;
* ``keras_sgd``: one step of Eq. (22) in NumPy equals one Keras SGD step.

Writes a JSON summary and an HTML fragment with the Fig. 4 tables; fails if a check fails.

    python -m lfwcnn verify_backprop check_json=check.json fig4_html=fig4.html
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lfwcnn import backprop, fig4
from lfwcnn.atomic import write_text
from lfwcnn.errors import LfwcnnError
from lfwcnn.ownership import check_outputs
from lfwcnn.settings import Settings

# Before the lazy TensorFlow imports in the functions below.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger(__name__)

AUTODIFF_TOLERANCE = 1e-10
NUMERICAL_TOLERANCE = 1e-6
NUMERICAL_STEP = 1e-6
NUMERICAL_CASES = 8
# Keras keeps the learning rate in a float32 variable: 0.1 would become 0.10000000149 there
# (a 1.5e-8 relative difference); 1/8 is exact in float32 and float64 alike.
KERAS_LEARNING_RATE = fig4.ALPHA


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

    def loss(a, f, b):
        return _layer_loss(a, f, b, stride, pool)

    return {
        "filter": relative_error(d_f, numerical_gradient(lambda f: loss(x, f, bias), kernel)),
        "input": relative_error(d_x, numerical_gradient(lambda a: loss(a, kernel, bias), x)),
        "bias": relative_error(d_b, numerical_gradient(lambda b: loss(x, kernel, b), bias)),
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


def check_fig4() -> tuple[dict, list[dict]]:
    """Eqs. (1)-(5), (7)-(11), (13)-(21) term by term, and the example's numbers three ways.

    Returns the check's JSON and the Fig. 4 tables.
    """
    code, problems = fig4.code_terms()
    equations = fig4.compare_equations(code, fig4.paper_terms())
    numbers = fig4.worked_numbers()
    tf_o, tf_dx, tf_df, _ = tf_conv_reference(
        fig4.as_image(fig4.X), fig4.as_kernel(fig4.F), np.zeros(1), fig4.as_image(fig4.D_OUT), 1
    )
    references = {
        "paper": fig4.paper_numbers(),
        "tf": {"O": tf_o[0, :, :, 0], "dF": tf_df[:, :, 0, 0], "dX": tf_dx[0, :, :, 0]},
    }
    errors = {
        f"{name}_vs_{source}": relative_error(numbers[name], reference[name])
        for name in ("O", "dF", "dX")
        for source, reference in references.items()
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
    return result, fig4.worked_tables(code, numbers)


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


def run_checks(cases: int, seed: int) -> tuple[dict, list[dict]]:
    """All four checks; returns the JSON report and the Fig. 4 tables."""
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(seed)
    fig4_check, tables = check_fig4()
    checks = {
        "autodiff": check_autodiff(cases, rng),
        "numerical": check_numerical(rng),
        "fig4": fig4_check,
        "keras_sgd": check_keras_sgd(rng),
    }
    report = {
        "claim": "C3",
        "seed": seed,
        "cases": {
            "autodiff": checks["autodiff"]["cases"],
            "numerical": checks["numerical"]["cases"],
            "fig4_equations": len(fig4_check["equations"]),
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
    return report, tables


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
        # a NaN error is the worst of all (max() would skip past it)
        worst = max(errors.items(), key=lambda kv: math.inf if math.isnan(kv[1]) else kv[1],
                    default=None)
        detail = f"{worst[0]} {worst[1]:.2e}" if worst else ""
        if check.get("mismatched_equations"):
            detail = "equations " + ", ".join(check["mismatched_equations"])
        parts.append(f"{name} ({detail})" if detail else name)
    return "; ".join(parts)


def verify_backprop(*, check_json: Path, fig4_html: Path, backprop: Settings) -> None:
    """Step: run the checks of section 2 (``backprop.cases`` random layers, seeded) and write
    their summary and the Fig. 4 worked example (``backprop`` is the config section here)."""
    check_outputs({"check_json": check_json, "fig4_html": fig4_html})
    report, tables = run_checks(backprop.cases, backprop.seed)
    write_text(check_json, json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    write_text(fig4_html, fig4.render_fragment(report, tables))
    log.info("max relative error vs tf.GradientTape: %s", report["max_relative_error"])
    if not report["pass"]:
        raise LfwcnnError(f"backprop check failed: {_failure_summary(report)}; see {check_json}")
    log.info("all checks passed; wrote %s and %s", check_json, fig4_html)
