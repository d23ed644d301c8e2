"""Database views: the View conventions, the Runner and its index cache, the data
units of outputs (DatabaseOutputDataSource) and the DatabaseTester."""

from __future__ import annotations

import collections
import json
import os
import pathlib
from pathlib import Path

import numpy as np
import pytest

from papyflow.blocks.database import (
    Database,
    DatabaseTester,
    Runner,
    View,
    ViewDefinition,
)
from papyflow.blocks.errors import BlockError
from papyflow.dataflow._indices import equal_value_ranges
from papyflow.dataflow.data import (
    DatabaseOutputDataSource,
    data_index_db_path,
    load_data_index_db,
)
from papyflow.formats.baseformat import baseformat
from papyflow.formats.dataformat import DataFormat
from tests.database_helpers import make_prefix

Entry = collections.namedtuple("Entry", ["client", "sample"])


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    return make_prefix(tmp_path / "prefix")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """The root folder given to the views: they count their index() calls in it."""
    folder = tmp_path / "raw"
    folder.mkdir()
    return folder


def index_calls(raw: Path) -> int:
    calls = raw / "index_calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def runner_of(prefix: Path, raw: Path, protocol: str = "main", name: str = "train",
              **options) -> Runner:
    return Database(prefix, "db/1").view(protocol, name, root_folder=str(raw), **options)


def make_runner(view_class: type, outputs: dict[str, str], parameters=None,
                exc: type[Exception] | None = None) -> Runner:
    """A runner of a view class defined in a test (no database around it)."""
    module = type("Module", (), {view_class.__name__: view_class})
    definition = ViewDefinition("test/1", "p", "s", view_class.__name__,
                                parameters or {}, outputs)
    return Runner(module, definition, [], None, exc)


# -- data units from runs of equal values -------------------------------------------------------


def test_equal_value_ranges():
    assert equal_value_ranges([1, 1, 2, 2, 2, 1]).tolist() == [[0, 1], [2, 4], [5, 5]]
    assert equal_value_ranges([]).shape == (0, 2)
    assert equal_value_ranges([[1, 2], [1, 2], [3]]).tolist() == [[0, 1], [2, 2]]
    arrays = [np.zeros(2), np.zeros(2), np.zeros(3), np.ones(3)]
    assert equal_value_ranges(arrays).tolist() == [[0, 1], [2, 2], [3, 3]]


# -- the View base class --------------------------------------------------------------------------


class Minimal(View):
    """Only what a view must define."""

    def index(self, root_folder, parameters):
        return [Entry(0, 0)]

    def get(self, output, index):
        return {"value": 0.0}


def test_a_view_without_get_is_refused_naming_it(tmp_path):
    class IndexOnly(View):
        def index(self, root_folder, parameters):
            return [Entry(0, 0)]

    with pytest.raises(BlockError, match="abstract method get"):
        make_runner(IndexOnly, {"client": "system/float64/1"})


def test_the_view_base_class():
    with pytest.raises(TypeError, match="abstract methods get, index"):
        View()
    view = Minimal()
    assert view.get_output_mapping("client") == "client"
    objs = [Entry(0, 0), Entry(0, 1), Entry(1, 2)]
    assert view.setup("/raw", {"a": 1}, objs) is True
    assert (view.root_folder, view.parameters, view.objs) == ("/raw", {"a": 1}, objs)
    assert (view.start_index, view.end_index) == (0, 2)
    view.setup("/raw", {}, objs, 1, 1)
    assert (view.start_index, view.end_index) == (1, 1)


# -- the runner and its index cache ---------------------------------------------------------------


def test_index_is_computed_once_and_cached(prefix, raw, tmp_path):
    index_file = tmp_path / "cache" / "db" / "train.index.json"
    runner = runner_of(prefix, raw)
    entries = runner.index(index_file)
    assert index_calls(raw) == 1
    assert [(e.client, e.sample) for e in entries] == [(0, 0), (0, 1), (1, 100), (1, 101),
                                                       (2, 200), (2, 201)]
    assert entries[0]._fields == ("client", "sample", "features")
    assert type(entries[0]).__name__ == "Entry"
    assert runner.objects() is entries
    assert runner.index(index_file) is entries  # the same file: nothing read again
    assert os.listdir(index_file.parent) == ["train.index.json"]  # no temporary file left
    content = json.loads(index_file.read_text())
    assert content["source"] == {"database": "db/1", "protocol": "main", "set": "train",
                                 "view": "Clients", "parameters": {"clients": 3, "samples": 2}}
    assert content["fields"] == ["client", "sample", "features"]
    assert content["entries"][1] == [0, 1, [0.0, 1.0, 0.5]]
    # another runner, from another Database, reads the file and does not call index()
    again = runner_of(prefix, raw)
    assert again.index(index_file) == entries
    again.setup(index_file)
    assert index_calls(raw) == 1


