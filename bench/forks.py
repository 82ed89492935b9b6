"""Work handed to forked processes (a sweep's config composition, a report's figures):
how many cores this process may use, and where forking is safe."""

from __future__ import annotations

import os
import sys


def cores() -> int:
    """The CPU cores this process may use (its affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def can_fork() -> bool:
    """Whether work may go to forked processes: on Linux only (macOS's system libraries
    are not fork-safe, Windows does not fork)."""
    return sys.platform.startswith("linux")
