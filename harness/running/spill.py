"""Answers kept for asking again: in memory up to a budget, beyond it in a temporary file.

The checks ask the oracle for the same states once per implementation, so its answers are kept. For a large
network they are large: at each of a 10-1024-1024-1 run's 102 checkpoints the truth's gradients and their
scale in longdouble and the plain evaluations in float64, about 60 MB a state, 6 GB in all, which held in
memory beside the run's checkpoints took this machine's memory. Past ``HELD_BYTES`` an answer is written to a
file with no name (``tempfile.TemporaryFile``: gone when the process ends, however it ends) and read back when
asked. Its pages sit in the kernel's cache while memory is free and are dropped first when it is not.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from typing import Any, Hashable

HELD_BYTES = 512 << 20  # answers held in memory; a 8-256-256-1 run's (3.3 MB a state, 102 states) all stay


def pickled_bytes(value: Any) -> int:
    """The bytes ``value`` pickles to, its arrays' memory counted without copying it."""
    sizes: list[int] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=lambda b: sizes.append(b.raw().nbytes))
    return len(head) + sum(sizes)


def digest(value: Any) -> bytes:
    """A 16-byte fingerprint of ``value`` as it pickles: equal pickles, equal fingerprints. The arrays' memory
    is hashed where it lies (a key made of the pickle itself held 8.5 MB a request for a large network)."""
    h = hashlib.blake2b(digest_size=16)
    head = pickle.dumps(value, protocol=5, buffer_callback=lambda b: h.update(b.raw()))
    h.update(head)
    return h.digest()


class Answers:
    """Values by key: the first ``keep`` bytes of them in memory, later ones in an unnamed temporary file."""

    def __init__(self, keep: int = HELD_BYTES) -> None:
        self.keep, self.held_bytes, self.spilled_bytes = keep, 0, 0
        self._held: dict[Hashable, Any] = {}
        self._spilled: dict[Hashable, tuple[int, int]] = {}  # key -> (offset, length) in the file
        self._file = None

    def __contains__(self, key: Hashable) -> bool:
        return key in self._held or key in self._spilled

    def __getitem__(self, key: Hashable) -> Any:
        if key in self._held:
            return self._held[key]
        offset, length = self._spilled[key]
        return pickle.loads(os.pread(self._file.fileno(), length, offset))

    def __setitem__(self, key: Hashable, value: Any) -> None:
        if key in self:
            return
        size = pickled_bytes(value)
        if self.held_bytes + size <= self.keep:
            self._held[key] = value
            self.held_bytes += size
            return
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="xh-answers-")
        offset, written = self.spilled_bytes, 0
        while written < len(data):  # appended at the end of what is already written
            written += os.pwrite(self._file.fileno(), memoryview(data)[written:], offset + written)
        self._spilled[key] = (offset, len(data))
        self.spilled_bytes += len(data)

    def update(self, pairs) -> None:
        for key, value in pairs:
            self[key] = value

    def close(self) -> None:
        """Forget every answer and free the file."""
        self._held.clear()
        self._spilled.clear()
        self.held_bytes = self.spilled_bytes = 0
        if self._file is not None:
            self._file.close()
            self._file = None
