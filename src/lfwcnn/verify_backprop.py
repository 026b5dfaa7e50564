"""Claim C3: check :mod:`lfwcnn.backprop` against TensorFlow, numerical gradients and the paper.

Four checks, deterministic for a given ``backprop.seed``: ``autodiff``, random conv layers, max
pooling and ReLU against ``tf.GradientTape`` in float64; ``numerical``, central differences
through conv -> ReLU -> max pool; ``fig4``, Fig. 4 equation by equation (:mod:`lfwcnn.fig4`);
``keras_sgd``, one step of Eq. (22) in NumPy against one Keras SGD step. Writes a JSON summary
and an HTML fragment with the Fig. 4 tables; fails if a check fails.

    python -m lfwcnn verify_backprop check_json=check.json fig4_html=fig4.html
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
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


def tape(layer: Callable, d_out: np.ndarray, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
    """``layer(tf.nn, *inputs)`` and its gradients for L = sum(O * dL/dO), from
    tf.GradientTape in float64: (O, dL/d input for each input)."""
    import tensorflow as tf

    tensors = [tf.constant(a, dtype=tf.float64) for a in inputs]
    with tf.GradientTape() as recorder:
        recorder.watch(tensors)
        out = layer(tf.nn, *tensors)
        loss = tf.reduce_sum(out * d_out)
    return out.numpy(), *(g.numpy() for g in recorder.gradient(loss, tensors))


def draw_case(rng: np.random.Generator) -> dict[str, int]:
    """Shapes as the issue asks (channels 1-4, filters 1-5, kernel 1-5, input 3-16, stride
    1-3), plus a max-pooling window (1-3, stride 1-3) for the pool check."""
    kernel_h, kernel_w = (int(k) for k in rng.integers(1, 6, size=2))
    height, width = (int(rng.integers(max(3, k), 17)) for k in (kernel_h, kernel_w))
    batch, channels, filters, stride, pool_size, pool_stride = (
        int(rng.integers(1, high)) for high in (4, 5, 6, 4, 4, 4)
    )
    return {"batch": batch, "height": height, "width": width, "channels": channels,
            "filters": filters, "kernel_h": kernel_h, "kernel_w": kernel_w, "stride": stride,
            "pool_size": pool_size, "pool_stride": pool_stride}


def case_errors(case: dict[str, int], rng: np.random.Generator) -> dict[str, float]:
    """Relative errors of the conv layer (forward and its three gradients), max pooling
    (forward and backward) and ReLU's backward (with exact zeros) against TF."""
    shape = (case["batch"], case["height"], case["width"], case["channels"])
    x = rng.normal(size=shape)
    kernel = rng.normal(size=(case["kernel_h"], case["kernel_w"], shape[3], case["filters"]))
    bias = rng.normal(size=case["filters"])
    stride = case["stride"]
    out = backprop.conv2d_forward(x, kernel, bias, stride)
    d_out = rng.normal(size=out.shape)
    tf_out, tf_dx, tf_df, tf_db = tape(lambda nn, a, f, b: nn.conv2d(a, f, stride, "VALID") + b,
                                       d_out, x, kernel, bias)
    errors = {
        "forward": relative_error(out, tf_out),
        "filter": relative_error(backprop.grad_filter(x, d_out, kernel.shape[:2], stride), tf_df),
        "input": relative_error(backprop.grad_input(d_out, kernel, x.shape, stride), tf_dx),
        "bias": relative_error(backprop.grad_bias(d_out), tf_db),
    }
    x = rng.normal(size=shape)
    size, stride = case["pool_size"], case["pool_stride"]
    out = backprop.maxpool_forward(x, size, stride)
    d_out = rng.normal(size=out.shape)
    tf_out, tf_dx = tape(lambda nn, a: nn.max_pool2d(a, size, stride, padding="VALID"), d_out, x)
    _merge_max(errors, {"forward": relative_error(out, tf_out)})
    errors["pool"] = relative_error(backprop.maxpool_backward(x, d_out, size, stride), tf_dx)
    x = rng.normal(size=shape)
    x[rng.random(x.shape) < 0.2] = 0.0
    d_out = rng.normal(size=x.shape)
    tf_dx = tape(lambda nn, a: nn.relu(a), d_out, x)[1]
    errors["relu"] = relative_error(backprop.relu_backward(x, d_out), tf_dx)
    return errors


