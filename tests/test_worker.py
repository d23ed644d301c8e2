"""Worker: every construction form, left-to-right composition, errors as values."""

from __future__ import annotations

import pickle

import dill
import numpy as np
import pytest

from papyflow import PiperError, Worker, WorkerError
from tests.pipeline_helpers import add, double, fail_on_three, inc


def test_single_function_with_arguments():
    assert Worker(inc, (10,))((1,)) == 11
    assert Worker(inc, kwargs={"by": 5})((1,)) == 6


def test_functions_compose_left_to_right_with_their_own_arguments():
    w = Worker((inc, double, inc), ((), (), (100,)), ({"by": 2}, {}, {}))
    # inc((1,), by=2) = 3; double((3,)) = 6; inc((6,), 100) = 106
    assert w((1,)) == 106
    assert w.task == (inc, double, inc)
    assert w.args == ((), (), (100,))
    assert w.kwargs == ({"by": 2}, {}, {})


def test_the_first_function_gets_the_whole_inbox():
    assert Worker((add, double))((1, 2, 3)) == 12


def test_from_a_worker_and_from_workers():
    a, b = Worker(inc, (1,)), Worker(double)
    assert Worker(a) == a and Worker(a) is not a
    joined = Worker((a, b))
    assert joined.task == (inc, double) and joined.args == ((1,), ())
    assert joined((4,)) == 10


def test_workers_among_functions_join_in_place_and_their_errors_stay_theirs():
    # A Worker in a sequence of functions brings its own steps: its failure is
    # the item's WorkerError, not a value handed to the next function.
    w = Worker((inc, Worker(fail_on_three), double), ((1,), (), ()))
    assert w.task == (inc, fail_on_three, double) and w.args == ((1,), (), ())
    assert w((1,)) == 4
    failed = w((2,))
    assert isinstance(failed, WorkerError) and failed.function == "fail_on_three"
    with pytest.raises(ValueError, match=r"functions\[1\] is a Worker"):
        Worker((inc, Worker(double)), ((), (2,)))


def test_equality_is_by_functions_and_arguments():
    assert Worker(inc, (1,)) == Worker((inc,), ((1,),))
    assert Worker(inc, (1,)) != Worker(inc, (2,))
    assert Worker(inc) != Worker(double)
    assert hash(Worker(inc)) == hash(Worker(inc))


def test_equality_compares_numpy_arguments_whole():
    same = Worker(inc, kwargs={"by": np.arange(3)}) == Worker(inc, kwargs={"by": np.arange(3)})
    assert same is True
    assert Worker(inc, (np.arange(3),)) != Worker(inc, (np.arange(4),))
    assert Worker(inc, (np.zeros(2),)) != Worker(inc, (np.ones(2),))


def test_an_exception_becomes_a_returned_worker_error():
    result = Worker((inc, fail_on_three))((2,))
    assert isinstance(result, WorkerError)
    assert result.function == "fail_on_three"
    assert result.inbox == (3,)
    assert isinstance(result.exception, ValueError)
    assert "raise ValueError" in result.traceback
    assert "fail_on_three raised ValueError: three" in str(result)


def test_an_inbox_with_a_piper_error_is_passed_on_without_a_call():
    calls = []
    failed = PiperError(WorkerError("upstream failed"))
    assert Worker(lambda inbox: calls.append(inbox))((1, failed)) is failed
    assert Worker(lambda inbox: calls.append(inbox))(((1, failed),)) is failed
    assert calls == []


def test_worker_errors_and_workers_pickle():
    error = Worker(fail_on_three)((3,))
    again = pickle.loads(pickle.dumps(error))
    assert again.function == "fail_on_three" and again.inbox == (3,)
    assert "ValueError" in again.traceback
    w = Worker((inc, double), ((1,), ()))
    assert pickle.loads(pickle.dumps(w)) == w
    assert dill.loads(dill.dumps(Worker(lambda inbox: 7)))((0,)) == 7


@pytest.mark.parametrize("args, error, message", [
    ((42,), TypeError, "functions must be a callable"),
    (([],), ValueError, "functions is empty"),
    (([inc, 3],), TypeError, r"functions\[1\] is not callable"),
    (((inc, double), ((1,),)), ValueError, "arguments has 1 entries for 2 functions"),
    (((inc, double), None, ({}, 3)), TypeError, r"kwargs\[1\] must be a dict"),
    ((inc, 5), TypeError, "arguments of a single function must be a tuple"),
    ((Worker(inc), (1,)), ValueError, "brings its own arguments"),
])
def test_bad_construction_names_the_argument(args, error, message):
    with pytest.raises(error, match=message):
        Worker(*args)