def test_setup_indexes_when_the_file_is_missing(prefix, raw, tmp_path):
    runner = runner_of(prefix, raw)
    with pytest.raises(RuntimeError, match="call index"):
        runner.objects()
    assert runner.setup(tmp_path / "index.json") is True
    assert runner.ready and index_calls(raw) == 1
    assert len(runner.objects()) == 6
    assert runner.obj.seen_range == (None, None)
    assert (runner.obj.start_index, runner.obj.end_index) == (0, 5)
    assert (tmp_path / "index.json").is_file()
    assert repr(runner) == "<Runner of database view db/1 main/train (Clients), ready>"


def test_setup_passes_the_range_to_the_view(prefix, raw, tmp_path):
    runner = runner_of(prefix, raw)
    runner.setup(tmp_path / "index.json", 2, 3)
    assert runner.obj.seen_range == (2, 3)
    assert (runner.start_index, runner.end_index) == (2, 3)
    assert len(runner.obj.objs) == 6  # the whole index: data indices stay positions in it
    assert runner.get("client", 0) == {"id": 0}
    with pytest.raises(IndexError, match=r"data indices 4\.\.9 are not within its index, 0\.\.5"):
        runner.setup(tmp_path / "index.json", 4, 9)
    assert not runner.ready


def test_the_view_sees_the_index_as_read_from_the_cache(tmp_path):
    Tupled = collections.namedtuple("Tupled", ["key", "pair"])

    class Tuples(View):
        def index(self, root_folder, parameters):
            return [Tupled(np.int64(1), (1, 2)), Tupled(np.int64(2), (3, 4))]

        def get(self, output, index):
            return {"value": float(self.objs[index].key)}

    runner = make_runner(Tuples, {"key": "system/float64/1"})
    entries = runner.index(tmp_path / "index.json")
    assert entries[0].pair == [1, 2] and type(entries[0].key) is int
    assert type(entries[0]).__name__ == "Tupled"


def test_an_index_file_of_another_view_is_refused(prefix, raw, tmp_path):
    index_file = tmp_path / "index.json"
    runner_of(prefix, raw).index(index_file)
    with pytest.raises(ValueError, match=r"index\.json: this index was made for .*\"train\".*"
                                         r"not for .*\"eval\".*give each view its own"):
        runner_of(prefix, raw, name="eval").index(index_file)
    index_file.write_text("{not json")
    with pytest.raises(ValueError, match="not a view index file: invalid JSON"):
        runner_of(prefix, raw).index(index_file)
    index_file.write_text('{"entries": []}')
    with pytest.raises(ValueError, match=r"index\.json: not a view index file$"):
        runner_of(prefix, raw).index(index_file)
    other = tmp_path / "other.json"
    runner_of(prefix, raw).index(other)
    content = json.loads(other.read_text())
    content["entries"][2] = [1]
    other.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="entry 2 is not a list of 3 values"):
        runner_of(prefix, raw).index(other)
    content["version"] = 99
    other.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="view index version 99"):
        runner_of(prefix, raw).index(other)


def test_get(prefix, raw, tmp_path):
    runner = runner_of(prefix, raw)
    with pytest.raises(RuntimeError, match="call setup"):
        runner.get("client", 0)
    runner.setup(tmp_path / "index.json")
    assert runner.get("client", 2) == {"id": 1}
    sample = runner.get("sample", 3)
    assert sample["id"] == 101 and sample["features"] == [1.0, 1.0, 0.5]
    with pytest.raises(KeyError, match=r"has no output 'image' \(outputs: client, sample\)"):
        runner.get("image", 0)
    with pytest.raises(IndexError, match=r"data index 6 is outside 0\.\.5"):
        runner.get("client", 6)
    assert runner.outputs == {"client": "test/client/1", "sample": "test/sample/1"}
    assert runner.parameters == {"clients": 3, "samples": 2}


