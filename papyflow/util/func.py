"""The PaPy library of ready worker functions, and stream loaders and dumpers.

A worker function takes the ``inbox`` first: the tuple of the results of the
upstream Pipers, one element per upstream Piper, followed by its own arguments.
Two kinds of functions live here:

- *item functions* (``ipasser``, ``sjoiner``, ``pickle_dumps``, ``dump_item``
  and so on) pass, join, zip, serialize, print or hand over items; they are
  Worker functions used inside Pipers.
- *stream functions* load an input stream from a file handle (``load_stream``,
  ``load_pickle_stream``, ``make_lines``), called once to make the input
  iterable of a pipeline, or dump each item into one (``dump_stream``,
  ``dump_pickle_stream``), at a pipeline's end. Only one process may write a
  handle, so a dumper belongs in a non-parallel Piper.

Where data is written, ``bytes`` and ``str`` are both accepted; ``str`` is
encoded as UTF-8 for a binary handle and ``bytes`` decoded as UTF-8 for a text
handle.

>>> ipasser((1, 2, 3), i=1)
2
>>> sjoiner(('a', 'b', 'c'), s=(0, 2), join='-')
'a-c'
"""

from __future__ import annotations

import codecs
import io
import json
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, AnyStr, cast

from ._check import first, index_set, optional_count, positive_number, text
from ._items import Locator, dump_item, load_item

__all__ = [
    "Locator",
    "dump_item",
    "dump_pickle_stream",
    "dump_stream",
    "ipasser",
    "json_dumps",
    "json_loads",
    "load_item",
    "load_pickle_stream",
    "load_stream",
    "make_lines",
    "njoiner",
    "npasser",
    "nzipper",
    "pickle_dumps",
    "pickle_loads",
    "plugger",
    "print_",
    "sjoiner",
    "spasser",
    "szipper",
]


# -- passing, zipping, joining ------------------------------------------------------


def plugger(inbox: Sequence[Any]) -> None:
    """Return nothing: a sink that ends a branch of the pipeline."""


def ipasser(inbox: Sequence[Any], i: int = 0) -> Any:
    """Pass the ``i``-th input of the inbox (by default the first)."""
    _inbox("ipasser", inbox)
    if isinstance(i, bool) or not isinstance(i, int):
        raise TypeError(f"ipasser: i must be an int, got {i!r}")
    if not -len(inbox) <= i < len(inbox):
        raise IndexError(f"ipasser: i={i} is outside an inbox of {len(inbox)} input(s)")
    return inbox[i]


def npasser(inbox: Sequence[Any], n: int | None = None) -> tuple[Any, ...]:
    """Pass the first ``n`` inputs of the inbox (by default all of them) as a tuple."""
    _inbox("npasser", inbox)
    return tuple(inbox[:optional_count("npasser", "n", n)])


def spasser(inbox: Sequence[Any], s: Sequence[int] | None = None) -> tuple[Any, ...]:
    """Pass the inputs whose indices are in ``s`` (by default all), in inbox order."""
    _inbox("spasser", inbox)
    return _select("spasser", inbox, s)


def nzipper(inbox: Sequence[Any], n: int | None = None) -> list[tuple[Any, ...]]:
    """Zip the first ``n`` inputs of the inbox (by default all): ``list(zip(*inbox[:n]))``."""
    _inbox("nzipper", inbox)
    return _zip("nzipper", inbox[:optional_count("nzipper", "n", n)])


def szipper(inbox: Sequence[Any], s: Sequence[int] | None = None) -> list[tuple[Any, ...]]:
    """Zip the inputs whose indices are in ``s`` (by default all), in inbox order."""
    _inbox("szipper", inbox)
    return _zip("szipper", _select("szipper", inbox, s))


def njoiner(inbox: Sequence[AnyStr], n: int | None = None, join: str | bytes = "") -> AnyStr:
    """Join the first ``n`` inputs of the inbox (by default all) with the string ``join``."""
    _inbox("njoiner", inbox)
    return cast(AnyStr, _join("njoiner", inbox[:optional_count("njoiner", "n", n)], join))


