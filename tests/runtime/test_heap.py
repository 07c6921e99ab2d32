"""Freed heap memory goes back to the system after a model is built (glibc's malloc_trim)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from lambda_src.heap import release_freed_memory

# In a fresh interpreter, through the C library itself: 200 blocks of 1 MB from the heap (below
# the mmap threshold, as glibc serves them once large blocks have been freed), each followed by a
# small one that stays so the heap cannot shrink from its top; the large ones freed; the resident
# set reported before and after.
PROBE = """
import ctypes
from lambda_src.heap import release_freed_memory

def resident_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallopt(-3, 4 * 2**20)  # M_MMAP_THRESHOLD: blocks under 4 MB come from the heap
blocks, pins = [], []
for _ in range(200):
    blocks.append(libc.malloc(2**20))
    ctypes.memset(blocks[-1], 1, 2**20)
    pins.append(libc.malloc(600))
for block in blocks:
    libc.free(block)
held = resident_mb()
released = release_freed_memory()
print(held, resident_mb(), released)
"""


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc's malloc_trim is Linux's")
def test_freed_heap_memory_leaves_the_resident_set() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    held_mb, after_mb, released = probe.stdout.split()
    assert released == "True"
    assert int(held_mb) - int(after_mb) >= 150, probe.stdout  # most of the 200 MB was handed back


def test_it_is_safe_to_call_again() -> None:
    assert release_freed_memory() is release_freed_memory()
