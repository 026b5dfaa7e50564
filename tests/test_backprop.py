"""Claim C3: the NumPy backprop of section 2 equals TensorFlow's autodiff, central differences,
the paper's Fig. 4 equations term by term, and a Keras SGD step (Eq. 22)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

import lfwcnn  # noqa: E402
from lfwcnn import backprop, fig4, verify_backprop  # noqa: E402
from lfwcnn.cli import run  # noqa: E402
from lfwcnn.steps import main  # noqa: E402

TOLERANCE = 1e-10


def rel_err(got, want) -> float:
    want = np.asarray(want)
    assert np.shape(got) == want.shape
    scale = np.max(np.abs(want), initial=0.0)
    diff = np.max(np.abs(np.asarray(got) - want), initial=0.0)
    return diff / scale if scale > 0 else diff


def tape_conv(x, kernel, bias, d_out, stride):
    """(O, dL/dX, dL/dF, dL/db) from tf.GradientTape for L = sum(O * d_out)."""
    x_t, f_t, b_t = (tf.constant(a, dtype=tf.float64) for a in (x, kernel, bias))
    with tf.GradientTape() as tape:
        tape.watch([x_t, f_t, b_t])
        out = tf.nn.conv2d(x_t, f_t, strides=stride, padding="VALID") + b_t
        loss = tf.reduce_sum(out * d_out)
    return (out.numpy(), *(g.numpy() for g in tape.gradient(loss, [x_t, f_t, b_t])))


# --- against tf.GradientTape -----------------------------------------------------------------


@st.composite
def conv_layers(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return {
        "batch": draw(st.integers(1, 3)),
        "h": draw(st.integers(max(3, kh), 16)),
        "w": draw(st.integers(max(3, kw), 16)),
        "c_in": draw(st.integers(1, 4)),
        "c_out": draw(st.integers(1, 5)),
        "kh": kh,
        "kw": kw,
        "stride": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=100, deadline=None)
@given(conv_layers())
def test_conv_forward_and_gradients_match_gradient_tape(layer):
    rng = np.random.default_rng(layer["seed"])
    x = rng.normal(size=(layer["batch"], layer["h"], layer["w"], layer["c_in"]))
    kernel = rng.normal(size=(layer["kh"], layer["kw"], layer["c_in"], layer["c_out"]))
    bias = rng.normal(size=layer["c_out"])
    stride = layer["stride"]
    out = backprop.conv2d_forward(x, kernel, bias, stride)
    d_out = rng.normal(size=out.shape)
    tf_out, tf_dx, tf_df, tf_db = tape_conv(x, kernel, bias, d_out, stride)

    assert rel_err(out, tf_out) < TOLERANCE
    assert rel_err(backprop.grad_filter(x, d_out, kernel.shape[:2], stride), tf_df) < TOLERANCE
    assert rel_err(backprop.grad_input(d_out, kernel, x.shape, stride), tf_dx) < TOLERANCE
    assert rel_err(backprop.grad_bias(d_out), tf_db) < TOLERANCE


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(3, 12), st.integers(3, 12), st.integers(1, 4)),
    pool=st.integers(1, 3),
    stride=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_maxpool_matches_gradient_tape(shape, pool, stride, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    out = backprop.maxpool_forward(x, pool, stride)
    d_out = rng.normal(size=out.shape)
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        tf_out = tf.nn.max_pool2d(x_t, pool, stride, padding="VALID")
        loss = tf.reduce_sum(tf_out * d_out)
    assert rel_err(out, tf_out.numpy()) == 0.0
    assert rel_err(backprop.maxpool_backward(x, d_out, pool, stride), tape.gradient(loss, x_t)) < (
        TOLERANCE
    )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_relu_backward_matches_gradient_tape_including_zeros(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 5, 4, 3))
    x[rng.random(x.shape) < 0.3] = 0.0
    d_out = rng.normal(size=x.shape)
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        loss = tf.reduce_sum(tf.nn.relu(x_t) * d_out)
    np.testing.assert_array_equal(backprop.relu_backward(x, d_out), tape.gradient(loss, x_t))


# --- small hand-checkable cases -------------------------------------------------------------


def test_maxpool_routes_gradient_to_each_window_maximum():
    x = np.array([[1.0, 5, 2, 0], [3, 4, 8, 1], [0, 2, 1, 1], [9, 1, 3, 7]])[None, :, :, None]
    np.testing.assert_array_equal(backprop.maxpool_forward(x)[0, :, :, 0], [[5, 8], [9, 7]])
    d_out = np.array([[1.0, 2], [3, 4]])[None, :, :, None]
    expected = np.zeros((4, 4))
    expected[0, 1], expected[1, 2], expected[3, 0], expected[3, 3] = 1, 2, 3, 4
    np.testing.assert_array_equal(backprop.maxpool_backward(x, d_out)[0, :, :, 0], expected)


def test_overlapping_pool_windows_add_their_gradients():
    x = np.array([[0.0, 1, 0], [0, 9, 0], [0, 0, 0]])[None, :, :, None]
    d_out = np.ones((1, 2, 2, 1))
    d_x = backprop.maxpool_backward(x, d_out, pool_size=2, stride=1)
    assert d_x[0, 1, 1, 0] == 4.0 and d_x.sum() == 4.0


def test_relu_backward_stops_gradient_at_zero_and_below():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(backprop.relu_backward(x, np.array([5.0, 6.0, 7.0])), [0, 0, 7])


def test_input_rows_the_strided_filter_never_reads_get_zero_gradient():
    rng = np.random.default_rng(3)
    x, kernel = rng.normal(size=(1, 6, 6, 2)), rng.normal(size=(2, 2, 2, 3))
    d_out = rng.normal(size=backprop.conv2d_forward(x, kernel, stride=3).shape)
    d_x = backprop.grad_input(d_out, kernel, x.shape, stride=3)
    assert d_x.shape == x.shape
    read, unread = [0, 1, 3, 4], [2, 5]  # windows start at 0 and 3 and are 2 wide
    assert np.all(d_x[:, unread] == 0) and np.all(d_x[:, :, unread] == 0)
    assert np.all(d_x[:, read][:, :, read] != 0)


def test_grad_input_without_the_rotation_would_be_wrong():
    """The 180-degree rotation of Eqs. (13)-(21) matters for any asymmetric filter."""
    rng = np.random.default_rng(4)
    x, kernel = rng.normal(size=(1, 5, 5, 1)), rng.normal(size=(2, 2, 1, 1))
    d_out = rng.normal(size=(1, 4, 4, 1))
    _, tf_dx, _, _ = tape_conv(x, kernel, np.zeros(1), d_out, 1)
    unrotated = backprop.correlate_valid(
        backprop.pad_full(d_out, 2, 2), kernel.transpose(0, 1, 3, 2)
    )
    assert rel_err(backprop.grad_input(d_out, kernel, x.shape), tf_dx) < TOLERANCE
    assert rel_err(unrotated, tf_dx) > 0.01


def test_sgd_update_is_eq_22():
    f, grad = np.array([1.0, -2.0]), np.array([0.5, 4.0])
    np.testing.assert_array_equal(backprop.sgd_update(f, grad, 0.25), [0.875, -3.0])
    np.testing.assert_array_equal(f, [1.0, -2.0])  # the old filter is left alone


# --- central differences ----------------------------------------------------------------------


def central_difference(loss, at, step=1e-6):
    grad = np.zeros_like(at)
    for i in np.ndindex(at.shape):
        e = np.zeros_like(at)
        e[i] = step
        grad[i] = (loss(at + e) - loss(at - e)) / (2 * step)
    return grad


@pytest.mark.parametrize("seed", range(4))
def test_conv_relu_gradients_match_central_differences(seed):
    rng = np.random.default_rng(seed)
    stride = 1 + seed % 2
    x, kernel = rng.normal(size=(2, 5, 6, 2)), rng.normal(size=(2, 3, 2, 3))
    bias = rng.normal(size=3)
    target = rng.normal(size=backprop.conv2d_forward(x, kernel, bias, stride).shape)

    def loss(x_, f_, b_):
        return 0.5 * np.sum(
            (backprop.relu(backprop.conv2d_forward(x_, f_, b_, stride)) - target) ** 2
        )

    pre = backprop.conv2d_forward(x, kernel, bias, stride)
    d_pre = backprop.relu_backward(pre, backprop.relu(pre) - target)
    numeric_f = central_difference(lambda f: loss(x, f, bias), kernel)
    numeric_x = central_difference(lambda a: loss(a, kernel, bias), x)
    numeric_b = central_difference(lambda b: loss(x, kernel, b), bias)
    assert rel_err(backprop.grad_filter(x, d_pre, (2, 3), stride), numeric_f) < 1e-6
    assert rel_err(backprop.grad_input(d_pre, kernel, x.shape, stride), numeric_x) < 1e-6
    assert rel_err(backprop.grad_bias(d_pre), numeric_b) < 1e-6


def test_verifier_numerical_check_passes_and_would_catch_a_wrong_gradient(monkeypatch):
    rng = np.random.default_rng(0)
    assert verify_backprop.check_numerical(rng, cases=3)["pass"]
    monkeypatch.setattr(backprop, "grad_bias", lambda d_out: 2 * d_out.sum(axis=(0, 1, 2)))
    assert not verify_backprop.check_numerical(np.random.default_rng(0), cases=3)["pass"]


# --- Fig. 4, each printed equation --------------------------------------------------------


def test_fig4_equations_hold_term_by_term():
    """Eqs. (1)-(4), (7)-(10), (13)-(21) typed in as printed, on random X, F and dL/dO.

    Each side is bilinear, so equality on random numbers means the same terms (a missing,
    extra or swapped X or F entry would show). Subscripts are the paper's, 1-based.
    """
    rng = np.random.default_rng(5)
    x, f, d = rng.normal(size=(3, 3)), rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
    x4, f4, d4 = x[None, :, :, None], f[:, :, None, None], d[None, :, :, None]
    out = backprop.conv2d_forward(x4, f4)[0, :, :, 0]
    d_f = backprop.grad_filter(x4, d4, (2, 2))[:, :, 0, 0]
    d_x = backprop.grad_input(d4, f4, x4.shape)[0, :, :, 0]

    def paper(a):
        return lambda i, j: a[i - 1, j - 1]

    X, F, dO, O, dLdF, dLdX = map(paper, (x, f, d, out, d_f, d_x))  # noqa: E741
    equations = {
        1: (O(1, 1), X(1, 1) * F(1, 1) + X(1, 2) * F(1, 2) + X(2, 1) * F(2, 1) + X(2, 2) * F(2, 2)),
        2: (O(1, 2), X(1, 2) * F(1, 1) + X(1, 3) * F(1, 2) + X(2, 2) * F(2, 1) + X(2, 3) * F(2, 2)),
        3: (O(2, 1), X(2, 1) * F(1, 1) + X(2, 2) * F(1, 2) + X(3, 1) * F(2, 1) + X(3, 2) * F(2, 2)),
        4: (O(2, 2), X(2, 2) * F(1, 1) + X(2, 3) * F(1, 2) + X(3, 2) * F(2, 1) + X(3, 3) * F(2, 2)),
        # (7)-(10): dL/dO_ij times dO_ij/dF_pq, the X entry that multiplies F_pq in (1)-(4)
        7: (dLdF(1, 1), dO(1, 1) * X(1, 1) + dO(1, 2) * X(1, 2) + dO(2, 1) * X(2, 1)
            + dO(2, 2) * X(2, 2)),
        8: (dLdF(1, 2), dO(1, 1) * X(1, 2) + dO(1, 2) * X(1, 3) + dO(2, 1) * X(2, 2)
            + dO(2, 2) * X(2, 3)),
        9: (dLdF(2, 1), dO(1, 1) * X(2, 1) + dO(1, 2) * X(2, 2) + dO(2, 1) * X(3, 1)
            + dO(2, 2) * X(3, 2)),
        10: (dLdF(2, 2), dO(1, 1) * X(2, 2) + dO(1, 2) * X(2, 3) + dO(2, 1) * X(3, 2)
             + dO(2, 2) * X(3, 3)),
        13: (dLdX(1, 1), dO(1, 1) * F(1, 1)),
        14: (dLdX(1, 2), dO(1, 1) * F(1, 2) + dO(1, 2) * F(1, 1)),
        15: (dLdX(1, 3), dO(1, 2) * F(1, 2)),
        16: (dLdX(2, 1), dO(1, 1) * F(2, 1) + dO(2, 1) * F(1, 1)),
        17: (dLdX(2, 2), dO(1, 1) * F(2, 2) + dO(1, 2) * F(2, 1) + dO(2, 1) * F(1, 2)
             + dO(2, 2) * F(1, 1)),
        18: (dLdX(2, 3), dO(1, 2) * F(2, 2) + dO(2, 2) * F(1, 2)),
        19: (dLdX(3, 1), dO(2, 1) * F(2, 1)),
        20: (dLdX(3, 2), dO(2, 1) * F(2, 2) + dO(2, 2) * F(2, 1)),
        21: (dLdX(3, 3), dO(2, 2) * F(2, 2)),
    }  # fmt: skip
    for eq, (code, printed) in equations.items():
        assert code == pytest.approx(printed, rel=1e-12, abs=1e-12), f"Eq. ({eq})"


def test_verifier_reads_the_paper_terms_off_the_code():
    code, problems = fig4.code_terms()
    equations = fig4.compare_equations(code, fig4.paper_terms())
    assert not problems
    expected = [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, *range(13, 22)]
    assert [int(eq) for eq in equations] == expected
    assert all(equations.values())
    assert code["dX"]["22"] == [("11", "22"), ("12", "21"), ("21", "12"), ("22", "11")]


def test_fig4_check_flags_the_equations_a_wrong_gradient_breaks(monkeypatch):
    monkeypatch.setattr(backprop, "rot180", lambda kernel: kernel)
    code, _ = fig4.code_terms()
    equations = fig4.compare_equations(code, fig4.paper_terms())
    assert all(equations[str(eq)] for eq in (1, 2, 3, 4, 5, 7, 8, 9, 10))
    assert not any(equations[str(eq)] for eq in (11, 13, 17, 21))


# --- one Keras SGD step ---------------------------------------------------------------------


@pytest.mark.parametrize(("stride", "learning_rate"), [(1, 0.5), (2, 0.03125)])
def test_numpy_step_with_eq_22_equals_keras_sgd(stride, learning_rate):
    rng = np.random.default_rng(stride)
    x, kernel = rng.normal(size=(2, 7, 8, 3)), rng.normal(size=(3, 3, 3, 2))
    bias = rng.normal(size=2)
    target = rng.normal(size=backprop.conv2d_forward(x, kernel, bias, stride).shape)
    new_f, new_b = verify_backprop.numpy_step(x, kernel, bias, target, stride, learning_rate)
    keras_f, keras_b = verify_backprop.keras_step(x, kernel, bias, target, stride, learning_rate)
    assert rel_err(new_f - kernel, keras_f - kernel) < TOLERANCE
    assert rel_err(new_b - bias, keras_b - bias) < TOLERANCE
    assert np.abs(new_f - kernel).max() > 1e-3  # the step did move the filter


# --- the pipeline step ------------------------------------------------------------------------


def overlay(folder: Path, **backprop) -> str:
    """A config file setting ``backprop`` keys, for ``--configfile``."""
    path = folder / "overlay.json"
    path.write_text(json.dumps({"backprop": backprop}))
    return str(path)


def verify(folder: Path, out_json: Path, cases: int) -> int:
    """The step in this process (so that a monkeypatch holds), as ``python -m lfwcnn`` runs it."""
    return run(main, ["verify_backprop", f"check_json={out_json}",
                      f"fig4_html={out_json.parent / 'fig4.html'}",
                      "--configfile", overlay(folder, cases=cases)])


def test_cli_writes_json_and_fig4_fragment(tmp_path):
    src = Path(lfwcnn.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
    }
    out_json, out_html = tmp_path / "out" / "check.json", tmp_path / "out" / "fig4.html"
    done = subprocess.run(
        [sys.executable, "-m", "lfwcnn", "verify_backprop", f"check_json={out_json}",
         f"fig4_html={out_html}", "--configfile", overlay(tmp_path, cases=4, seed=1)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out_json.read_text())
    assert report["pass"] is True and report["cases"]["autodiff"] == 4
    assert set(report["max_relative_error"]) >= {"filter", "input", "bias", "pool", "relu"}
    assert max(report["max_relative_error"].values()) < report["tolerance"]
    assert set(report["checks"]) == {"autodiff", "numerical", "fig4", "keras_sgd"}
    assert all(report["checks"]["fig4"]["equations"].values())
    html = out_html.read_text()
    assert html.startswith("<section") and html.rstrip().endswith("</section>")
    assert "<html" not in html and "<body" not in html
    assert html.count("<table") == 8
    assert "(17)" in html and "(22)" in html and "PASS" in html
    # dL/dX_22 of the printed numbers, Eq. (17): 1*3 + (-2)*1 + 3*(-1) + 2*2
    assert "<small>(17)</small><br>= 2<" in html


def test_failing_check_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(backprop, "rot180", lambda kernel: kernel)
    out_json = tmp_path / "check.json"
    assert verify(tmp_path, out_json, cases=2) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: backprop check failed")
    report = json.loads(out_json.read_text())
    assert report["pass"] is False and report["checks"]["autodiff"]["pass"] is False
    assert "13" in report["checks"]["fig4"]["mismatched_equations"]


def test_bad_case_count_is_a_one_line_error(tmp_path, capsys):
    assert verify(tmp_path, tmp_path / "c.json", cases=0) == 1
    assert capsys.readouterr().err.strip() == (
        "error: config key backprop.cases: 0 is less than the minimum of 1")
    assert not (tmp_path / "c.json").exists() and not (tmp_path / "fig4.html").exists()


def test_nan_gradient_fails_and_the_json_stays_strict(tmp_path, monkeypatch):
    monkeypatch.setattr(backprop, "grad_bias", lambda d_out: np.full(d_out.shape[-1], np.nan))
    out_json = tmp_path / "check.json"
    assert verify(tmp_path, out_json, cases=2) == 1

    def reject(constant):
        raise AssertionError(f"{constant} is not JSON")

    report = json.loads(out_json.read_text(), parse_constant=reject)
    assert report["pass"] is False and report["max_relative_error"]["bias"] is None
