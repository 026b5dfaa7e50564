"""Shared entry-point plumbing: every step prints one clear line on bad input, never a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from lfwcnn.errors import LfwcnnError


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a step's ``main``; turn an ``LfwcnnError`` into ``error: ...`` on stderr and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        main(argv)
    except LfwcnnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
