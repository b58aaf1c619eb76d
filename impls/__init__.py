"""Implementations of the notebook's MLP behind one interface (``impls.interface``), the model spec
(``impls.spec``) and a registry (``impls.registry``). Only ``os`` is imported here, so the harness's
oracle can import ``impls.spec`` and nothing else from this package."""

import os as _os

# One GPU is shared by every process of a run (the compare workers, the sweep's points, the main process's
# meta.json probe). JAX's default takes 75% of the GPU's memory per process at its first use, so the second
# process to start found none left (seen on an H200: CUDA_ERROR_OUT_OF_MEMORY, a sweep's pool broken).
# Set here, before any JAX backend starts, and inherited by the workers; a user's own setting wins.
_os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
