"""Implementations of the notebook's MLP behind one interface (see ``impls.interface``)."""
from impls.interface import Implementation, Params, TrainResult, Unavailable
from impls.spec import ModelSpec

__all__ = ["Implementation", "ModelSpec", "Params", "TrainResult", "Unavailable"]