def test_data_indices_follow_the_output_mapping(prefix, raw, tmp_path):
    runner = runner_of(prefix, raw)
    runner.index(tmp_path / "train.json")
    assert runner.data_indices("client") == [(0, 1), (2, 3), (4, 5)]
    assert runner.data_indices("sample") == [(i, i) for i in range(6)]
    mapped = runner_of(prefix, raw, protocol="mapped", name="all")
    mapped.index(tmp_path / "mapped.json")
    assert mapped.get_output_mapping("person") == "client"
    assert mapped.data_indices("person") == [(0, 1), (2, 3)]
    with pytest.raises(KeyError, match="has no output 'client'"):
        mapped.data_indices("client")


def test_saved_data_indices_are_what_load_data_index_db_reads(prefix, raw, tmp_path):
    runner = runner_of(prefix, raw)
    runner.index(tmp_path / "index.json")
    cache = str(tmp_path / "cache")
    path = runner.save_data_indices("client", cache, "ab/cd/client.data")
    assert path == data_index_db_path(cache, "ab/cd/client.data")
    assert path == os.path.join(cache, "ab", "cd", "client.indices.json")
    assert load_data_index_db(cache, "ab/cd/client.data") == [(0, 1), (2, 3), (4, 5)]
    runner.save_data_indices("sample", cache, "ab/cd/sample")
    assert load_data_index_db(cache, "ab/cd/sample") == [(i, i) for i in range(6)]


# -- errors of the view's code --------------------------------------------------------------------


class Failing(View):
    def index(self, root_folder, parameters):
        if parameters.get("fail") == "index":
            raise OSError("no raw data")
        return [Entry(0, 0), Entry(0, 1)]

    def setup(self, root_folder, parameters, objs, start_index=None, end_index=None):
        super().setup(root_folder, parameters, objs, start_index, end_index)
        return parameters.get("fail") != "setup"

    def get(self, output, index):
        return {"value": self.objs[index].missing}


class Custom(Exception):
    pass


def test_errors_of_the_view_code_name_the_view_and_the_method(tmp_path):
    runner = make_runner(Failing, {"client": "system/float64/1"}, {"fail": "index"})
    with pytest.raises(BlockError, match=r"Failing.*index\(\) raised OSError: no raw data") as info:
        runner.index(tmp_path / "a.json")
    assert info.value.method == "index" and "Traceback" in info.value.traceback
    assert isinstance(info.value.__cause__, OSError)
    assert not (tmp_path / "a.json").exists()
    runner = make_runner(Failing, {"client": "system/float64/1"}, {"fail": "setup"})
    with pytest.raises(BlockError, match=r"setup\(\) returned False; it returns True"):
        runner.setup(tmp_path / "b.json")
    runner = make_runner(Failing, {"client": "system/float64/1"}, exc=Custom)
    runner.setup(tmp_path / "c.json")
    with pytest.raises(Custom, match=r"get\(\) raised AttributeError: .*'missing'"):
        runner.get("client", 0)


def test_a_missing_view_class(tmp_path):
    definition = ViewDefinition("test/1", "p", "s", "Nope", {}, {"client": "system/float64/1"})
    with pytest.raises(BlockError, match="no view class 'Nope'"):
        Runner(type("Module", (), {}), definition, [], None)
    with pytest.raises(Custom, match="no view class 'Nope'"):
        Runner(type("Module", (), {}), definition, [], None, Custom)


def test_an_index_that_breaks_the_conventions(tmp_path):
    Other = collections.namedtuple("Other", ["client"])

    def view_returning(entries):
        class Bad(View):
            def index(self, root_folder, parameters):
                return entries

            def get(self, output, index):  # not called here
                return {}
        return make_runner(Bad, {"client": "system/float64/1"})

    cases = [
        ({"a": 1}, "index() must return a list of named tuples, not dict"),
        ([(0, 1)], "index() entry 0 is a tuple, not a named tuple"),
        ([Entry(0, 0), Other(1)], ("index() entry 1 has the fields ['client'], entry 0 has "
                                  "['client', 'sample']: every entry must have the same fields")),
        ([Entry(0, pathlib.Path("a.png"))], ("index() entry 0, field 'sample': a PosixPath is "
                                            "not a JSON value (store a path or an id, not the "
                                            "data)")),
    ]
    for k, (entries, message) in enumerate(cases):
        with pytest.raises(BlockError) as info:
            view_returning(entries).index(tmp_path / f"{k}.json")
        assert str(info.value) == f"database view test/1 p/s (Bad): {message}"
        assert info.value.method == "index"
        assert not (tmp_path / f"{k}.json").exists()


