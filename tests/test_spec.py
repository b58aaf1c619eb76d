import math

import pytest

from impls.spec import ModelSpec


def test_defaults_are_the_notebooks():
    spec = ModelSpec()
    assert (spec.layers, spec.activations, spec.loss, spec.reduction, spec.dtype, spec.lr) == (
        (2, 4, 1), ("tanh", "sigmoid"), "sel", "sum", "float64", 0.001)


def test_param_names_follow_the_notebook_for_any_depth():
    shapes = ModelSpec(layers=(2, 8, 3, 1), activations=("relu", "tanh", "sigmoid")).param_shapes()
    assert shapes == {"w0": (2, 8), "b0": (1, 8), "w1": (8, 3), "b1": (1, 3), "w2": (3, 1), "b2": (1, 1)}


@pytest.mark.parametrize("kwargs, message", [
    ({"activations": ("tanh", "softmax")}, "unknown activation 'softmax'"),
    ({"activations": ("tanh",)}, "need 2 activations"),
    ({"layers": (2, 0, 1)}, "layers must be"),
    ({"reduction": "max"}, "unknown reduction 'max'"),
    ({"dtype": "float8"}, "unknown dtype 'float8'"),
    ({"lr": 0.0}, "lr must be"),
    ({"lr": -1.0}, "lr must be"),
    ({"lr": math.nan}, "lr must be"),
    ({"lr": math.inf}, "lr must be"),
])
def test_bad_spec_is_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec(**kwargs)
