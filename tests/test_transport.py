"""Messages between a worker and its parent: the same values, each array's bytes out of the pickle."""
import threading
from multiprocessing import Pipe

import numpy as np
import pytest

from harness.running import transport


def _through_a_pipe(message):
    """Sent on one end by a thread (a large message fills the pipe), received on the other."""
    here, there = Pipe()
    sender = threading.Thread(target=transport.send, args=(there, message))
    sender.start()
    try:
        return transport.receive(here)
    finally:
        sender.join()
        here.close()
        there.close()


def test_every_kind_of_array_and_value_arrives_equal_and_writable():
    grid = np.arange(24.0).reshape(4, 6)
    message = ("ok", {"longdouble": np.linspace(0, 1, 7, dtype=np.longdouble), "strided": grid[:, ::2],
                      "transposed": grid.T, "fortran": np.asfortranarray(grid), "empty": np.zeros((0, 3)),
                      "scalar": np.float32(1.5), "zero-d": np.array(2.0), "objects": np.array([1, "a"], dtype=object),
                      "complex": np.array([1 + 2j], np.clongdouble), "big": np.random.default_rng(0).random(3_000_000),
                      "plain": [1, "two", None, 3.5]})
    got = _through_a_pipe(message)
    assert got[0] == "ok" and got[1].keys() == message[1].keys()
    for key, value in message[1].items():
        if isinstance(value, np.ndarray):
            assert got[1][key].dtype == value.dtype and got[1][key].shape == value.shape, key
            assert np.array_equal(got[1][key], value) or value.dtype == object and list(got[1][key]) == list(value)
            assert got[1][key].flags.writeable, key
        else:
            assert got[1][key] == value, key


def test_a_large_array_is_not_copied_into_the_pickle():
    big = np.ones(1_000_000)
    buffers = []
    import pickle

    head = pickle.dumps(("ok", big), protocol=5, buffer_callback=buffers.append)
    assert len(head) < 1_000 and sum(b.raw().nbytes for b in buffers) == big.nbytes


def test_a_sender_that_goes_away_mid_message_is_an_eof():
    here, there = Pipe()
    there.send_bytes(__import__("pickle").dumps((b"", [100])))  # a head that promises 100 bytes, then nothing
    there.close()
    with pytest.raises(EOFError, match="0 bytes into 100"):
        transport.receive(here)


def test_what_cannot_be_pickled_raises_before_anything_is_written():
    here, there = Pipe()
    with pytest.raises(Exception):  # noqa: B017 -- pickle's own error, whatever its class
        transport.send(there, lambda: None)
    assert not here.poll(0.05)