def test_an_output_without_its_field(tmp_path):
    class Unmapped(View):
        def index(self, root_folder, parameters):
            return [Entry(0, 0)]

        def get(self, output, index):  # not called here
            return {}

    runner = make_runner(Unmapped, {"image": "system/float64/1"})
    runner.index(tmp_path / "index.json")
    with pytest.raises(BlockError, match="output 'image' follows the field 'image', which the "
                                         "index entries do not have "
                                         r"\(fields: client, sample\)"):
        runner.data_indices("image")


# -- the units of outputs --------------------------------------------------------------------------


def test_database_outputs_as_data_sources(prefix, raw, tmp_path):
    runner = runner_of(prefix, raw)
    runner.setup(tmp_path / "index.json")
    client = DatabaseOutputDataSource()
    assert client.setup(runner, "client", "test/client/1", str(prefix))
    sample = DatabaseOutputDataSource()
    sample.setup(runner, "sample", "test/sample/1", str(prefix))
    # a coarse output: one unit per client; a fine one: one unit per entry
    assert client.data_indices() == [(0, 1), (2, 3), (4, 5)]
    assert sample.data_indices() == [(i, i) for i in range(6)]
    record, start, end = client[1]
    assert isinstance(record, baseformat) and type(record)._name == "test/client/1"
    assert (int(record.id), start, end) == (1, 2, 3)
    record, start, end = sample.getAtDataIndex(5)
    assert (int(record.id), record.label, start, end) == (201, "c2", 5, 5)
    assert record.features.tolist() == [2.0, 1.0, 0.5]
    assert (float(record.where.x), float(record.where.y)) == (2.0, 0.0)
    assert [int(r.id) for r, _, _ in client] == [0, 1, 2]
    # a window of data indices keeps the units that overlap it
    window = DatabaseOutputDataSource()
    window.setup(runner, "client", "test/client/1", str(prefix), 1, 2)
    assert window.data_indices() == [(0, 1), (2, 3)]
    packed = DatabaseOutputDataSource()
    packed.setup(runner, "client", "test/client/1", str(prefix), pack=True)
    assert packed[2][0] == DataFormat(prefix, "test/client/1").type(id=2).pack()


def test_data_sources_follow_the_output_mapping(prefix, raw, tmp_path):
    runner = runner_of(prefix, raw, protocol="mapped", name="all")
    runner.setup(tmp_path / "index.json")
    person = DatabaseOutputDataSource()
    person.setup(runner, "person", "test/client/1", str(prefix))
    assert [(int(r.id), s, e) for r, s, e in person] == [(0, 0, 1), (1, 2, 3)]


def test_a_data_source_over_a_view_whose_index_lacks_the_field(tmp_path):
    class Holder:
        def objects(self):
            return [Entry(0, 0)]

        def get_output_mapping(self, output):
            return output

        def get(self, output, index):
            return {"value": 0.0}

    with pytest.raises(ValueError, match="database output 'image': the view's index entries "
                                         "have no field 'image'"):
        DatabaseOutputDataSource().setup(Holder(), "image", "system/float64/1", str(tmp_path))


# -- the tester ------------------------------------------------------------------------------------

FORMATS = {"client": "test/client/1", "sample": "test/sample/1"}


def clients_view(sizes=(2, 2, 2), interleave=False):
    """A view class of clients with ``sizes[c]`` samples each."""
    Row = collections.namedtuple("Row", ["client", "sample"])

    class Generated(View):
        def index(self, root_folder, parameters):
            rows = [Row(c, c * 100 + s) for c, n in enumerate(sizes) for s in range(n)]
            if interleave:
                rows.sort(key=lambda row: row.sample % 100)
            return rows

        def get(self, output, index):
            row = self.objs[index]
            if output == "client":
                return {"id": row.client}
            return {"id": row.sample, "features": [0.0, 1.0, 2.0], "label": "x",
                    "where": {"x": 0.0, "y": 0.0}}

    return Generated