def sjoiner(inbox: Sequence[AnyStr], s: Sequence[int] | None = None,
            join: str | bytes = "") -> AnyStr:
    """Join the inputs whose indices are in ``s`` (by default all) with the string ``join``."""
    _inbox("sjoiner", inbox)
    return cast(AnyStr, _join("sjoiner", _select("sjoiner", inbox, s), join))


def print_(inbox: Sequence[Any]) -> None:
    """Print the first element of the inbox to standard output."""
    print(first("print_", inbox), flush=True)


def _inbox(where: str, inbox: Any) -> None:
    if isinstance(inbox, (str, bytes)) or not isinstance(inbox, Sequence):
        raise TypeError(f"{where}: inbox must be a tuple of inputs, got {type(inbox).__name__}")


def _select(where: str, inbox: Sequence[Any], s: Any) -> tuple[Any, ...]:
    chosen = index_set(where, "s", s, len(inbox))
    return tuple(item for i, item in enumerate(inbox) if i in chosen)


def _zip(where: str, inputs: Sequence[Any]) -> list[tuple[Any, ...]]:
    for i, item in enumerate(inputs):
        if not hasattr(item, "__iter__"):
            raise TypeError(f"{where}: every input must be iterable, input {i} is "
                            f"{type(item).__name__}")
    return list(zip(*inputs))


def _join(where: str, inputs: Sequence[Any], join: Any) -> Any:
    if not isinstance(join, (str, bytes)):
        raise TypeError(f"{where}: join must be a str or bytes, got {join!r}")
    if inputs and all(isinstance(item, bytes) for item in inputs):
        # Bytes inputs are joined as bytes; a str separator is encoded to match.
        return (join.encode("utf-8") if isinstance(join, str) else join).join(inputs)
    if all(isinstance(item, str) for item in inputs):
        return (join.decode("utf-8") if isinstance(join, bytes) else join).join(inputs)
    kinds = sorted({type(item).__name__ for item in inputs})
    raise TypeError(f"{where}: the joined inputs must be all str or all bytes, got {kinds}")


# -- serialization ------------------------------------------------------------------


def pickle_dumps(inbox: Sequence[Any]) -> bytes:
    """Serialize the first element of the inbox with pickle's highest protocol."""
    return pickle.dumps(first("pickle_dumps", inbox), pickle.HIGHEST_PROTOCOL)


def pickle_loads(inbox: Sequence[Any]) -> Any:
    """Deserialize the first element of the inbox from a pickle (trusted data only)."""
    data = first("pickle_loads", inbox)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"pickle_loads: inbox[0] must be bytes, got {type(data).__name__}")
    return pickle.loads(data)


def json_dumps(inbox: Sequence[Any]) -> str:
    """Serialize the first element of the inbox as a JSON string."""
    return json.dumps(first("json_dumps", inbox))


def json_loads(inbox: Sequence[Any]) -> Any:
    """Deserialize the first element of the inbox from a JSON ``str`` or ``bytes``."""
    data = first("json_loads", inbox)
    if not isinstance(data, (str, bytes, bytearray)):
        raise TypeError(f"json_loads: inbox[0] must be str or bytes, got {type(data).__name__}")
    return json.loads(data)


# -- streams ------------------------------------------------------------------------


def dump_stream(inbox: Sequence[Any], handle: IO[Any], delimiter: str | None = None) -> Any:
    """Write the first element of the inbox to ``handle``, followed by a delimiter line.

    The item is followed by ``"\\n" + delimiter + "\\n"``; the default delimiter
    is empty, which separates items by a blank line. Returns the handle's
    ``name`` (``None`` for a handle without one). Read the stream back with
    :func:`load_stream` and the same delimiter.
    """
    item = first("dump_stream", inbox)
    delimiter = text("dump_stream", "delimiter", delimiter) or ""
    if "\n" in delimiter:
        raise ValueError(f"dump_stream: delimiter must be one line, got {delimiter!r}")
    binary = _is_binary("dump_stream", handle)
    handle.write(_coerce("dump_stream", item, binary))
    handle.write(_coerce("dump_stream", f"\n{delimiter}\n", binary))
    return getattr(handle, "name", None)