def check_autodiff(cases: int, rng: np.random.Generator) -> dict:
    """Random layers against tf.GradientTape in float64 (claim C3's main evidence)."""
    worst: dict[str, float] = {}
    worst_case, worst_value = None, -1.0
    for _ in range(cases):
        case = draw_case(rng)
        errors = case_errors(case, rng)
        _merge_max(worst, errors)
        largest = float(np.max(list(errors.values())))  # NaN-propagating, unlike max()
        if not math.isnan(worst_value) and not largest <= worst_value:
            worst_case, worst_value = case, largest
    return {
        "cases": cases,
        "tolerance": AUTODIFF_TOLERANCE,
        "max_relative_error": worst,
        "worst_case": worst_case,
        "pass": _all_within(worst, AUTODIFF_TOLERANCE),
    }


def numerical_gradient(loss: Callable[[np.ndarray], float], at: np.ndarray) -> np.ndarray:
    """Central difference (L(a + h) - L(a - h)) / 2h, one entry at a time."""
    grad = np.zeros_like(at)
    for index in np.ndindex(at.shape):
        step = np.zeros_like(at)
        step[index] = NUMERICAL_STEP
        grad[index] = (loss(at + step) - loss(at - step)) / (2 * NUMERICAL_STEP)
    return grad


def numerical_case_errors(x, kernel, bias, stride: int, pool: int) -> dict[str, float]:
    """Relative errors of the backprop gradients of L = 1/2 sum(maxpool(relu(conv(X, F) +
    b))^2), the layer stack of the paper's network, against central differences."""

    def loss(a, f, b) -> float:
        act = backprop.relu(backprop.conv2d_forward(a, f, b, stride))
        return 0.5 * float(np.sum(backprop.maxpool_forward(act, pool) ** 2))

    pre = backprop.conv2d_forward(x, kernel, bias, stride)
    act = backprop.relu(pre)
    pooled = backprop.maxpool_forward(act, pool)
    d_pre = backprop.relu_backward(pre, backprop.maxpool_backward(act, pooled, pool))
    return {
        "filter": relative_error(backprop.grad_filter(x, d_pre, kernel.shape[:2], stride),
                                 numerical_gradient(lambda f: loss(x, f, bias), kernel)),
        "input": relative_error(backprop.grad_input(d_pre, kernel, x.shape, stride),
                                numerical_gradient(lambda a: loss(a, kernel, bias), x)),
        "bias": relative_error(backprop.grad_bias(d_pre),
                               numerical_gradient(lambda b: loss(x, kernel, b), bias)),
    }


