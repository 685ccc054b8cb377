"""Small RQ jobs that worker tests enqueue by dotted path (``tests.jobs_for_tests.<name>``).

They talk to the test through files only, so they work while Redis is down.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def block(folder: str, limit: float = 120.0) -> int:
    """Record this run (a file ``run-<pid>`` in ``folder``), then wait until ``folder/release`` exists
    (at most ``limit`` s).  Returns the number of runs recorded so far."""
    here = Path(folder)
    (here / f"run-{os.getpid()}").write_text(str(time.time()))
    deadline = time.monotonic() + limit
    while not (here / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{here / 'release'} did not appear within {limit:.0f} s")
        time.sleep(0.1)
    return len(list(here.glob("run-*")))


def touch(path: str) -> str:
    """Write the time of the run into ``path`` (the test waits for the file)."""
    Path(path).write_text(str(time.time()))
    return path


def runs(folder: str | Path) -> list[Path]:
    """The runs :func:`block` recorded in ``folder``, oldest first."""
    return sorted(Path(folder).glob("run-*"), key=lambda p: float(p.read_text() or 0))
