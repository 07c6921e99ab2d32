"""Hand freed heap memory back to the system, where the C library can (glibc's `malloc_trim`).

glibc keeps what a process frees for later allocations, and raises its threshold for serving
large allocations from the heap after the first large frees: building a model frees as much
as it keeps (ONNX Runtime's parsed model, torch's state dict), and that memory would stay in
the process's resident set, which is what Lambda's memory size must hold, for its life.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


def release_freed_memory() -> bool:
    """Return the heap's free memory to the system; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        process = ctypes.CDLL(None)  # the symbols the interpreter has loaded, the C library's included
    except OSError:
        return None
    trim = getattr(process, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
