"""When a plain fork of this process is safe: for work that needs no framework (the oracle's worker, a plot).

Shared by ``harness.running.workers`` and ``harness.reporting.results``, so neither layer reaches into the
other for it.
"""
from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.context import BaseContext

THREADED = ("torch", "jax", "tensorflow", "keras")  # frameworks whose threads a plain fork would not carry over


def fork_context() -> BaseContext | None:
    """A plain fork of this process: it starts at once, without waiting for the fork server to import torch
    and JAX. None where no fork is safe (a framework is loaded here) or possible (no fork on this platform)."""
    if "fork" not in multiprocessing.get_all_start_methods() or any(m in sys.modules for m in THREADED):
        return None
    return multiprocessing.get_context("fork")