def test_the_tester_passes_a_good_view(prefix, tmp_path):
    report = tmp_path / "report.txt"
    tester = DatabaseTester("clients", clients_view(), FORMATS, {}, prefix=prefix,
                            report=report)
    assert tester.ok and tester.errors == [], tester.errors
    assert tester.combinations == [("client",), ("sample",), ("client", "sample")]
    assert tester.intervals == {"client": 2, "sample": 1}
    assert tester.units == {"client": 3, "sample": 6} and tester.size == 6
    text = report.read_text()
    assert "output client (test/client/1): 3 units, every 2" in text
    assert "== clients, with client, sample connected" in text
    assert '  client [2..3]: {"id": 1}' in text
    assert text.endswith("no problem found\n")
    assert repr(tester) == "<DatabaseTester 'clients': ok>"
    only_all = DatabaseTester("clients", clients_view(), FORMATS, {}, prefix=prefix,
                              all_combinations=False)
    assert only_all.ok and only_all.combinations == [("client", "sample")]
    summary = only_all.report_text()  # without a report file: no steps, the summary only
    assert "step" not in summary and summary.endswith("no problem found\n")


def test_the_tester_finds_an_unsorted_index(prefix):
    tester = DatabaseTester("mixed", clients_view(interleave=True), FORMATS, {}, prefix=prefix)
    assert not tester.ok
    assert tester.errors[0] == ("mixed: output 'client': the value 0 of field 'client' makes "
                                "the units 0..0 and 3..3, not one: sort the index so that "
                                "equal values are consecutive")
    assert tester.combinations == []  # the view is not run with a broken index


def test_the_tester_reports_irregular_outputs(prefix, tmp_path):
    tester = DatabaseTester("uneven", clients_view((1, 3, 2)), FORMATS, {}, prefix=prefix)
    assert tester.errors == [("uneven: output 'client' is irregular: its units span 1 to 3 data "
                             "indices (list it in irregular_outputs if that is intended)")]
    assert tester.intervals == {"client": None, "sample": 1}
    declared = DatabaseTester("uneven", clients_view((1, 3, 2)), FORMATS, {},
                              irregular_outputs=["client"], prefix=prefix)
    assert declared.ok, declared.errors
    unknown = DatabaseTester("uneven", clients_view(), FORMATS, {},
                             irregular_outputs=["clients"], prefix=prefix)
    assert unknown.errors == [("uneven: irregular_outputs names 'clients', which is not an "
                              "output (client, sample)")]


def test_the_tester_finds_outputs_whose_units_do_not_nest(tmp_path):
    Row = collections.namedtuple("Row", ["a", "b"])

    class Crossing(View):
        def index(self, root_folder, parameters):
            return [Row(0, 0), Row(0, 1), Row(1, 1), Row(1, 2)]

        def get(self, output, index):
            return {"value": float(getattr(self.objs[index], output))}

    outputs = {"a": "system/float64/1", "b": "system/float64/1"}
    tester = DatabaseTester("crossing", Crossing, outputs, {}, irregular_outputs=["b"])
    assert tester.errors == [
        ("crossing: outputs 'a' and 'b' are not consistent: a unit of 'a' ends at data index 1, "
        "inside a unit of 'b', and a unit of 'b' ends at 0, inside a unit of 'a': one output's "
        "units must be made of the other's")]


def test_the_tester_finds_data_that_does_not_fit_the_format(prefix, tmp_path):
    Row = collections.namedtuple("Row", ["client", "sample"])

    class WrongData(View):
        def index(self, root_folder, parameters):
            return [Row(c, s) for c in range(2) for s in range(2 * c, 2 * c + 2)]

        def get(self, output, index):
            if output == "client":
                return {"id": "one"}
            return {"id": 1}  # the other fields are missing

    report = tmp_path / "report.txt"
    tester = DatabaseTester("wrong", WrongData, FORMATS, {}, prefix=prefix,
                            all_combinations=False, report=report)
    assert len(tester.errors) == 6  # 2 units of 'client', 3 of 'sample', then a count
    assert tester.errors[-1] == ("wrong, with client, sample connected: output 'sample': "
                                 "1 more failures")
    assert tester.errors[0].startswith("wrong, with client, sample connected: output 'client', "
                                       "data indices 0..1: FieldValueError: ")
    assert "'id'" in tester.errors[0]
    assert tester.errors[1].startswith("wrong, with client, sample connected: output 'sample', "
                                       "data indices 0..0: MissingFieldError: ")
    assert "!! wrong, with client, sample connected: output 'client'" in report.read_text()


