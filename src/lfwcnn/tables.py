"""CSV tables that hold people's names (``Poe, Carol``, ``O'Brien "Jr"``, ``NA``, ``1984``), by
the csv module, which quotes them and keeps them strings (pandas would make NaN or numbers)."""

from __future__ import annotations

import csv
import io
import os
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from lfwcnn.errors import LfwcnnError


def check_name(name: str, folder: str | os.PathLike) -> None:
    """Refuse a name in ``folder`` that no table or one-line message can carry intact:
    undecodable bytes (``os.listdir``'s lone surrogates) or control characters."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise LfwcnnError(f"{folder}: the name {name!r} is not valid UTF-8; rename it") from None
    bad = sorted({ch for ch in name if unicodedata.category(ch) == "Cc"})
    if bad:
        raise LfwcnnError(f"{folder}: the name {name!r} holds control characters "
                          f"{[hex(ord(ch)) for ch in bad]}; rename it")


def table_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document (header first) with every field quoted as the csv module needs."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    return buffer.getvalue()


def read_rows(path: str | os.PathLike, what: str, columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of a CSV table with ``columns`` (and maybe others) as strings, or one line."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, strict=True)
            missing = [name for name in columns if name not in (reader.fieldnames or [])]
            if missing:
                raise LfwcnnError(f"{path}: not a {what}, columns {missing} missing")
            rows = []
            for row in reader:
                if None in row or None in row.values():
                    raise LfwcnnError(f"{path}:{reader.line_num}: a row of the {what} has "
                                      f"{'more' if None in row else 'fewer'} fields than "
                                      "its header")
                rows.append(row)
            return rows
    except csv.Error as err:
        raise LfwcnnError(f"{path}: cannot read the {what} ({err})") from None
    except UnicodeDecodeError as err:
        raise LfwcnnError(f"{path}: the {what} is not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise LfwcnnError(f"{path}: cannot read the {what} ({err.strerror})") from None


def number(path: str | os.PathLike, row: dict[str, str], column: str, kind: type = float):
    """``row[column]`` as ``kind``; an empty field is None; anything else one line."""
    if row[column] == "":
        return None
    try:
        return kind(row[column])
    except ValueError:
        raise LfwcnnError(f"{path}: column {column} holds {row[column]!r}, not a number") from None


def read_confusion(path: str | os.PathLike) -> pd.DataFrame:
    """A confusion matrix CSV (first column: true class); names stay strings, counts ints."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            table = list(csv.reader(handle, strict=True))
    except (csv.Error, OSError, UnicodeDecodeError) as err:
        raise LfwcnnError(f"{path}: cannot read the confusion matrix ({err})") from None
    if not table or len(table[0]) < 2:
        raise LfwcnnError(f"{path}: not a confusion matrix (no header of class names)")
    header, rows = table[0], table[1:]
    names = header[1:]
    if [row[0] for row in rows if row] != names or any(len(row) != len(header) for row in rows):
        raise LfwcnnError(f"{path}: rows and columns of a confusion matrix must name the same "
                          "classes in the same order")
    try:
        counts = np.array([[int(value) for value in row[1:]] for row in rows], dtype=np.int64)
    except ValueError as err:
        raise LfwcnnError(f"{path}: a count is not an integer ({err})") from None
    return pd.DataFrame(counts, index=pd.Index(names, name=header[0] or "true"), columns=names)
