"""Run code and commands inside a network namespace that a test created.

Processes start there with ``nsenter --net=PATH`` (not ``ip netns exec``, which also gives the
process a private mount namespace: containerd would then not see the volumes kubelet mounts).
Python code that needs a socket inside the namespace (readiness probes, HTTP calls from the test)
runs on a thread that joined the namespace with ``setns(2)``: a socket belongs to the namespace of
the thread that created it, and joining a network namespace affects that thread only.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_executors: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def nsenter(path: Path) -> list[str]:
    """The command prefix that starts a program inside the namespace at ``path``."""
    return ["nsenter", f"--net={path}"]


def _join(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def run_in(path: Path, function: Callable[[], T]) -> T:
    """Call ``function`` on a thread that lives in the namespace at ``path``; return its result."""
    key = str(path)
    with _lock:
        executor = _executors.get(key)
        if executor is None:
            executor = ThreadPoolExecutor(
                max_workers=4, thread_name_prefix=f"netns-{path.name}", initializer=_join, initargs=(key,)
            )
            _executors[key] = executor
    return executor.submit(function).result()


def forget(path: Path) -> None:
    """Stop the threads kept for ``path`` (before the namespace is deleted)."""
    with _lock:
        executor = _executors.pop(str(path), None)
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)
