"""Starting a process at a lower priority."""

from __future__ import annotations

import shutil


def with_niceness(argv: list[str], nice: int) -> list[str]:
    """``argv`` run under ``nice -n``, which every thread it starts inherits (where ``nice`` is installed)."""
    program = shutil.which("nice") if nice else None
    return [program, "-n", str(nice), *argv] if program else argv
