"""``faithbench report``: not implemented yet."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    print("faithbench: error: the report command is not available yet", file=sys.stderr)
    return 2
