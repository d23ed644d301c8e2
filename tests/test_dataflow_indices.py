"""Data indices: mixing the ranges of inputs, splitting them, reading cached indices."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from papyflow.dataflow._units import UnitTable
from papyflow.dataflow.data import (
    foundSplitRanges,
    load_data_index,
    load_data_index_db,
    mixDataIndices,
)
from tests.dataflow_helpers import make_prefix, unit_ranges, write_floats


def test_the_reference_examples():
    assert mixDataIndices([[(0, 2), (3, 4)], [(0, 4)]]) == [(0, 2), (3, 4)]
    assert mixDataIndices([[(0, 2), (3, 4)], [(0, 1), (2, 3), (4, 4)]]) == \
        [(0, 1), (2, 2), (3, 3), (4, 4)]


def test_mixing_edge_cases():
    assert mixDataIndices([]) == []
    assert mixDataIndices([[(0, 3)], []]) == []
    assert mixDataIndices([[[5, 9]]]) == [(5, 9)]
    # only the span the inputs have in common
    assert mixDataIndices([[(0, 4), (5, 9)], [(2, 6)]]) == [(2, 4), (5, 6)]


def random_tiling(rng, last):
    cuts = sorted(rng.sample(range(last), rng.randint(0, min(last, 8))))
    starts = [0] + [c + 1 for c in cuts]
    ends = cuts + [last]
    return list(zip(starts, ends, strict=True))


def test_mixing_matches_a_brute_force_walk():
    rng = random.Random(1)
    for _ in range(200):
        last = rng.randint(0, 30)
        lists = [random_tiling(rng, last) for _ in range(rng.randint(1, 4))]
        ends = sorted({end for ranges in lists for _, end in ranges})
        expected = list(zip([0] + [e + 1 for e in ends[:-1]], ends, strict=True))
        assert mixDataIndices(lists) == expected
        # every mixed range lies inside one unit of each input
        for start, end in expected:
            for ranges in lists:
                assert any(s <= start and end <= e for s, e in ranges)


def test_split_ranges_never_cut_a_unit():
    rng = random.Random(2)
    for _ in range(200):
        last = rng.randint(0, 40)
        lists = [random_tiling(rng, last) for _ in range(rng.randint(1, 3))]
        n = rng.randint(1, 6)
        splits = foundSplitRanges(lists, n)
        places = set.intersection(*({e for _, e in ranges} for ranges in lists))
        assert len(splits) <= min(n, len(places))  # at most n, ending only where all end
        assert splits[0][0] == 0 and splits[-1][1] == last
        for (_, end), (start, _) in itertools.pairwise(splits):
            assert start == end + 1
            for ranges in lists:  # a split ends where every input's unit ends
                assert any(e == end for _, e in ranges)
    assert foundSplitRanges([[(i, i) for i in range(100)]], 4) == \
        [(0, 24), (25, 49), (50, 74), (75, 99)]
    assert foundSplitRanges([[(0, 1), (2, 3), (4, 5), (6, 7)], [(0, 3), (4, 7)]], 4) == \
        [(0, 3), (4, 7)]
    assert foundSplitRanges([[]], 2) == []
    with pytest.raises(ValueError, match="n_split must be at least 1"):
        foundSplitRanges([[(0, 1)]], 0)


def test_unit_tables_answer_without_listing_every_unit():
    table = UnitTable.from_ranges([(0, 0), (1, 1), (2, 4), (5, 7), (8, 8), (9, 9), (10, 10)])
    assert list(table.counts) == [2, 2, 3] and len(table) == 7
    assert [table.range(p) for p in range(7)] == [(0, 0), (1, 1), (2, 4), (5, 7), (8, 8),
                                                  (9, 9), (10, 10)]
    assert [table.position_of(i) for i in (-1, 0, 3, 7, 10, 11)] == [-1, 0, 2, 3, 6, -1]
    starts, ends = table.ranges(1, 5)
    assert list(starts) == [1, 2, 5, 8] and list(ends) == [1, 4, 7, 8]
    assert table.window(3, 8) == (2, 5) and table.window(11, 20) == (0, 0)
    sub = table.sub(3, 6)
    assert [sub.range(p) for p in range(len(sub))] == [(5, 7), (8, 8), (9, 9)]


def test_load_data_index_of_a_cached_output(tmp_path):
    prefix = make_prefix(tmp_path / "prefix")
    write_floats(prefix, str(tmp_path / "ab" / "out.data"), unit_ranges(10, length=2),
                 max_file_size=256 + 3 * 8)
    assert load_data_index(str(tmp_path), "ab/out.data") == unit_ranges(10, length=2)
    assert load_data_index(str(tmp_path), "ab/out") == unit_ranges(10, length=2)
    assert load_data_index(str(tmp_path), "ab/none.data") == []


def test_load_data_index_db(tmp_path):
    assert load_data_index_db(str(tmp_path), "db/view.data") == []
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "view.indices.json").write_text(json.dumps([[0, 2], [3, 3]]))
    assert load_data_index_db(str(tmp_path), "db/view.data") == [(0, 2), (3, 3)]
    (tmp_path / "db" / "view.indices.json").write_text(json.dumps([[0, 2], [4, 4]]))
    with pytest.raises(ValueError, match=r"view\.indices\.json: a gap at unit 1"):
        load_data_index_db(str(tmp_path), "db/view.data")
    (tmp_path / "db" / "view.indices.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_data_index_db(str(tmp_path), "db/view")
    (tmp_path / "db" / "view.indices.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match=r"list of \[start, end\] pairs"):
        load_data_index_db(str(tmp_path), "db/view")