def check_numerical(rng: np.random.Generator, cases: int = 8) -> dict:
    """Small layers (input 3-6, kernel 1-3, stride 1-2) against central differences."""
    worst: dict[str, float] = {}
    for _ in range(cases):
        kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
        stride = int(rng.integers(1, 3))
        shape = (int(rng.integers(1, 3)), int(rng.integers(3, 7)), int(rng.integers(3, 7)))
        x = rng.normal(size=(*shape, int(rng.integers(1, 3))))
        kernel = rng.normal(size=(kh, kw, x.shape[3], int(rng.integers(1, 3))))
        bias = rng.normal(size=kernel.shape[3])
        # pool 2x2 where the conv output is at least 2x2
        pool = 2 if min((x.shape[1] - kh) // stride, (x.shape[2] - kw) // stride) >= 1 else 1
        _merge_max(worst, numerical_case_errors(x, kernel, bias, stride, pool))
    return {
        "cases": cases,
        "step": NUMERICAL_STEP,
        "tolerance": NUMERICAL_TOLERANCE,
        "max_relative_error": worst,
        "pass": _all_within(worst, NUMERICAL_TOLERANCE),
    }


def check_fig4() -> tuple[dict, list[dict]]:
    """Eqs. (1)-(5), (7)-(11), (13)-(21) term by term, and the example's numbers against the
    paper's equations and TF. Returns the check's JSON and the Fig. 4 tables."""
    code, problems = fig4.code_terms()
    equations = fig4.compare_equations(code, fig4.paper_terms())
    numbers = fig4.worked_numbers()
    x4, f4, d4 = fig4.as_4d(**fig4.EXAMPLE)
    tf_o, tf_dx, tf_df = tape(lambda nn, a, f: nn.conv2d(a, f, 1, "VALID"), d4, x4, f4)
    references = {
        "paper": fig4.paper_numbers(),
        "tf": {"O": tf_o[0, :, :, 0], "dF": tf_df[:, :, 0, 0], "dX": tf_dx[0, :, :, 0]},
    }
    errors = {
        f"{name}_vs_{source}": relative_error(numbers[name], reference[name])
        for name in ("O", "dF", "dX")
        for source, reference in references.items()
    }
    result = {
        "equations": equations,
        "mismatched_equations": [eq for eq, ok in equations.items() if not ok],
        "coefficient_problems": problems,
        "numbers_max_relative_error": errors,
        "tolerance": AUTODIFF_TOLERANCE,
        "pass": (all(equations.values()) and not problems
                 and _all_within(errors, AUTODIFF_TOLERANCE)),
    }
    return result, fig4.worked_tables(code, numbers)


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
    d_pre = backprop.relu_backward(pre, 2.0 * (backprop.relu(pre) - target) / target.size)
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
    target = rng.normal(size=(3, 4, 4, 4))
    mine_f, mine_b = numpy_step(x, kernel, bias, target, 2, fig4.ALPHA)
    keras_f, keras_b = keras_step(x, kernel, bias, target, 2, fig4.ALPHA)
    errors = {
        "filter": relative_error(mine_f, keras_f),
        "bias": relative_error(mine_b, keras_b),
        "filter_change": relative_error(mine_f - kernel, keras_f - kernel),
    }
    return {
        "learning_rate": fig4.ALPHA,
        "max_relative_error": errors,
        "tolerance": AUTODIFF_TOLERANCE,
        "pass": _all_within(errors, AUTODIFF_TOLERANCE),
    }


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
            "autodiff": cases,
            "numerical": checks["numerical"]["cases"],
            "fig4_equations": len(fig4_check["equations"]),
            "keras_sgd": 1,
        },
        "tolerance": AUTODIFF_TOLERANCE,
        "max_relative_error": checks["autodiff"]["max_relative_error"],
        "pass": all(check["pass"] for check in checks.values()),
        "checks": checks,
        "versions": {"numpy": np.__version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__},
    }
    return report, tables


def _failure_summary(report: dict) -> str:
    """One line naming each failed check and its worst error (a NaN being the worst)."""
    parts = []
    for name, check in report["checks"].items():
        if check["pass"]:
            continue
        errors = check.get("max_relative_error") or check.get("numbers_max_relative_error")
        if check.get("mismatched_equations"):
            name += f" (equations {', '.join(check['mismatched_equations'])})"
        elif errors:
            worst = max(errors, key=lambda k: math.inf if math.isnan(errors[k]) else errors[k])
            name += f" ({worst} {errors[worst]:.2e})"
        parts.append(name)
    return "; ".join(parts)


def verify_backprop(*, check_json: Path, fig4_html: Path, backprop: Settings) -> None:
    """Step: run the checks of section 2 (``backprop.cases`` random layers, seeded) and write
    their summary and the Fig. 4 worked example (``backprop`` is the config section here)."""
    check_outputs({"check_json": check_json, "fig4_html": fig4_html})
    report, tables = run_checks(backprop.cases, backprop.seed)
    # JSON has no NaN: a non-finite error (a NaN gradient, a shape mismatch) becomes null.
    strict = json.loads(json.dumps(report), parse_constant=lambda _: None)
    write_text(check_json, json.dumps(strict, indent=2, allow_nan=False) + "\n")
    write_text(fig4_html, fig4.render_fragment(report, tables))
    log.info("max relative error vs tf.GradientTape: %s", report["max_relative_error"])
    if not report["pass"]:
        raise LfwcnnError(f"backprop check failed: {_failure_summary(report)}; see {check_json}")
    log.info("all checks passed; wrote %s and %s", check_json, fig4_html)
