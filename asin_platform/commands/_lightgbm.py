"""LightGBM in the CLI: the stderr line its C library writes for a refusal, held back.

Before it raises ``LightGBMError``, LightGBM's C library writes the same message to the process's
stderr itself (``[LightGBM] [Fatal] Unknown objective type name: nope``: ``fprintf`` on file
descriptor 2, whatever the verbosity or a registered logger). A refusal the CLI says in one line
(``core.ranker.lightgbm_refusal``) would be two lines on stderr, the first not the CLI's.
``fatal_lines_held_back`` runs LightGBM with descriptor 2 read through a pipe: its ``[Fatal]`` lines
are dropped (the exception carries their message: the CLI's error line, or with ``--debug`` the
traceback, shows it) and everything else is passed on as it comes.

Only around the commands' own LightGBM calls (training, a search, loading a model), never around a
run that may start processes outliving it: they would inherit the pipe.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FATAL = b"[LightGBM] [Fatal] "
# how long the end of the block waits for the pipe to drain (a child process still holding it)
DRAIN_SECONDS = 10.0


def _forward(pipe: int, out: int) -> None:
    """Copy ``pipe`` to ``out`` line by line until its writers are gone, dropping LightGBM's
    ``[Fatal]`` lines and the empty line a message ending in a newline leaves after one (a failed
    check's ``... line 352 .\\n``)."""
    after_fatal = False
    with os.fdopen(pipe, "rb") as lines:
        for line in lines:
            dropped = line.startswith(FATAL) or (after_fatal and line in (b"\n", b"\r\n"))
            after_fatal = line.startswith(FATAL)
            if not dropped:
                try:
                    os.write(out, line)
                except OSError:
                    pass  # stderr itself is gone: nothing to tell


@contextmanager
def fatal_lines_held_back() -> Iterator[None]:
    """Descriptor 2 read through a pipe for the block: LightGBM's ``[LightGBM] [Fatal]`` lines
    dropped, every other line passed on to the stderr it had. Python's ``sys.stderr`` is flushed on
    the way in and out, so nothing written before or after is moved across the block."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, saved), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer in this process: the forwarder reads to its end
        forwarder.join(DRAIN_SECONDS)
        if not forwarder.is_alive():
            os.close(saved)