def test_the_tester_finds_a_get_that_depends_on_another_output(prefix):
    Row = collections.namedtuple("Row", ["client", "sample"])

    class Stateful(View):
        """Remembers the client last asked for, and uses it for the samples."""

        current = -1

        def index(self, root_folder, parameters):
            return [Row(c, c * 10 + s) for c in range(2) for s in range(2)]

        def get(self, output, index):
            row = self.objs[index]
            if output == "client":
                self.current = row.client
                return {"id": row.client}
            return {"id": row.sample, "features": [0.0, 0.0, 0.0], "label": str(self.current),
                    "where": {"x": 0.0, "y": 0.0}}

    tester = DatabaseTester("stateful", Stateful, FORMATS, {}, prefix=prefix)
    assert tester.errors == [
        ("stateful, with client, sample connected: output 'sample' gives other data at data "
        "indices 0..0 than with sample connected: its get() must not depend on calls for "
        "other outputs")]


def test_the_tester_reports_views_that_fail(prefix):
    class NoIndex(View):
        def index(self, root_folder, parameters):
            raise FileNotFoundError("raw data")

        def get(self, output, index):  # not called here
            return {}

    tester = DatabaseTester("failing", NoIndex, FORMATS, {}, prefix=prefix)
    assert len(tester.errors) == 1
    assert tester.errors[0].startswith("failing: indexing failed: BlockError: ")
    assert "index() raised FileNotFoundError: raw data" in tester.errors[0]

    class Empty(View):
        def index(self, root_folder, parameters):
            return []

        def get(self, output, index):  # not called here
            return {}

    assert DatabaseTester("empty", Empty, FORMATS, {}, prefix=prefix).errors == [
        "empty: the index is empty: no output produces data"]

    class NotReady(clients_view()):
        def setup(self, *args, **kwargs):
            return False

    tester = DatabaseTester("not ready", NotReady, FORMATS, {}, prefix=prefix,
                            all_combinations=False)
    assert tester.errors == [
        ("not ready, with client, sample connected: setup failed: BlockError: database view "
        "not ready (NotReady): setup() returned False; it returns True once the view is ready")]


def test_the_tester_checks_the_dataformats(tmp_path):
    tester = DatabaseTester("formats", clients_view(), {"client": "test/nope/1",
                                                        "sample": "system/float64/1"}, {})
    assert len(tester.errors) == 1
    assert tester.errors[0].startswith("formats: output 'client': dataformat 'test/nope/1' does "
                                       "not load: ")
    assert tester.combinations == []


def test_a_view_may_return_records_of_its_own(tmp_path):
    Record = DataFormat([], "system/float64/1").type  # another load: another record class

    class Records(View):
        def index(self, root_folder, parameters):
            return [Entry(0, 0), Entry(0, 1)]

        def get(self, output, index):
            return Record(value=index + 0.5)

    runner = make_runner(Records, {"sample": "system/float64/1"})
    runner.setup(tmp_path / "index.json")
    source = DatabaseOutputDataSource()
    source.setup(runner, "sample", "system/float64/1", str(tmp_path))
    assert type(source[1][0]) is not Record and float(source[1][0].value) == 1.5


def test_the_tester_refuses_what_cannot_be_tested(prefix):
    # No output: nothing would be run, and the view would pass.
    assert DatabaseTester("none", clients_view(), {}, {}, prefix=prefix).errors == [
        "none: outputs_declaration is empty: no output to test"]
    # A dataformat that is not a name: an error naming the output, like one that does not load.
    tester = DatabaseTester("formats", clients_view(), {**FORMATS, "client": 5}, {},
                            prefix=prefix)
    assert tester.errors == [("formats: output 'client': the dataformat must be a name "
                              "'user/name/version', not 5")]
    # An instance given for the class.
    with pytest.raises(TypeError, match=r"view_class: expected the view class \(a View "
                                        r"subclass\), got an instance of Generated"):
        DatabaseTester("instance", clients_view()(), FORMATS, {}, prefix=prefix)
