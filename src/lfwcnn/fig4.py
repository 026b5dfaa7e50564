"""Fig. 4 of the paper, equation by equation: a 3x3 input X, a 2x2 filter F, stride 1.

Section 2 writes out every product in the forward pass (Eqs. 1-4), in dL/dF (Eqs. 5-10) and
in dL/dX (Eqs. 11-21). This module transcribes them (``PAPER_*``), reads the same products
off :mod:`lfwcnn.backprop` by feeding it one-hot inputs (:func:`code_terms`), compares the
two, works the example with small integers and renders claim C3's HTML fragment.

Subscripts are the paper's, 1-based, as strings: "12" is row 1, column 2. A product is a
pair of subscripts: ("12", "11") in O_12 is X_12 F_11 (Eq. 2).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import numpy as np
from markupsafe import Markup

from lfwcnn import backprop, templating

Terms = dict[str, list[tuple[str, str]]]

# Eqs. (1)-(4), transcribed: O_ij -> its products (X index, F index).
PAPER_FORWARD = {
    "11": [("11", "11"), ("12", "12"), ("21", "21"), ("22", "22")],
    "12": [("12", "11"), ("13", "12"), ("22", "21"), ("23", "22")],
    "21": [("21", "11"), ("22", "12"), ("31", "21"), ("32", "22")],
    "22": [("22", "11"), ("23", "12"), ("32", "21"), ("33", "22")],
}
FORWARD_EQUATION = {"11": 1, "12": 2, "21": 3, "22": 4}
# Eq. (5), dO_11/dF_pq = X_ab, and Eq. (11), dO_11/dX_ab = F_pq (0 for any other X_ab), print
# the same index map: F index -> X index, and X index -> F index.
PAPER_EQ5_EQ11 = {"11": "11", "12": "12", "21": "21", "22": "22"}
# Eqs. (7)-(10) sum dL/dO_ij * dO_ij/dF_pq over all four O_ij; the local gradients come
# from Eqs. (1)-(4), so paper_terms derives these products from PAPER_FORWARD.
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

# Numbers for the tables (the figure itself has none): small integers, easy by hand, and a
# learning rate for Eq. (22) that is exact in binary, float32 too (Keras keeps it in a float32
# variable, where 0.1 would be 1.5e-8 off, and the check compares one Keras SGD step).
X = np.arange(1.0, 10.0).reshape(3, 3)
F = np.array([[2.0, -1.0], [1.0, 3.0]])
D_OUT = np.array([[1.0, -2.0], [3.0, 2.0]])
EXAMPLE = {"x": X, "f": F, "d_out": D_OUT}
ALPHA = 0.125
# the two matrices each result is bilinear in, in the order the paper writes its products
FACTORS = {"O": ("x", "f"), "dF": ("d_out", "x"), "dX": ("d_out", "f")}


def _label(index: tuple[int, ...]) -> str:
    """0-based array index -> the paper's subscript: (0, 1) -> "12"."""
    return "".join(str(i + 1) for i in index)


def _index(label: str) -> tuple[int, ...]:
    """The paper's subscript -> 0-based array index: "12" -> (0, 1)."""
    return tuple(int(c) - 1 for c in label)


def as_4d(x: np.ndarray, f: np.ndarray, d_out: np.ndarray) -> tuple[np.ndarray, ...]:
    """The 2-D X, F and dL/dO as a one-image, one-channel NHWC X, a (kh, kw, 1, 1) F and dL/dO."""
    return x[None, :, :, None], f[:, :, None, None], d_out[None, :, :, None]


def example(x: np.ndarray, f: np.ndarray, d_out: np.ndarray) -> dict[str, np.ndarray]:
    """O (Eqs. 1-4), dL/dF (Eqs. 7-10) and dL/dX (Eqs. 13-21) of the paper's 2-D X, F, dL/dO:
    one call each of the very functions the backprop check tests."""
    x4, f4, d4 = as_4d(x, f, d_out)
    return {
        "O": backprop.conv2d_forward(x4, f4)[0, :, :, 0],
        "dF": backprop.grad_filter(x4, d4, f.shape)[:, :, 0, 0],
        "dX": backprop.grad_input(d4, f4, x4.shape)[0, :, :, 0],
    }


def code_terms() -> tuple[dict[str, Terms], list[str]]:
    """The products a_k * b_l in each entry of O (X, F), dL/dF (dL/dO, X) and dL/dX (dL/dO, F).

    Feeds :func:`example` one-hot a and b (the third matrix zero): an entry is 1 exactly where
    the paper's equation must have a_k b_l. Other coefficients than 0 and 1 are problems.
    """
    zeros = {name: np.zeros_like(m) for name, m in EXAMPLE.items()}
    found: dict[str, Terms] = {}
    problems: list[str] = []
    for result, (a, b) in FACTORS.items():
        terms = found[result] = {}
        for ia, ib in product(np.ndindex(zeros[a].shape), np.ndindex(zeros[b].shape)):
            matrices = {name: m.copy() for name, m in zeros.items()}
            matrices[a][ia] = matrices[b][ib] = 1.0
            out = example(**matrices)[result]
            for io in np.ndindex(out.shape):
                terms.setdefault(_label(io), [])
                if out[io] == 1.0:
                    terms[_label(io)].append((_label(ia), _label(ib)))
                elif out[io] != 0.0:
                    problems.append(f"coefficient {out[io]} at {_label(io)}")
    return found, problems


