"""papyflow.util.func: passers, joiners, serializers, streams, and items handed over."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mmap
import os
import pickle
import subprocess
import sys
import threading
import time

import psutil
import pytest

from numap import NuMap
from papyflow.util import _items
from papyflow.util.func import (
    Locator,
    dump_item,
    dump_pickle_stream,
    dump_stream,
    ipasser,
    json_dumps,
    json_loads,
    load_item,
    load_pickle_stream,
    load_stream,
    make_lines,
    njoiner,
    npasser,
    nzipper,
    pickle_dumps,
    pickle_loads,
    plugger,
    print_,
    sjoiner,
    spasser,
    szipper,
)

TYPES = ("file", "fifo", "socket")


def _item_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("papyflow-")]


def _listening() -> set[tuple[str, int]]:
    return {tuple(c.laddr) for c in psutil.Process().net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


@pytest.fixture(autouse=True)
def no_leftover_items():
    """Fail a test that leaves an item-serving thread or a listening socket behind."""
    listening = _listening()
    yield
    deadline = time.monotonic() + 3.0
    while _item_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _item_threads(), f"threads left behind: {_item_threads()}"
    assert not _items._serving
    assert _listening() <= listening


@pytest.fixture
def empty_dir(tmp_path):
    """A directory for dumped items that must be empty again after the test."""
    folder = tmp_path / "items"
    folder.mkdir()
    yield folder
    assert list(folder.iterdir()) == []


# -- passing, zipping, joining ------------------------------------------------------


def test_passers():
    inbox = ("a", "b", "c")
    assert plugger(inbox) is None
    assert ipasser(inbox) == "a"
    assert ipasser(inbox, i=2) == "c"
    assert ipasser(inbox, i=-1) == "c"
    assert npasser(inbox) == inbox
    assert npasser(inbox, n=2) == ("a", "b")
    assert npasser(inbox, n=0) == ()
    assert spasser(inbox) == inbox
    assert spasser(inbox, s=(2, 0)) == ("a", "c")  # inbox order, as in PaPy
    assert spasser(inbox, s=[]) == ()


def test_zippers_and_joiners():
    inbox = ([1, 2, 3], "xyz", (7, 8, 9))
    assert nzipper(inbox) == [(1, "x", 7), (2, "y", 8), (3, "z", 9)]
    assert nzipper(inbox, n=2) == [(1, "x"), (2, "y"), (3, "z")]
    assert szipper(inbox, s=(0, 2)) == [(1, 7), (2, 8), (3, 9)]
    assert szipper(inbox) == nzipper(inbox)
    words = ("ab", "cd", "ef")
    assert njoiner(words) == "abcdef"
    assert njoiner(words, n=2, join="+") == "ab+cd"
    assert sjoiner(words, s=(0, 2), join=", ") == "ab, ef"
    assert sjoiner((b"ab", b"cd"), join="-") == b"ab-cd"
    assert njoiner(("ab", "cd"), join=b"/") == "ab/cd"
    assert njoiner(()) == ""


def test_print_(capsys):
    assert print_(("hello", "ignored")) is None
    assert capsys.readouterr().out == "hello\n"


@pytest.mark.parametrize("call, error, words", [
    (lambda: ipasser(("a",), i=1), IndexError, "i=1"),
    (lambda: ipasser(("a",), i="0"), TypeError, "i must be an int"),
    (lambda: ipasser("abc"), TypeError, "inbox must be a tuple"),
    (lambda: npasser(("a",), n=1.5), TypeError, "n must be an int"),
    (lambda: spasser(("a", "b"), s=(0, 5)), IndexError, "s holds index 5"),
    (lambda: spasser(("a",), s="0"), TypeError, "s must be a sequence"),
    (lambda: spasser(("a",), s=(True,)), TypeError, "s must hold ints"),
    (lambda: nzipper(([1], 2)), TypeError, "input 1 is int"),
    (lambda: njoiner(("a", b"b")), TypeError, "all str or all bytes"),
    (lambda: njoiner(("a",), join=1), TypeError, "join must be"),
    (lambda: sjoiner(("a",), s=(3,)), IndexError, "s holds index 3"),
    (lambda: print_(()), ValueError, "inbox is empty"),
])
def test_passer_errors_name_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


# -- serialization ------------------------------------------------------------------


def test_pickle_and_json_round_trips():
    obj = {"a": [1, 2.5, None], "b": "ü"}
    assert pickle_loads((pickle_dumps((obj,)),)) == obj
    text = json_dumps((obj,))
    assert isinstance(text, str)
    assert json_loads((text,)) == obj
    assert json_loads((text.encode(),)) == obj
    with pytest.raises(TypeError, match="pickle_loads: inbox"):
        pickle_loads(("not bytes",))
    with pytest.raises(TypeError, match="json_loads: inbox"):
        json_loads((3,))
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_dumps(({1, 2},))


# -- streams ------------------------------------------------------------------------

ITEMS = ["one", "two\nlines", "", "ends with newline\n", "a\n\nblank line inside"]


@pytest.mark.parametrize("binary", [False, True])
def test_delimited_stream_round_trips_exactly(tmp_path, binary):
    path = tmp_path / "stream.txt"
    with open(path, "wb" if binary else "w") as handle:
        for item in ITEMS:
            # str and bytes are both accepted, whatever the handle's mode
            assert dump_stream((item.encode() if binary else item,), handle, "END") == str(path)
        dump_stream(("bytes into text",) if binary else (b"bytes into text",), handle, "END")
    with open(path, "rb" if binary else "r") as handle:
        got = list(load_stream(handle, delimiter="END"))
    expected = ITEMS + ["bytes into text"]
    assert got == ([e.encode() for e in expected] if binary else expected)


def test_blank_line_delimited_stream():
    handle = io.StringIO()
    for item in ("first", "second\nitem", "third\n"):
        assert dump_stream((item,), handle) is None  # a StringIO has no name
    assert handle.getvalue() == "first\n\nsecond\nitem\n\nthird\n\n\n"
    handle.seek(0)
    # Paragraphs: runs of blank lines are skipped, so a trailing newline is lost.
    assert list(load_stream(handle)) == ["first", "second\nitem", "third"]
    # A last item without a delimiter after it is not lost.
    assert list(load_stream(io.StringIO("a\nb\n\n\n\nc\nd"))) == ["a\nb", "c\nd"]
    assert list(load_stream(io.BytesIO(b"x\nEND\ny\n"), delimiter="END")) == [b"x", b"y"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("binary", [False, True])
def test_a_last_delimiter_line_without_a_newline_ends_the_last_item(binary):
    def load(data: str) -> list:
        handle = io.BytesIO(data.encode()) if binary else io.StringIO(data)
        items = list(load_stream(handle, "END"))
        return [item.decode() for item in items] if binary else items

    assert load("a\nEND\nb\nEND") == ["a", "b"]
    assert load("a\nEND\nb\nENDS") == ["a", "b\nENDS"]  # not the delimiter line


@pytest.mark.timeout(30)
def test_load_stream_checks_its_handle_when_called():
    # Like load_pickle_stream: a path instead of a handle fails at the call,
    # not later at the first item.
    with pytest.raises(TypeError, match="load_stream: handle must be a file open for reading"):
        load_stream("items.txt")


def test_stream_errors():
    with pytest.raises(ValueError, match="delimiter must be one line"):
        dump_stream(("x",), io.StringIO(), delimiter="a\nb")
    with pytest.raises(ValueError, match="delimiter must be one line"):
        load_stream(io.StringIO(), delimiter="\n")
    with pytest.raises(TypeError, match="dump_stream: inbox"):
        dump_stream((3,), io.StringIO())
    with pytest.raises(TypeError, match="delimiter must be a str"):
        dump_stream(("x",), io.StringIO(), delimiter=3)


def test_pickle_stream_round_trip(tmp_path):
    objects = [1, "two", {"three": [3]}, None, b"\x00five"]
    with open(tmp_path / "objects.pickle", "wb") as handle:
        for obj in objects:
            dump_pickle_stream((obj,), handle)
    with open(tmp_path / "objects.pickle", "rb") as handle:
        assert list(load_pickle_stream(handle)) == objects
    with pytest.raises(TypeError, match="binary mode"):
        dump_pickle_stream((1,), io.StringIO())
    with pytest.raises(TypeError, match="binary mode"):
        load_pickle_stream(io.StringIO())


# -- make_lines ---------------------------------------------------------------------


def test_make_lines_stops_at_end_of_file(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("a\nb\nno newline")
    with open(path) as handle:
        assert list(make_lines(handle)) == ["a\n", "b\n", "no newline"]
    with open(path, "rb") as handle:
        assert next(make_lines(handle)) == b"a\n"


def test_make_lines_follows_a_growing_file(tmp_path):
    path = tmp_path / "growing.log"
    path.write_text("start\n")
    stop = threading.Event()
    written = threading.Event()

    def append() -> None:
        with open(path, "a") as out:
            for i in range(5):
                time.sleep(0.03)
                out.write(f"line {i}\n")
                out.flush()
            # Half a line, then its end: it must come out whole.
            out.write("half ")
            out.flush()
            time.sleep(0.05)
            out.write("and half\n")
            out.flush()
        written.set()

    writer = threading.Thread(target=append)
    writer.start()
    got = []
    with open(path) as handle:
        for line in make_lines(handle, follow=True, wait=0.01, stop=stop):
            got.append(line)
            if line == "half and half\n":
                stop.set()
    writer.join(5)
    assert written.is_set()
    assert got == ["start\n"] + [f"line {i}\n" for i in range(5)] + ["half and half\n"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("errors", ["strict", "replace"])
def test_make_lines_follows_a_character_split_across_writes(tmp_path, errors):
    # A writer's write can end inside a UTF-8 character; the reader must wait
    # for the rest of it rather than decode half of it at end of file.
    path = tmp_path / "split.log"
    u_umlaut, e_acute = "\u00fc".encode(), "\u00e9".encode()
    path.write_bytes(b"header\r\nstart\n" + u_umlaut[:1])
    stop = threading.Event()

    def append() -> None:
        with open(path, "ab", buffering=0) as out:
            for chunk in (u_umlaut[1:] + b"\r\n" + e_acute[:1], e_acute[1:] + b"\nlast\n"):
                time.sleep(0.1)
                out.write(chunk)

    writer = threading.Thread(target=append)
    with open(path, encoding="utf-8", errors=errors) as handle:
        assert handle.readline() == "header\n"  # the handle reads ahead: nothing is lost
        writer.start()
        got = []
        for line in make_lines(handle, follow=True, wait=0.01, stop=stop):
            got.append(line)
            if line == "last\n":
                stop.set()
    writer.join(5)
    assert got == ["start\n", "\u00fc\n", "\u00e9\n", "last\n"]


@pytest.mark.timeout(30)
def test_make_lines_yields_the_line_before_a_character_cut_short_for_good(tmp_path):
    path = tmp_path / "cut.log"
    path.write_bytes(b"whole\ncut short " + "\u00fc".encode()[:1])
    with open(path, encoding="utf-8") as handle:
        lines = make_lines(handle, follow=True, wait=0.01, timeout=0.1)
        assert next(lines) == "whole\n"
        assert next(lines) == "cut short "
        with pytest.raises(UnicodeDecodeError):
            next(lines)


def test_make_lines_stop_timeout_and_close(tmp_path):
    path = tmp_path / "quiet.log"
    path.write_text("only\n")
    with open(path) as handle:
        started = time.monotonic()
        assert list(make_lines(handle, follow=True, wait=0.01, timeout=0.2)) == ["only\n"]
        assert time.monotonic() - started > 0.15  # it waited for its timeout
    stop = threading.Event()
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    with open(path) as handle:
        assert list(make_lines(handle, follow=True, wait=0.01, stop=stop)) == ["only\n"]
    timer.join()
    with open(path) as handle:
        lines = make_lines(handle, follow=True, wait=0.01)
        assert next(lines) == "only\n"
        lines.close()  # a following generator can always be closed
    with pytest.raises(ValueError, match="wait must be above 0"):
        make_lines(io.StringIO(), wait=0)
    with pytest.raises(TypeError, match="stop must be a threading.Event"):
        make_lines(io.StringIO(), stop=True)
    with pytest.raises(TypeError, match="follow must be a bool"):
        make_lines(io.StringIO(), follow="yes")


# -- dump_item / load_item ----------------------------------------------------------


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("item", [b"some bytes", "str is UTF-8: \u00fc", b"", bytes(range(256))])
def test_item_round_trip(kind, item, empty_dir):
    locator = dump_item((item,), type=kind, dir=empty_dir, timeout=10)
    assert isinstance(locator, Locator) and locator.type == kind
    expected = item.encode() if isinstance(item, str) else item
    assert load_item((locator,), timeout=10) == expected


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_large_item_in_small_chunks(kind, empty_dir):
    item = os.urandom(3 * 2**20)
    locator = dump_item((item,), type=kind, dir=empty_dir, buffer=4096)
    assert load_item((locator,), buffer=1000) == item


def test_file_items_persist_map_and_travel_as_json(tmp_path):
    locator = dump_item((b"persistent",), prefix="pre_", suffix=".bin", dir=tmp_path)
    name = os.path.basename(locator.address)
    assert name.startswith("pre_") and name.endswith(".bin")
    assert os.stat(locator.address).st_mode & 0o777 == 0o600
    assert load_item((locator,), remove=False) == b"persistent"
    mapped = load_item((json.loads(json.dumps(locator)),), type="mmap", remove=False)
    with mapped:
        assert isinstance(mapped, mmap.mmap) and mapped[:4] == b"pers"
    assert load_item((locator,)) == b"persistent"
    assert not os.path.exists(locator.address)
    with pytest.raises(FileNotFoundError, match="no file"):
        load_item((locator,))


def test_fifo_and_socket_items_are_served_once(empty_dir):
    fifo = dump_item((b"once",), type="fifo", dir=empty_dir)
    assert os.stat(fifo.address).st_mode & 0o777 == 0o600
    assert load_item((fifo,)) == b"once"
    with pytest.raises(FileNotFoundError, match="already loaded"):
        load_item((fifo,))
    sock = dump_item((b"once",), type="socket")
    assert sock.address == "127.0.0.1" and len(sock.key) == 32
    assert load_item((sock,)) == b"once"
    deadline = time.monotonic() + 3
    while _item_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ConnectionRefusedError, match="already loaded or expired"):
        load_item((sock,), timeout=2)


def test_a_socket_peer_with_a_wrong_key_gets_nothing(caplog):
    locator = dump_item((b"secret",), type="socket", timeout=10)
    forged = locator._replace(key="0" * 32)
    with caplog.at_level(logging.WARNING, logger="papyflow.util"):
        with pytest.raises(EOFError, match="without sending the item"):
            load_item((forged,), timeout=5)
        assert load_item((locator,), timeout=5) == b"secret"
    assert "wrong key" in caplog.text


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_an_uncollected_item_expires_and_cleans_up(kind, empty_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="papyflow.util"):
        locator = dump_item((b"lost",), type=kind, dir=empty_dir, timeout=0.3)
        deadline = time.monotonic() + 5
        while _item_threads() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not _item_threads()
    assert "not collected within 0.3 s" in caplog.text
    error = FileNotFoundError if kind == "fifo" else ConnectionRefusedError
    with pytest.raises(error):
        load_item((locator,), timeout=2)


@pytest.mark.timeout(30)  # without its timeout, the read would wait for ever
def test_load_item_times_out_on_a_fifo_nobody_writes(tmp_path):
    path = str(tmp_path / "orphan")
    os.mkfifo(path)
    with pytest.raises(TimeoutError, match="no complete item"):
        load_item((("fifo", path, 0, ""),), timeout=0.3)
    assert not os.path.exists(path)


@pytest.mark.parametrize("call, error, words", [
    (lambda d: dump_item((b"x",), type="shm"), ValueError, "type must be one of"),
    (lambda d: dump_item((3,)), TypeError, r"inbox\[0\] must be bytes or str, got int"),
    (lambda d: dump_item(b"x"), TypeError, "inbox must be a tuple"),
    (lambda d: dump_item((b"x",), timeout=0), ValueError, "timeout must be above 0"),
    (lambda d: dump_item((b"x",), timeout="5"), TypeError, "timeout must be a number"),
    (lambda d: dump_item((b"x",), buffer=0), ValueError, "buffer must be at least 1"),
    (lambda d: dump_item((b"x",), prefix=1), TypeError, "prefix must be a str"),
    (lambda d: dump_item((b"x",), dir=d / "missing"), NotADirectoryError, "dir"),
    (lambda d: load_item(("file", "/x", 0),), TypeError, "must be a locator"),
    (lambda d: load_item((("shm", "/x", 0, ""),)), ValueError, "locator's type"),
    (lambda d: load_item((("file", "/x", 0, ""),), type="str"), ValueError, "'string' or 'mmap'"),
    (lambda d: load_item((("fifo", "/x", 0, ""),), type="mmap"), ValueError, "needs a 'file'"),
    (lambda d: load_item((("socket", "h", 1, "k"),), remove=False), ValueError,
     "remove must be True"),
    (lambda d: load_item((("file", "/x", 0, ""),), timeout=-1), ValueError, "timeout"),
])
def test_item_errors_name_the_argument(call, error, words, tmp_path):
    with pytest.raises(error, match=words):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_load_item_refuses_a_path_that_is_not_a_fifo(tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="is not a fifo"):
        load_item((("fifo", str(path), 0, ""),))
    empty = dump_item((b"",), dir=tmp_path)
    with pytest.raises(ValueError, match="cannot map the empty file"):
        load_item((empty,), type="mmap")
    os.unlink(empty.address)


# -- across processes ---------------------------------------------------------------

_LOADER = """
import hashlib, json, sys
from papyflow.util.func import load_item
for locator in json.loads(sys.argv[1]):
    print(hashlib.sha256(load_item([locator], timeout=30)).hexdigest())
"""


def test_items_dumped_here_load_in_another_process(empty_dir):
    items = [os.urandom(200_000) for _ in TYPES]
    locators = [dump_item((item,), type=kind, dir=empty_dir, timeout=60)
                for item, kind in zip(items, TYPES)]
    done = subprocess.run([sys.executable, "-c", _LOADER, json.dumps(locators)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [hashlib.sha256(item).hexdigest() for item in items]


@pytest.mark.parametrize("kind", TYPES)
def test_items_dumped_by_worker_processes_load_here(kind, empty_dir):
    items = [(f"item {i} ".encode() * 5000,) for i in range(6)]
    with NuMap(dump_item, items, kwargs={"type": kind, "dir": str(empty_dir), "timeout": 60},
               worker_num=2) as locators:
        loaded = [load_item((locator,), timeout=30) for locator in locators]
    assert loaded == [item for (item,) in items]


def test_locators_pickle():
    locator = Locator("socket", "127.0.0.1", 5, "ab")
    assert pickle.loads(pickle.dumps(locator)) == locator
