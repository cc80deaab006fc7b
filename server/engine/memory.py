"""Giving a dropped model's memory back to the system, so that a process that loads models one
after another (a benchmark comparing two, the test suite) holds one at a time.

A model's many mid-sized tensors come from malloc, not from their own mappings, and glibc keeps
freed blocks for the process: without `malloc_trim` a dropped model stays in its resident
memory. On CUDA, torch's caching allocator keeps freed blocks the same way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

import torch


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        library = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return library if library is not None and hasattr(library, "malloc_trim") else None


_LIBC = _libc()  # None where the C library is not glibc (nothing to trim there)


def give_memory_back() -> None:
    """Collect what is no longer referenced and return the freed pages (heap, CUDA cache)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
