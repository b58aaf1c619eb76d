"""A large network's many check calls go to workers in round trips of bounded size, and the oracle's answers
past a budget wait in a temporary file: neither side holds them all at once."""
import numpy as np
import pytest

from harness.checks.arrays import finite_difference_grads
from harness.running import remote
from harness.running.remote import RemoteImpl, array_bytes, batched, in_round_trips
from harness.running.spill import Answers, digest, pickled_bytes
from harness.running.workers import Worker
from impls.registry import create
from impls.spec import ModelSpec


def test_items_go_in_parts_of_at_most_the_limit_unless_one_alone_is_larger():
    parts = list(in_round_trips([3, 4, 2, 9, 1, 1], lambda n: n, 7))
    assert parts == [[3, 4], [2], [9], [1, 1]]
    assert list(in_round_trips([], lambda n: n, 7)) == []


def test_answers_past_the_budget_are_spilled_and_come_back_equal():
    values = [{"grads": np.arange(1000, dtype=np.longdouble) / (k + 3), "loss": k} for k in range(6)]
    answers = Answers(keep=2 * pickled_bytes(values[0]) + 100)
    for k, value in enumerate(values):
        answers[digest(("truth", k))] = value
    assert len(answers._held) == 2 and answers.held_bytes <= answers.keep and answers.spilled_bytes > 0
    for k, value in enumerate(values):
        back = answers[digest(("truth", k))]
        assert back["loss"] == k and back["grads"].dtype == np.longdouble
        assert np.array_equal(back["grads"], value["grads"])
    answers.close()
    assert digest(("truth", 0)) not in answers


def test_a_digest_follows_values_and_dtypes():
    a = np.linspace(0, 1, 50)
    assert digest(("truth", (a,))) == digest(("truth", (a.copy(),)))
    assert digest(("truth", (a,))) != digest(("truth", (a.astype(np.longdouble),)))
    b = a.copy()
    b[17] = np.nextafter(b[17], 2)
    assert digest(("truth", (a,))) != digest(("truth", (b,)))


def test_a_workers_calls_go_in_bounded_round_trips_made_as_they_are_taken(monkeypatch, data, notebook_params):
    x, y = data
    impl = RemoteImpl(Worker("numpy float64", create, ("numpy", ModelSpec())), 60)
    trips = []
    real = impl.worker.call
    monkeypatch.setattr(impl.worker, "call", lambda fn, args, *rest: trips.append(len(args[0])) or real(fn, args, *rest))
    per_call = array_bytes((notebook_params, x))
    monkeypatch.setattr(remote, "BATCH_BYTES", 3 * per_call)
    made = []

    def calls():
        for k in range(8):
            made.append(k)
            yield "forward", ({n: v + k for n, v in notebook_params.items()}, x)
    found = batched(impl, calls())
    first = next(found)
    assert len(made) <= 4  # one round trip's calls, and the one that did not fit
    rest = list(found)
    assert trips == [3, 3, 2]
    here = create("numpy", ModelSpec())
    expected = [here.forward({n: v + k for n, v in notebook_params.items()}, x) for k in range(8)]
    assert all(np.array_equal(a, b) for a, b in zip([first, *rest], expected))
    impl.worker.close()


def test_finite_differences_make_the_moved_copies_only_as_they_are_sent(monkeypatch, data, notebook_params):
    from harness.checks import arrays

    x, y = data
    impl = create("numpy", ModelSpec())
    made, ahead = [0], []
    real = arrays._moved
    monkeypatch.setattr(arrays, "_moved", lambda *a: made.__setitem__(0, made[0] + 1) or real(*a))

    def forwards(moved):
        for i, m in enumerate(moved):
            ahead.append(made[0] - i)  # copies made but not yet sent
            yield impl.forward(m, x)
    lazily = finite_difference_grads(impl, notebook_params, x, y, 1e-6, 16, forwards)
    whole = finite_difference_grads(impl, notebook_params, x, y, 1e-6, 16)
    assert len(ahead) == 2 * sum(v.size for v in notebook_params.values()) and set(ahead) == {1}
    assert all(np.array_equal(lazily[k], whole[k]) for k in whole)


@pytest.mark.parametrize("keep", [0, 1 << 30])
def test_the_remote_oracles_answers_are_the_same_spilled_or_held(keep, data):
    from harness.running.remote import RemoteOracle
    from harness.truth.oracle import Oracle

    spec = ModelSpec(layers=(2, 8, 1))
    x, y = data
    rng = np.random.default_rng(5)
    states = [{k: rng.standard_normal(shape) for k, shape in spec.param_shapes().items()} for _ in range(3)]
    far = RemoteOracle(spec)
    far._cache = Answers(keep)
    far.prefetch(("truth", (state, x, y), {}) for state in states)
    assert (far._cache.spilled_bytes > 0) == (keep == 0)
    here = Oracle(spec)
    for state in states:
        a, b = far.truth(state, x, y), here.truth(state, x, y)
        assert a.loss == b.loss and all(np.array_equal(a.grads[k], b.grads[k]) for k in b.grads)
    far.worker.close()
