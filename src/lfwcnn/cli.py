"""Shared entry-point plumbing: every step prints one clear line on bad input, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from collections.abc import Callable, Sequence

from lfwcnn.errors import LfwcnnError


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a step's ``main(argv)`` as :func:`guarded` does."""
    return guarded(lambda: main(argv))


def guarded(action: Callable[[], object]) -> int:
    """Run ``action``; turn an ``LfwcnnError`` into ``error: ...`` on stderr and exit 1.

    An ``OSError`` that no step turned into an ``LfwcnnError`` (a full disk, a denied
    permission, a read-only file system) is one such line too, naming the file the system
    named: the last line of defence against a traceback. Ctrl-C is one line as well.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        action()
    except LfwcnnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


def describe_os_error(err: OSError) -> str:
    """``file: reason`` (``file -> other: reason`` for a rename) on one line."""
    files = " -> ".join(str(name) for name in (err.filename, err.filename2) if name is not None)
    reason = err.strerror or " ".join(str(err).split()) or type(err).__name__
    return f"{files}: {reason}" if files else reason


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error:`` line like every other, pointing at
    ``--help``."""

    help_hint = "--help"

    def error(self, message: str) -> typing.NoReturn:
        raise LfwcnnError(f"{message} ({self.prog} {self.help_hint})")
