"""The process's named single threads (voice, speech): each stage that must never wait on, nor delay, the event
loop, enhancement or inference gets one, made on first use and shared by every session."""

from __future__ import annotations

import threading
from concurrent.futures import Executor, ThreadPoolExecutor

_threads: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def one_thread(name: str) -> Executor:
    """The process's one thread called `name`."""
    with _lock:
        if name not in _threads:
            _threads[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return _threads[name]
