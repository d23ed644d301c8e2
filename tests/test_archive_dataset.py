"""DataSet: lazily loaded named data on disk, read-only mode, and writers that never clobber."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import papyflow.archive.dataset as dataset_module
from papyflow.archive import (
    ArchiveError,
    CorruptDataError,
    DataSet,
    DataSetError,
    LockTimeoutError,
    ReadOnlyError,
    UnarchivableError,
    restore,
)

REPO = Path(__file__).resolve().parent.parent


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- the reference example ---------------------------------------------------------------------

def test_data_and_info_are_stored_and_read_back(tmp_path):
    ds = DataSet("results", "w", path=tmp_path)
    ds.nxs = [10, 20]
    ds.mus = [1.2, 2.5]
    ds["nxs"] = "Particle numbers"
    ds["mus"] = "Chemical potentials"
    names = [ds._insert(np.ones(nx) * mu, info=(nx, mu)) for mu in (1.2, 2.5) for nx in (10, 200)]
    assert names == ["x_0", "x_1", "x_2", "x_3"]
    assert repr(ds) == (f"DataSet({str(tmp_path / 'results')!r}) containing "
                        f"['nxs', 'mus', 'x_0', 'x_1', 'x_2', 'x_3']")

    again = DataSet("results", path=tmp_path)
    assert [(k, again[k]) for k in sorted(again)] == [
        ("mus", "Chemical potentials"), ("nxs", "Particle numbers"), ("x_0", (10, 1.2)),
        ("x_1", (200, 1.2)), ("x_2", (10, 2.5)), ("x_3", (200, 2.5))]
    assert again.nxs == [10, 20] and len(again) == 6 and "x_3" in again
    np.testing.assert_array_equal(again.x_3, np.full(200, 2.5))
    assert again._info_dict["x_0"] == (10, 1.2)
    assert "x_2" in dir(again)
    # Arrays above array_threshold (100 elements) are in .npz files, the rest inline.
    assert [n for n in files(tmp_path / "results") if n.endswith(".npz")][0].startswith("x_1.")
    assert sum(n.endswith(".npz") for n in files(tmp_path / "results")) == 2


def test_infos_may_be_any_archivable_object(tmp_path):
    ds = DataSet("infos", "w", path=tmp_path)
    ds._insert(1, info=np.arange(3))
    ds.x_0 = 2  # keeps the info, which an array makes hard to compare
    ds["x_0"] = {"grid": np.ones(2)}
    assert ds.x_0 == 2 and list(DataSet("infos", path=tmp_path)["x_0"]["grid"]) == [1, 1]


def test_data_is_loaded_only_when_asked_for_and_never_cached(tmp_path):
    ds = DataSet("lazy", "w", path=tmp_path)
    ds.a = [1]
    ds.big = np.arange(1000)
    ds["big"] = "a big one"
    # Break the data file: opening, listing and infos must not read it.
    (tmp_path / "lazy" / "big.py").write_text("raise RuntimeError('big.py was loaded')\n")
    reader = DataSet("lazy", path=tmp_path)
    assert list(reader) == ["a", "big"] and reader["big"] == "a big one"
    with pytest.raises(RuntimeError, match="big.py was loaded"):
        _ = reader.big
    first = reader.a
    first.append(2)  # mutating a loaded value writes nothing...
    assert reader.a == [1] and reader.a is not reader.a
    ds.a = first  # ...assigning it does
    assert reader.a == [1, 2]


def test_a_data_set_is_an_importable_package(tmp_path, monkeypatch):
    ds = DataSet("as_package_ds", "w", path=tmp_path)
    ds._insert({"k": 1}, info="first")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import as_package_ds
        assert as_package_ds._info_dict == {"x_0": "first"}
        assert restore(tmp_path / "as_package_ds" / "x_0.py") == {"x_0": {"k": 1}}
    finally:
        sys.modules.pop("as_package_ds", None)


def test_overwriting_replaces_the_data_and_removes_its_old_array_file(tmp_path):
    ds = DataSet("over", "w", path=tmp_path)
    ds.a = np.zeros(500)
    ds["a"] = "kept"
    old = [n for n in files(tmp_path / "over") if n.endswith(".npz")]
    ds.a = np.ones(500)
    new = [n for n in files(tmp_path / "over") if n.endswith(".npz")]
    assert len(old) == len(new) == 1 and old != new
    assert ds.a.sum() == 500 and ds["a"] == "kept"
    ds.a = 3  # no array any more: no array file either
    assert files(tmp_path / "over") == [".lock", "__init__.py", "a.py"]


def test_deleting_a_name_removes_it_and_its_files(tmp_path):
    ds = DataSet("gone", "w", path=tmp_path)
    ds.a = np.zeros(500)
    ds.b = 1
    del ds.a
    assert list(ds) == ["b"] and files(tmp_path / "gone") == [".lock", "__init__.py", "b.py"]
    with pytest.raises(AttributeError, match="no data named 'a'"):
        del ds.a


def test_synchronized_readers_see_other_writers_and_unsynchronized_ones_do_not(tmp_path):
    writer = DataSet("sync", "w", path=tmp_path)
    live = DataSet("sync", path=tmp_path)
    frozen = DataSet("sync", path=tmp_path, synchronize=False)
    writer.a = 1
    assert "a" in live and live.a == 1
    assert "a" not in frozen


# -- refusals ----------------------------------------------------------------------------------

def test_a_read_only_data_set_refuses_every_change(tmp_path):
    DataSet("ro", "w", path=tmp_path).a = 1
    ds = DataSet("ro", path=tmp_path)
    attempts = [lambda: setattr(ds, "a", 2), lambda: setattr(ds, "b", 2),
                lambda: ds.__setitem__("a", "info"), lambda: delattr(ds, "a"),
                lambda: ds._insert(5)]
    for attempt in attempts:
        with pytest.raises(ReadOnlyError, match="read-only mode") as info:
            attempt()
        assert isinstance(info.value, ValueError) and isinstance(info.value, ArchiveError)
    assert ds.a == 1 and list(ds) == ["a"]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(module_name="1bad"), ValueError, "module_name"),
    (dict(module_name="ok", mode="rw"), ValueError, "mode"),
    (dict(module_name="ok", mode="w", path=3), TypeError, "path"),
    (dict(module_name="ok", mode="w", array_threshold=-1), ValueError, "array_threshold"),
    (dict(module_name="ok", mode="w", name_prefix="_x"), ValueError, "name_prefix"),
    (dict(module_name="ok", mode="w", timeout=-1), ValueError, "timeout"),
    (dict(module_name="missing"), FileNotFoundError, "mode='w' creates it"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, error, match):
    kwargs.setdefault("path", tmp_path)
    with pytest.raises(error, match=match):
        DataSet(**kwargs)


def test_bad_names_and_unknown_names_are_refused(tmp_path):
    ds = DataSet("names", "w", path=tmp_path)
    ds.a = 1
    for name in ("class", "1a", "a-b"):
        with pytest.raises(ValueError, match="data name"):
            setattr(ds, name, 1)
    with pytest.raises(ValueError, match="data name"):
        ds._insert(1, name="_hidden")
    with pytest.raises(ValueError, match="data name.*NFKC"):
        setattr(ds, "\ufb01le", 1)  # noqa: B010 - Python reads ds.\ufb01le as ds.file
    with pytest.raises(ValueError, match="data name.*NFKC"):
        ds._insert(1, name="\ufb01le")
    with pytest.raises(AttributeError, match=r"no data named 'nope'.*start with '_'"):
        _ = ds.nope
    assert not hasattr(ds, "close")
    with pytest.raises(KeyError, match="no data named 'nope'"):
        ds["nope"]
    with pytest.raises(KeyError, match="assign ds.nope first"):
        ds["nope"] = "info"


def test_a_value_that_cannot_be_archived_leaves_the_old_one(tmp_path):
    ds = DataSet("keep", "w", path=tmp_path)
    ds.a = [1, 2]
    before = {p.name: p.read_bytes() for p in (tmp_path / "keep").iterdir()}
    with pytest.raises(UnarchivableError, match="generator"):
        ds.a = (i for i in range(3))
    with pytest.raises(UnarchivableError):
        ds._insert((i for i in range(3)))
    with pytest.raises(UnarchivableError):
        ds["a"] = (i for i in range(3))
    assert ds.a == [1, 2] and list(ds) == ["a"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "keep").iterdir()} == before


def test_a_write_that_fails_half_way_leaves_the_old_data(tmp_path, monkeypatch):
    ds = DataSet("crash", "w", path=tmp_path)
    ds.a = np.zeros(300)

    def broken(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(dataset_module, "atomic_write_text", broken)
    with pytest.raises(OSError, match="disk full"):
        ds.a = np.ones(300)
    monkeypatch.undo()
    assert DataSet("crash", path=tmp_path).a.sum() == 0
    assert not [n for n in files(tmp_path / "crash") if n.endswith(".tmp")]


def test_foreign_directories_and_files_are_refused(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataSetError, match="holds other files"):
        DataSet("busy", "w", path=tmp_path)
    (tmp_path / "afile").write_text("")
    with pytest.raises(DataSetError, match="a file is there"):
        DataSet("afile", "w", path=tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("raise SystemExit('ran')\n")
    with pytest.raises(CorruptDataError, match="not a papyflow DataSet index") as info:
        DataSet("pkg", path=tmp_path)
    assert info.value.filename.endswith("__init__.py")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_missing_or_broken_data_files_are_named(tmp_path):
    ds = DataSet("broken", "w", path=tmp_path)
    ds.a, ds.b = 1, 2
    (tmp_path / "broken" / "a.py").unlink()
    (tmp_path / "broken" / "b.py").write_text("b = (\n")
    with pytest.raises(CorruptDataError, match="a.py") as info:
        _ = ds.a
    assert info.value.filename.endswith("a.py")
    with pytest.raises(CorruptDataError, match="b.py.*SyntaxError"):
        _ = ds.b
    ds.c = np.zeros(300)
    next((tmp_path / "broken").glob("c.*.npz")).unlink()
    with pytest.raises(CorruptDataError, match=r"array file .*c\.\w+\.npz.* of data 'c'"):
        _ = ds.c
    (tmp_path / "broken" / "__init__.py").unlink()
    with pytest.raises(CorruptDataError, match="index"):
        list(ds)


def leftover(directory: Path, target: str) -> Path:
    """A temporary named as a writer killed while writing ``target`` leaves it."""
    fd, name = tempfile.mkstemp(prefix=f".{target}.", suffix=".tmp", dir=directory)
    os.close(fd)
    return Path(name)


def test_a_writer_killed_while_creating_the_data_set_leaves_nothing_in_the_way(tmp_path):
    (tmp_path / "new").mkdir()
    left = leftover(tmp_path / "new", "__init__.py")
    with pytest.raises(FileNotFoundError, match="no data set"):
        DataSet("new", path=tmp_path)
    ds = DataSet("new", "w", path=tmp_path)
    ds.a = 1
    assert not left.exists() and files(tmp_path / "new") == [".lock", "__init__.py", "a.py"]
    assert DataSet("new", path=tmp_path).a == 1


def test_writers_remove_what_killed_writers_left_and_nothing_else(tmp_path):
    ds = DataSet("left", "w", path=tmp_path)
    ds.a = np.zeros(300)
    where = tmp_path / "left"
    stale = [leftover(where, "a.py"), leftover(where, "a.0123abcd.npz"),
             leftover(where, "__init__.py")]
    foreign = [leftover(where, "notes.txt"), leftover(where, "_x.py")]
    reader = DataSet("left", path=tmp_path)
    assert all(path.exists() for path in stale)  # readers never remove anything
    assert reader.a.sum() == 0
    DataSet("left", "w", path=tmp_path)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in foreign)
    (tmp_path / "other").mkdir()
    leftover(tmp_path / "other", "__init__.py")
    kept = leftover(tmp_path / "other", "notes.txt")
    with pytest.raises(DataSetError, match="holds other files"):
        DataSet("other", "w", path=tmp_path)
    assert kept.exists()


def test_no_writer_sweeps_while_another_holds_the_lock(tmp_path):
    with DataSet("busy_lock", "w", path=tmp_path, synchronize=False) as holder:
        holder.a = 1
        left = leftover(tmp_path / "busy_lock", "a.py")
        with pytest.raises(LockTimeoutError):
            DataSet("busy_lock", "w", path=tmp_path, timeout=0.1)
        assert left.exists()
    DataSet("busy_lock", "w", path=tmp_path)
    assert not left.exists()


def test_a_reader_racing_a_writer_sees_the_old_datum_the_new_one_or_none(tmp_path,
                                                                          monkeypatch):
    writer = DataSet("race", "w", path=tmp_path)
    writer.small, writer.big, writer.swapped = [1], np.zeros(300), np.zeros(300)
    # A reader whose index was read before the deletion, as any reader's may be.
    stale = DataSet("race", path=tmp_path, synchronize=False)
    del writer.small
    with pytest.raises(AttributeError, match="no data named 'small'"):
        _ = stale.small
    # Deleted, or replaced, after the reader read the .py file and before it opened
    # the array file that file names.
    reader = DataSet("race", path=tmp_path)
    real_run = dataset_module.run

    def run_with_a_writer_between(text, filename, *args, **kwargs):
        if filename.endswith("big.py") and "big" in writer:
            del writer.big
        if filename.endswith("swapped.py") and writer["swapped"] is None:
            writer.swapped = np.ones(300)
            writer["swapped"] = "replaced"
        return real_run(text, filename, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "run", run_with_a_writer_between)
    with pytest.raises(AttributeError, match="no data named 'big'"):
        _ = reader.big
    assert reader.swapped.sum() == 300


# -- locking -----------------------------------------------------------------------------------

def test_an_unsynchronized_writer_holds_the_lock_until_closed(tmp_path):
    with DataSet("held", "w", path=tmp_path, synchronize=False) as holder:
        holder.a = 1
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match=r"\.lock.*timeout=0.2") as info:
            DataSet("held", "w", path=tmp_path, timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert time.monotonic() - started > 0.15  # it waited for the lock
        assert DataSet("held", path=tmp_path).a == 1  # readers do not wait
    other = DataSet("held", "w", path=tmp_path, timeout=0.2)
    other.b = 2
    assert list(other) == ["a", "b"]


def test_a_synchronized_write_waits_for_the_lock(tmp_path):
    writer = DataSet("wait", "w", path=tmp_path, timeout=0.2)
    holder = DataSet("wait", "w", path=tmp_path, synchronize=False)
    with pytest.raises(LockTimeoutError):
        writer.a = 1
    assert "a" not in writer
    holder._close()
    holder._close()  # closing twice is harmless
    writer.a = 1
    assert writer.a == 1


def test_threads_writing_at_once_lose_nothing(tmp_path):
    shared = DataSet("threads", "w", path=tmp_path)
    errors: list[BaseException] = []

    def write(who: int, own: bool) -> None:
        try:
            ds = DataSet("threads", "w", path=tmp_path) if own else shared
            for i in range(8):
                ds._insert([who, i], info=who)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(who, who % 2 == 0)) for who in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    reader = DataSet("threads", path=tmp_path)
    values = sorted(tuple(getattr(reader, name)) for name in reader)
    assert values == sorted((who, i) for who in range(4) for i in range(8))


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from papyflow.archive import DataSet

    where, who = Path(sys.argv[1]), sys.argv[2]
    ds = DataSet("shared", "w", path=where, timeout=30)
    (where / f"ready-{who}").touch()
    deadline = time.monotonic() + 30
    while not (where / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    for i in range(12):
        ds._insert(np.full(150, i), info=(who, i))
        ds.last = (who, i)
    print("done")
""")


def test_two_processes_writing_at_once_never_clobber(tmp_path):
    (tmp_path / "writer.py").write_text(WRITER)
    DataSet("shared", "w", path=tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    writers = [subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(tmp_path),
                                 who], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for who in "ab"]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{w}").exists() for w in "ab"):
            assert time.monotonic() < deadline, "the writers did not start"
            assert all(w.poll() is None for w in writers), writers[0].communicate()
            time.sleep(0.005)
        (tmp_path / "go").touch()
        outputs = [w.communicate(timeout=60) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.communicate()
    assert [w.returncode for w in writers] == [0, 0], outputs
    ds = DataSet("shared", path=tmp_path)
    numbered = [name for name in ds if name.startswith("x_")]
    assert len(numbered) == 24
    assert sorted(ds[name] for name in numbered) == sorted(
        (who, i) for who in "ab" for i in range(12))
    for name in numbered:
        np.testing.assert_array_equal(getattr(ds, name), np.full(150, ds[name][1]))
    assert ds.last in {("a", 11), ("b", 11)}
    left = files(tmp_path / "shared")
    assert not [n for n in left if n.endswith(".tmp")]
    assert sum(n.endswith(".npz") for n in left) == 24
