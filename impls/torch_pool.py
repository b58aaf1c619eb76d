"""torch-loop's CPU allocator: ``torch_pool.cpp``, built at run time and made torch's CPU allocator in ``pooled()``.

The source is compiled once per (source, torch build, compiler) into a shared
library cached in a folder of this user's own under the system's temporary
folder (as Inductor caches its own builds there; a folder another user could
write to is refused), with torch's headers and ``libc10``. Where it cannot be built or
loaded (no compiler, no headers, an ABI it does not match), ``pooled()`` does
nothing and ``unavailable()`` says why: torch-loop then runs on torch's own
allocator, slower and otherwise the same.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import torch

SOURCE = Path(__file__).with_name("torch_pool.cpp")
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC")


@functools.cache
def _library() -> ctypes.CDLL | str:
    """The loaded pool, or why there is none (one line)."""
    try:
        from torch._inductor import cpp_builder
        from torch.utils import cpp_extension

        compiler = cpp_builder.get_cpp_compiler()
        abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
        includes = [f"-I{path}" for path in cpp_extension.include_paths()]
        libs = cpp_extension.library_paths()
        argv = [compiler, *FLAGS, abi, *includes, str(SOURCE), *(f"-L{p}" for p in libs), "-lc10",
                *(f"-Wl,-rpath,{p}" for p in libs)]
        key = hashlib.sha256("\0".join([SOURCE.read_text(), torch.__version__, *argv]).encode()).hexdigest()[:16]
        built = Path(tempfile.gettempdir()) / f"xor_harness_{os.getuid()}" / f"torch_pool_{key}.so"
        built.parent.mkdir(mode=0o700, exist_ok=True)
        folder = built.parent.stat()
        if folder.st_uid != os.getuid() or folder.st_mode & 0o022:  # a library someone else could have put there
            return f"{built.parent} is not this user's own folder"
        if not built.exists():
            partial = built.with_suffix(f".{os.getpid()}.tmp")
            done = subprocess.run([*argv, "-o", str(partial)], capture_output=True, text=True, timeout=120)
            if done.returncode:
                return f"{compiler} could not build it ({(done.stderr.strip().splitlines() or ['?'])[0][:200]})"
            os.replace(partial, built)  # atomic: a concurrent build of the same key writes the same file
        library = ctypes.CDLL(str(built))
        library.pool_install.restype = library.pool_uninstall.restype = library.pool_active.restype = ctypes.c_int
        return library
    except Exception as exc:  # noqa: BLE001 -- InvalidCxxCompiler, OSError, a timeout: the pool is optional
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def unavailable() -> str | None:
    """Why the pool cannot be used in this process (one line), or None."""
    found = _library()
    return found if isinstance(found, str) else None


@contextlib.contextmanager
def pooled() -> Iterator[bool]:
    """Within the block, torch's CPU tensors take their memory from the pool (yields whether they do)."""
    found = _library()
    if isinstance(found, str) or found.pool_install() != 0:
        yield False
        return
    try:
        yield True
    finally:
        found.pool_uninstall()


def active() -> bool:
    """Whether torch's CPU allocator is the pool now."""
    found = _library()
    return not isinstance(found, str) and bool(found.pool_active())
