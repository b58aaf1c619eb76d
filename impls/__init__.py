"""Implementations of the notebook's MLP behind one interface (``impls.interface``), the model spec
(``impls.spec``) and a registry (``impls.registry``). Nothing is imported here, so the harness's
oracle can import ``impls.spec`` and nothing else from this package."""
