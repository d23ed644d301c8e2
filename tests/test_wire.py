"""Framed messages over pipes: what the process backend sends."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from numap._wire import (
    OUT_OF_BAND_MIN,
    Channel,
    Codec,
    Kind,
    decode,
    encode,
    framed,
    message_bytes,
    pipe,
)


def _roundtrip(parts):
    reader, writer = pipe()
    received = []
    t = threading.Thread(target=lambda: received.append(reader.recv()))
    t.start()
    writer.send(parts)
    t.join(10)
    reader.close()
    writer.close()
    return received[0]


def test_small_payload_roundtrip():
    parts = encode(Kind.BATCH, 3, 7, [1, "two", 3.0])
    assert len(parts) == 1
    frame = decode(_roundtrip(parts))
    assert (frame.kind, frame.task, frame.batch, frame.payload) == (Kind.BATCH, 3, 7,
                                                                     [1, "two", 3.0])


def test_large_arrays_travel_out_of_band_and_come_back_writable():
    arrays = [np.arange(2**20, dtype=np.float64), np.ones((512, 512), order="F")]
    parts = encode(Kind.RESULT, 0, 1, arrays, seconds=0.5)
    assert len(parts) == 3  # the pickle stream and one buffer per array
    frame = decode(_roundtrip(parts))
    assert frame.seconds == 0.5
    for sent, got in zip(arrays, frame.payload):
        np.testing.assert_array_equal(sent, got)
        assert got.flags.writeable
        got += 1  # its own memory


def test_small_arrays_stay_in_band():
    parts = encode(Kind.BATCH, 0, 0, np.zeros(OUT_OF_BAND_MIN // 16))
    assert len(parts) == 1


def test_dill_serves_what_pickle_cannot():
    parts = encode(Kind.TASK, 0, 0, lambda x: x + 1)
    frame = decode(_roundtrip(parts))
    assert frame.payload(1) == 2
    assert parts[0][1] == Codec.DILL


def test_unpicklable_payload_raises():
    with pytest.raises(TypeError):
        encode(Kind.BATCH, 0, 0, [(i for i in ())])


def test_end_of_pipe_is_eof():
    reader, writer = pipe()
    writer.close()
    with pytest.raises(EOFError):
        reader.recv()
    reader.close()


def test_writing_to_a_closed_reader_is_broken_pipe():
    reader, writer = pipe()
    reader.close()
    with pytest.raises(BrokenPipeError):
        writer.send(encode(Kind.BATCH, 0, 0, [1]))
    writer.close()


def test_a_message_larger_than_the_pipe_is_written_in_pieces():
    payload = os.urandom(5 * 2**20)
    frame = decode(_roundtrip(encode(Kind.BATCH, 0, 0, payload)))
    assert frame.payload == payload


def test_room_is_what_a_write_takes_without_waiting():
    reader, writer = pipe()
    try:
        empty = writer.room()
        assert 0 < empty < writer.capacity  # a margin for the pages the bytes take
        message = encode(Kind.BATCH, 0, 0, np.zeros(1 << 14))  # 128 KiB, out of band
        assert message_bytes(message) == sum(view.nbytes for view in framed(message))
        writer.send(message)
        assert writer.room() == empty - message_bytes(message)
        reader.recv()
        assert writer.room() == empty
    finally:
        reader.close()
        writer.close()
    assert Channel(0).room() > 1 << 40  # where the OS tells no capacity: unbounded


def test_room_unknown_when_the_pipe_cannot_be_asked():
    gone = Channel((1 << 30) - 1, capacity=1 << 20)  # no such descriptor: the ioctl fails
    assert gone.room() > 1 << 40  # a write then says the pipe is gone, not room()
    with pytest.raises(OSError):
        gone.send(encode(Kind.BATCH, 0, 0, [1]))