def paper_terms() -> dict[str, Terms]:
    """The same products as the paper prints them (Eqs. 7-10 via the local gradients of 1-4)."""
    d_filter: Terms = {pq: [] for pq in GRAD_FILTER_EQUATION}
    for o_index, products in PAPER_FORWARD.items():
        for x_index, f_index in products:
            d_filter[f_index].append((o_index, x_index))
    d_input = {x_index: products for x_index, (_, products) in PAPER_GRAD_INPUT.items()}
    return {"O": dict(PAPER_FORWARD), "dF": d_filter, "dX": d_input}


def compare_equations(code: dict[str, Terms], paper: dict[str, Terms]) -> dict[str, bool]:
    """Eq. (1)-(5), (7)-(11), (13)-(21) -> whether the code has exactly the paper's products."""

    def local(terms: Terms) -> dict[str, list[str]]:
        """Entry -> its partners in the products with dL/dO_11: dO_11/d(entry), Eqs. 5, 11."""
        return {key: [b for o, b in products if o == "11"] for key, products in terms.items()}

    result = {}
    for name, equation in (("O", FORWARD_EQUATION), ("dF", GRAD_FILTER_EQUATION),
                           ("dX", {x: eq for x, (eq, _) in PAPER_GRAD_INPUT.items()})):
        for key, eq in equation.items():
            result[str(eq)] = sorted(code[name][key]) == sorted(paper[name][key])
    result["5"] = local(code["dF"]) == {f: [x] for f, x in PAPER_EQ5_EQ11.items()}
    local_x = local(code["dX"])
    result["11"] = local_x == {x: [PAPER_EQ5_EQ11[x]] if x in PAPER_EQ5_EQ11 else []
                               for x in local_x}
    return dict(sorted(result.items(), key=lambda kv: int(kv[0])))


def worked_numbers() -> dict[str, np.ndarray]:
    """X, F, dL/dO of the example and what the code makes of them, up to F after Eq. (22)."""
    results = example(**EXAMPLE)
    return {"X": X, "F": F, "dO": D_OUT, **results,
            "F_new": backprop.sgd_update(F, results["dF"], ALPHA)}


def paper_numbers() -> dict[str, np.ndarray]:
    """O, dL/dF and dL/dX of the example by the paper's equations (1)-(4), (7)-(10), (13)-(21)."""
    numbers = {}
    for result, terms in paper_terms().items():
        a, b = (EXAMPLE[name] for name in FACTORS[result])
        # the largest subscript of each axis is its size: 2x2 or 3x3
        out = numbers[result] = np.zeros([int(max(axis)) for axis in zip(*terms, strict=True)])
        for key, products in terms.items():
            out[_index(key)] = sum(a[_index(k)] * b[_index(m)] for k, m in products)
    return numbers


# --- the HTML fragment (templates/fig4.html.j2) ------------------------------------------

PARTIAL = "\u2202L/\u2202"


def _sym(name: str, sub: str) -> Markup:
    return Markup("{}<sub>{}</sub>").format(name, sub)


def _products(terms: Terms, a: str, b: str) -> Callable[[str], Markup]:
    """Entry -> its products a_k·b_l as the code computes them, e.g. X_11·F_11 + ..., or 0."""
    return lambda key: Markup(" + ").join(
        _sym(a, k) + Markup("&middot;") + _sym(b, m) for k, m in sorted(terms[key])) or Markup("0")


def _table(caption, values, expr, equation=lambda key: None) -> dict:
    """One small table: per entry its symbolic expression, equation number and value."""
    rows = [[{"expr": expr(_label((i, j))), "eq": equation(_label((i, j))), "value": f"{v:.6g}"}
             for j, v in enumerate(row)] for i, row in enumerate(values)]
    return {"caption": caption, "rows": rows}


def worked_tables(code: dict[str, Terms], numbers: dict[str, np.ndarray]) -> list[dict]:
    """X, F, O, dL/dO, dL/dF, rot180(F), dL/dX and F after Eq. (22), symbols from the code."""
    d_o = PARTIAL + "O"
    return [
        _table("X (input)", numbers["X"], lambda k: _sym("X", k)),
        _table("F (filter)", numbers["F"], lambda k: _sym("F", k)),
        _table("O: valid convolution of X with F, Eqs. (1)-(4)", numbers["O"],
               _products(code["O"], "X", "F"), FORWARD_EQUATION.get),
        _table(PARTIAL + "O (given)", numbers["dO"], lambda k: _sym(d_o, k)),
        _table(PARTIAL + "F: valid convolution of X with " + d_o + ", Eqs. (7)-(10)",
               numbers["dF"], _products(code["dF"], d_o, "X"), GRAD_FILTER_EQUATION.get),
        _table("F rotated by 180\u00b0", np.rot90(numbers["F"], 2),
               lambda k: _sym("F", "".join(str(3 - int(c)) for c in k))),
        _table(PARTIAL + "X: full convolution of " + d_o + " with F rotated by 180\u00b0, "
               "Eqs. (13)-(21)", numbers["dX"], _products(code["dX"], d_o, "F"),
               lambda k: PAPER_GRAD_INPUT[k][0]),
        _table(f"F after Eq. (22) with \u03b1 = {ALPHA}", numbers["F_new"],
               lambda k: _sym("F", k) + Markup(" &minus; &alpha;&middot;") + _sym(PARTIAL + "F", k),
               lambda k: 22),
    ]


def render_fragment(report: dict, tables: list[dict]) -> str:
    """Claim C3's ``<section>``: the verdict of every check in ``report``, then the tables."""
    return templating.render("fig4.html.j2", report=report, tables=tables, **report["checks"])