def load_stream(handle: IO[AnyStr], delimiter: str | None = None) -> Iterator[AnyStr]:
    """Yield the items of a stream written by :func:`dump_stream` with this delimiter.

    With a delimiter, an item is everything between two delimiter lines, less
    the newline :func:`dump_stream` added, so items round-trip exactly unless
    they contain the delimiter line. With the default (``None``), items are
    separated by blank lines: runs of blank lines are skipped and lines within
    an item keep their newlines except the last. A last item without a
    delimiter after it is yielded too, and a last delimiter line without a
    newline still ends an item. A binary handle yields ``bytes``.
    """
    delimiter = text("load_stream", "delimiter", delimiter) or ""
    if "\n" in delimiter:
        raise ValueError(f"load_stream: delimiter must be one line, got {delimiter!r}")
    return _items_of(handle, delimiter, _reading("load_stream", handle))


def _items_of(handle: IO[Any], delimiter: str, binary: bool) -> Iterator[Any]:
    newline: Any = b"\n" if binary else "\n"
    empty: Any = b"" if binary else ""
    end: Any = _coerce("load_stream", delimiter + "\n", binary)
    # Only the last line of a file can lack its newline: a delimiter there still counts.
    ends = (end, end[:-1])
    lines: list[Any] = []
    while True:
        line = handle.readline()
        if not line or line in ends:
            if lines:
                item = empty.join(lines)
                yield item[:-1] if item.endswith(newline) else item
            lines = []
            if not line:
                return
        else:
            lines.append(line)


def dump_pickle_stream(inbox: Sequence[Any], handle: IO[bytes]) -> None:
    """Append the first element of the inbox to a binary ``handle`` as one pickle."""
    item = first("dump_pickle_stream", inbox)
    if not _is_binary("dump_pickle_stream", handle):
        raise TypeError("dump_pickle_stream: handle must be open in binary mode ('wb')")
    pickle.dump(item, handle, pickle.HIGHEST_PROTOCOL)


def load_pickle_stream(handle: IO[bytes]) -> Iterator[Any]:
    """Yield the objects of a binary stream written by :func:`dump_pickle_stream`.

    Unpickling runs code chosen by whoever wrote the stream: read trusted files only.
    """
    if not _is_binary("load_pickle_stream", handle):
        raise TypeError("load_pickle_stream: handle must be open in binary mode ('rb')")
    return _pickles_of(handle)


def _pickles_of(handle: IO[bytes]) -> Iterator[Any]:
    while True:
        try:
            yield pickle.load(handle)
        except EOFError:
            return


def make_lines(handle: IO[AnyStr], follow: bool = False, wait: float = 0.1, *,
               stop: threading.Event | None = None,
               timeout: float | None = None) -> Iterator[AnyStr]:
    """Yield the lines of ``handle``; with ``follow``, keep reading as it grows (``tail -f``).

    Without ``follow`` the generator ends at end-of-file. With ``follow`` it
    polls every ``wait`` seconds for new data and ends when the ``stop`` event
    is set, when no new data came for ``timeout`` seconds (if given), or when
    it is closed. A line is yielded only once its newline has been written;
    an unfinished last line is yielded when the generator ends.

    Following a seekable text file, the handle's binary buffer is read and
    decoded here, so that a character whose bytes are only partly written yet
    waits for the rest; lines are read as ``open`` reads them by default
    (``newline=None``: ``"\\r\\n"`` and ``"\\r"`` end lines and become
    ``"\\n"``), with the handle's ``encoding`` and ``errors``.
    """
    if not isinstance(follow, bool):
        raise TypeError(f"make_lines: follow must be a bool, got {follow!r}")
    wait = positive_number("make_lines", "wait", wait)
    if timeout is not None:
        timeout = positive_number("make_lines", "timeout", timeout)
    if stop is not None and not isinstance(stop, threading.Event):
        raise TypeError(f"make_lines: stop must be a threading.Event or None, got {stop!r}")
    _reading("make_lines", handle)
    return _lines_of(handle, follow, wait, stop, timeout)


