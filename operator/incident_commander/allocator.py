"""glibc's malloc, told to keep at most two arenas (``M_ARENA_MAX``), before any thread starts.

glibc gives each thread that contends for the heap an arena of its own, up to eight per core, and
an arena keeps what was freed in it for reuse by that arena alone. The operator's worker threads
(dozens while objects converge: AWS calls, Kubernetes writes) each leave memory behind in their
arena after a burst, so the resident size stayed far above what was live (docs/performance.md).
Two arenas is what ``MALLOC_ARENA_MAX=2`` gives, set from inside so that every way of starting the
operator (the image, ``pip install``, the tests) gets it. A no-op off glibc, or when the variable is
set already (the operator's environment decides then).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena cap (glibc's malloc.h)."""
ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas; True when glibc took the setting."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
