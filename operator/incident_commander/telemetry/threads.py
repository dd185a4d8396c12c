"""A thread pool that runs each task in a copy of the submitter's context.

``loop.run_in_executor`` does not copy ``contextvars`` into the worker thread (unlike
``asyncio.to_thread``), so the current span would be lost there and botocore's spans
would start new traces. This executor copies the context at ``submit``, for every
caller, without changing any ``run_in_executor`` call.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        context = contextvars.copy_context()

        def call() -> T:
            return context.run(fn, *args, **kwargs)

        return super().submit(call)
