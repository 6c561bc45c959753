"""Keeping a process's secrets from its neighbours. Neutral ground: the
server processes (after reading their secrets) and every runner (before
reading its spec, which may hold an API key) call :func:`make_non_dumpable`."""

from __future__ import annotations

_PR_SET_DUMPABLE = 4
_done = False


def make_non_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): ``/proc/<pid>/environ`` and ``mem`` of this
    process become unreadable to other processes of the same user (only root
    with CAP_SYS_PTRACE may still read them), and it dumps no core. The flag
    is kept across ``fork`` (until an ``exec``), so a runner forked from the
    template, which set it once, need not set it again. Whether it is set."""
    global _done
    if not _done:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            _done = libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
        except (OSError, AttributeError):
            pass
    return _done
