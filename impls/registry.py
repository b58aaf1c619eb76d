"""Names to implementations, imported lazily so a missing framework only disables its own entry."""
from __future__ import annotations

import importlib

from impls.interface import Implementation, NotInstalled, Unavailable
from impls.spec import LOW_DTYPES, ModelSpec

# name -> (module, class, the framework whose absence makes it unavailable)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "numpy": ("impls.np_backprop", "NumpyBackprop", "numpy"),
    "numpy-fd": ("impls.np_fd", "NumpyFiniteDiff", "numpy"),
    "torch": ("impls.torch_autograd", "TorchAutograd", "torch"),
    "jax": ("impls.jax_grad", "JaxGrad", "jax"),
    # the fastest honest path in each framework (opt-in; checked against numpy like the rest)
    "numpy-fast": ("impls.np_fast", "NumpyFast", "numpy"),
    "jax-step": ("impls.jax_step", "JaxStep", "jax"),
    "torch-compile": ("impls.torch_compile", "TorchCompile", "torch"),
    "torch-loop": ("impls.torch_loop", "TorchLoop", "torch"),
    # each framework as its users write it: its own layers, losses and optimizers (opt-in)
    "torch-nn": ("impls.torch_nn", "TorchNN", "torch"),
    "jax-optax": ("impls.jax_optax", "JaxOptax", "optax"),
    "keras": ("impls.keras_native", "KerasNative", "keras"),
}


DEFAULT = ("numpy", "numpy-fd", "torch", "jax")  # what a plain compare runs; the rest are opt-in
NATIVE = ("torch-nn", "jax-optax", "keras")
DEFAULT_OPTIMIZING = ("numpy", "numpy-fd", *NATIVE)  # what a compare runs for any other optimizer or schedule
FLOAT64_ONLY = ("numpy-fd",)  # every other implementation runs in float64 and float32
# the ones that also run the spec's reduced dtypes (bfloat16, float16); the others decline them with a reason
REDUCED = ("numpy", "torch", "jax", "jax-step", "torch-compile", "torch-nn", "jax-optax", "keras")
MIXED = ("numpy", "torch-nn", "jax-optax", "keras")  # follow the mixed policy (--mixed-precision)
THREAD_ON_IMPORT = ("keras",)  # importing keras starts a thread: no process may import it and then fork
PLAIN_SGD_ONLY = ("torch", "jax", "numpy-fast", "jax-step", "torch-compile", "torch-loop")  # hand-rolled SGD loops


def fork_safe_modules(names) -> list[str]:
    """The modules of these implementations that a process may import and then fork (all but THREAD_ON_IMPORT's)."""
    return [REGISTRY[n][0] for n in names if n in REGISTRY and n not in THREAD_ON_IMPORT]


def supports(name: str, spec: ModelSpec) -> bool:
    """Whether the implementation promises to run ``spec`` on the CPU once its framework is installed."""
    return (name in REGISTRY and (spec.dtype == "float64" or name not in FLOAT64_ONLY)
            and (spec.dtype not in LOW_DTYPES or name in (MIXED if spec.mixed else REDUCED))
            and (spec.plain_sgd or name not in PLAIN_SGD_ONLY))


def default_for(spec: ModelSpec) -> tuple[str, ...]:
    """The implementations a compare runs when none are named: the notebook's four for its plain SGD, else
    numpy's hand-written optimizers, and the frameworks' own."""
    return DEFAULT if spec.plain_sgd else DEFAULT_OPTIMIZING


def names() -> list[str]:
    """Every registered implementation, in report order."""
    return list(REGISTRY)


def create(name: str, spec: ModelSpec) -> Implementation:
    """An implementation of ``spec``; raises ``Unavailable`` with a one-line reason if it cannot run."""
    if name not in REGISTRY:
        raise Unavailable(f"unknown implementation {name!r}; choose from {', '.join(REGISTRY)}")
    module_name, class_name, framework = REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotInstalled(f"{name}: {framework} is not installed ({exc})") from None
    return getattr(module, class_name)(spec)