def _lines_of(handle: IO[Any], follow: bool, wait: float, stop: threading.Event | None,
              timeout: float | None) -> Iterator[Any]:
    read, finish = _line_reader(handle, follow)
    pending: Any = None  # the start of a line whose writer has not written its newline yet
    last_data = time.monotonic()
    while True:
        data = read()
        if data is not None:
            last_data = time.monotonic()
            lines, pending = _split_lines(data if pending is None else pending + data)
            yield from lines
            continue
        # End of the data written so far.
        if not follow or (stop is not None and stop.is_set()):
            break
        if timeout is not None and time.monotonic() - last_data >= timeout:
            break
        if stop is not None:
            stop.wait(wait)
        else:
            time.sleep(wait)
    try:
        rest = finish()
    except UnicodeDecodeError:
        # A character cut short for good: the line before it still comes out.
        if pending is not None:
            yield pending
        raise
    if rest:
        lines, pending = _split_lines(rest if pending is None else pending + rest)
        yield from lines
    if pending is not None:
        yield pending


# How many bytes a followed text file is read in at a time.
_FOLLOW_CHUNK = 1 << 16


def _line_reader(handle: IO[Any], follow: bool) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Return ``read`` (new data, or ``None`` at the end of what is written) and ``finish``.

    ``finish`` returns what is left when reading ends (``None`` if nothing).
    """
    decoder = _follow_decoder(handle) if follow else None
    if decoder is None:
        return (lambda: handle.readline() or None), (lambda: None)
    buffer = handle.buffer  # type: ignore[attr-defined]

    def read() -> str | None:
        chunk = buffer.read1(_FOLLOW_CHUNK)
        return decoder.decode(chunk) if chunk else None

    return read, lambda: decoder.decode(b"", final=True)


def _follow_decoder(handle: Any) -> io.IncrementalNewlineDecoder | None:
    """Return a decoder to follow a text handle through its binary buffer, or ``None``.

    At the end of a file a text handle decodes as if the file were complete,
    so a character a writer has written only part of fails to decode (or turns
    into U+FFFD). An incremental decoder holds the part back instead. Reading
    the buffer directly needs the buffer to be where the handle is: a seekable
    handle can be put there, after which nothing it read ahead is lost.
    """
    buffer: Any = getattr(handle, "buffer", None)
    encoding = getattr(handle, "encoding", None)
    if not (isinstance(encoding, str) and hasattr(buffer, "read1")
            and hasattr(buffer, "tell")):
        return None
    try:
        if not handle.seekable():
            return None  # a pipe: reads wait for data, so the handle decodes correctly
        handle.seek(handle.tell())  # drops what the handle read ahead
        if handle.tell() != buffer.tell():
            return None  # a position inside the decoder's state: leave it to the handle
    except (OSError, ValueError):  # e.g. "telling position disabled by next() call"
        return None
    decoder = codecs.getincrementaldecoder(encoding)(getattr(handle, "errors", None) or "strict")
    return io.IncrementalNewlineDecoder(decoder, translate=True)


def _split_lines(data: Any) -> tuple[list[Any], Any]:
    """Return the complete lines at the start of ``data`` and the rest (``None`` if empty)."""
    newline = b"\n" if isinstance(data, bytes) else "\n"
    end = data.rfind(newline) + 1
    lines = [part + newline for part in data[:end - 1].split(newline)] if end else []
    return lines, data[end:] or None


def _reading(where: str, handle: Any) -> bool:
    """Check that ``handle`` is a file open for reading; return whether it is binary."""
    if not hasattr(handle, "readline"):
        raise TypeError(f"{where}: handle must be a file open for reading, got {handle!r}")
    return _is_binary(where, handle)


def _is_binary(where: str, handle: Any) -> bool:
    if isinstance(handle, io.TextIOBase):
        return False
    if isinstance(handle, (io.RawIOBase, io.BufferedIOBase)):
        return True
    mode = getattr(handle, "mode", None)
    if isinstance(mode, str):
        return "b" in mode
    if not (hasattr(handle, "write") or hasattr(handle, "readline")):
        raise TypeError(f"{where}: handle must be an open file, got {handle!r}")
    return False


def _coerce(where: str, data: Any, binary: bool) -> Any:
    if isinstance(data, str):
        return data.encode("utf-8") if binary else data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data) if binary else bytes(data).decode("utf-8")
    raise TypeError(f"{where}: inbox[0] must be str or bytes, got {type(data).__name__}")
