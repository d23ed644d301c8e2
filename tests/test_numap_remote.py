"""Remote workers over loopback: the same semantics as local workers, authentication, faults."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from numap import NuMap
from numap._auth import AuthenticationError, keygen
from numap._errors import BrokenPoolError, RemoteTraceback
from tests.helpers import hold_or_time, hold_then_large, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def key(tmp_path):
    return keygen(tmp_path / "worker.key")


def square(x):
    return x * x


def slow_square(x):
    time.sleep(0.01)
    return x * x


def fails_on_three(x):
    if x == 3:
        raise ValueError("three is refused")
    return x


def sleepy(x):
    time.sleep(x)
    return x


def pid_of(_):
    time.sleep(0.005)
    return os.getpid()


def _drain(numap, task=0):
    """Every result of a task, exceptions as values."""
    out = []
    stream = numap.get_task(task)
    while True:
        try:
            out.append(next(stream))
        except StopIteration:
            return out
        except Exception as error:  # noqa: BLE001 - the failure is the item's result
            out.append(error)


# -- the same semantics as local workers -----------------------------------------------------


def test_results_in_order_from_a_remote_server(servers):
    server = servers.start(workers=2)
    with NuMap(square, range(5000), worker_num=0, worker_remote=((server.address, 2),)) as numap:
        assert list(numap) == [x * x for x in range(5000)]


def test_unordered_results_are_all_there(servers):
    server = servers.start(workers=2)
    numap = NuMap(slow_square, range(200), worker_num=0, ordered=False,
                  worker_remote=((server.address, 2),))
    assert sorted(numap) == [x * x for x in range(200)]
    numap.stop()


def test_an_error_comes_back_with_its_remote_traceback(servers):
    server = servers.start(workers=1)
    numap = NuMap(fails_on_three, range(6), worker_num=0, worker_remote=((server.address, 1),))
    out = _drain(numap)
    numap.stop()
    assert out[:3] == [0, 1, 2] and out[4:] == [4, 5]
    assert isinstance(out[3], ValueError) and str(out[3]) == "three is refused"
    assert isinstance(out[3].__cause__, RemoteTraceback)
    assert "fails_on_three" in str(out[3].__cause__)


def test_several_tasks_chained_and_side_by_side_share_the_remote_pool(servers):
    server = servers.start(workers=2)
    numap = NuMap(worker_num=0, worker_remote=((server.address, 2),), stride=16, buffer=64)
    squares = numap.add_task(square, range(300))
    again = numap.add_task(square, squares)  # chained
    numap.add_task(fails_on_three, range(10))
    numap.start()
    assert list(again) == [x ** 4 for x in range(300)]
    out = _drain(numap, 2)
    assert isinstance(out[3], ValueError) and out[:3] == [0, 1, 2]
    numap.stop()


def test_a_timeout_skips_a_late_remote_result(servers):
    server = servers.start(workers=1)
    numap = NuMap(sleepy, [0.0, 2.0, 0.0], worker_num=0, skip=True,
                  worker_remote=((server.address, 1),))
    assert numap.next(timeout=10) == 0.0
    with pytest.raises(TimeoutError):
        numap.next(timeout=0.3)
    assert numap.next(timeout=10) == 0.0  # the late one was dropped
    numap.stop()


def test_local_and_remote_workers_in_one_numap(servers):
    server = servers.start(workers=1)
    numap = NuMap(pid_of, range(400), worker_num=1, worker_remote=((server.address, 1),))
    pids = list(numap)
    numap.stop()
    assert len(pids) == 400
    assert len(set(pids)) == 2  # one local worker process, one on the server


def test_the_remote_pool_stays_bounded_on_an_endless_input(servers):
    server = servers.start(workers=2)
    pulled = itertools.count()

    def endless():
        yield from pulled

    numap = NuMap(square, endless(), worker_num=0, worker_remote=((server.address, 2),),
                  stride=32, buffer=64)
    for k, value in zip(range(2000), numap, strict=False):
        assert value == k * k
    taken = next(pulled)
    numap.stop()
    assert taken <= 2000 + 64 + 32 + 2


# -- authentication -----------------------------------------------------------------------------


def test_a_keyed_server_serves_a_client_with_the_key(servers, key):
    server = servers.start(workers=1, key=key)
    numap = NuMap(square, range(100), worker_num=0, worker_remote=((server.address, 1),),
                  remote_auth=key)
    assert list(numap) == [x * x for x in range(100)]
    numap.stop()


def test_the_key_may_come_from_the_environment(servers, key, monkeypatch):
    server = servers.start(workers=1, key=key)
    monkeypatch.setenv("NUMAP_AUTH", str(key))
    numap = NuMap(square, range(10), worker_num=0, worker_remote=((server.address, 1),))
    assert list(numap) == [x * x for x in range(10)]
    numap.stop()


@pytest.mark.parametrize("client_key", ["none", "wrong"])
def test_a_client_without_the_key_is_refused_at_once(servers, key, tmp_path, client_key):
    server = servers.start(workers=1, key=key)
    given = None if client_key == "none" else keygen(tmp_path / "other.key")
    with pytest.raises(AuthenticationError) as caught:  # not "did not answer"
        NuMap(square, range(10), worker_num=0, worker_remote=((server.address, 1),),
              remote_auth=given)
    assert f"worker {server.address} refused this client" in str(caught.value)
    assert "wrong signature" in str(caught.value)


def test_a_keyed_client_against_a_server_without_a_key_is_refused(servers, key):
    server = servers.start(workers=1)
    with pytest.raises(AuthenticationError, match="no key is set"):
        NuMap(square, range(3), worker_num=0, worker_remote=((server.address, 1),),
              remote_auth=key)


@pytest.mark.timeout(60)
def test_a_server_that_does_not_answer_is_a_clear_error():
    import socket

    with socket.socket() as listener:  # a port that takes connections but says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(ConnectionError, match=f"worker {address} .* did not answer"):
            NuMap(square, range(3), worker_num=0, worker_remote=((address, 1),))


def test_the_server_refuses_a_public_address_without_a_key(tmp_path):
    done = subprocess.run([sys.executable, "-m", "numap.worker", "serve", "--bind",
                           "tcp://0.0.0.0:0", "--workers", "1"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "is not a loopback address" in done.stderr and "--auth" in done.stderr


@pytest.mark.parametrize("option", [("--max-message", "-1"), ("--max-message", "0"),
                                    ("--workers", "0")])
def test_the_server_refuses_a_bad_limit_before_it_serves(option):
    # --max-message -1 used to start, then die at the first client's handshake.
    done = subprocess.run([sys.executable, "-m", "numap.worker", "serve", "--bind",
                           "tcp://127.0.0.1:0", *option], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert f"{option[0][2:].replace('-', '_')} must be at least 1" in done.stderr


def test_the_server_checks_the_types_of_its_arguments():
    from numap.worker import WorkerServer

    with pytest.raises(TypeError, match="workers must be an int"):
        WorkerServer("tcp://127.0.0.1:0", workers="2")
    with pytest.raises(TypeError, match="max_message must be an int"):
        WorkerServer("tcp://127.0.0.1:0", workers=1, max_message=1.5)


def test_keygen_writes_a_private_key_and_never_overwrites(tmp_path):
    path = tmp_path / "k"
    done = subprocess.run([sys.executable, "-m", "numap.worker", "keygen", str(path)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    before = path.read_text()
    again = subprocess.run([sys.executable, "-m", "numap.worker", "keygen", str(path)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert again.returncode == 2 and "never overwrites" in again.stderr
    assert path.read_text() == before


def test_a_key_file_open_to_others_is_refused(tmp_path, key):
    from numap._auth import load_key

    os.chmod(key, 0o644)
    with pytest.raises(AuthenticationError, match="chmod 600"):
        load_key(key)


# -- faults ---------------------------------------------------------------------------------------


def test_a_killed_server_s_items_go_to_the_other(servers):
    first, second = servers.start(workers=1), servers.start(workers=1)
    numap = NuMap(slow_square, range(600), worker_num=0, stride=8,
                  worker_remote=((first.address, 1), (second.address, 1)))
    results = []
    for value in numap:
        results.append(value)
        if len(results) == 50:
            first.signal(signal.SIGKILL)
    numap.stop()
    assert results == [x * x for x in range(600)]  # each once, in order


@pytest.mark.slow
def test_a_frozen_server_is_found_out_and_its_late_answers_are_dropped(servers):
    first, second = servers.start(workers=1), servers.start(workers=1)
    count = 1200
    numap = NuMap(slow_square, range(count), worker_num=0, stride=8,
                  worker_remote=((first.address, 1), (second.address, 1)))
    results = []
    frozen = woken = None
    for value in numap:
        results.append(value)
        if len(results) == 30:
            first.signal(signal.SIGSTOP)
            frozen = time.monotonic()
        if frozen and not woken and time.monotonic() - frozen > 8:
            first.signal(signal.SIGCONT)  # counted lost by now: its late answers come
            woken = time.monotonic()
    numap.stop()
    assert woken is not None
    assert results == [x * x for x in range(count)]  # each once, in order


def test_losing_the_only_server_is_an_error_naming_it(servers):
    server = servers.start(workers=1)
    numap = NuMap(slow_square, range(10_000), worker_num=0, stride=8,
                  worker_remote=((server.address, 1),))
    stream = iter(numap)
    next(stream)
    server.signal(signal.SIGKILL)
    with pytest.raises(BrokenPoolError, match=f"remote worker {server.address}"):
        for _ in stream:
            pass
    numap.stop()


def test_a_worker_process_that_dies_fails_its_batch_and_the_server_goes_on(servers):
    server = servers.start(workers=1)
    numap = NuMap(os._exit, [3], worker_num=0, worker_remote=((server.address, 1),))
    (error,) = _drain(numap)
    numap.stop()
    assert "died" in str(error) and "exit code 3" in str(error)
    again = NuMap(square, range(20), worker_num=0, worker_remote=((server.address, 1),))
    assert list(again) == [x * x for x in range(20)]
    again.stop()


def test_a_worker_that_reads_nothing_delays_no_other_client(servers, tmp_path):
    # A large batch for a worker process that holds its lock fills that worker's pipe:
    # the server must not wait on the pipe, or every client waits with it (and one
    # waiting long enough takes the server for dead).
    server = servers.start(workers=2)
    marker = tmp_path / "holding"
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(lambda: list(NuMap(hold_or_time, hold_then_large(marker, 4, 20),
                                              worker_num=0,
                                              worker_remote=((server.address, 2),))))
        wait_for(marker, 30)
        time.sleep(0.5)  # the large items are sent meanwhile
        other = list(NuMap(hold_or_time, [("small",)] * 4, worker_num=0,
                           worker_remote=((server.address, 2),)))
        first = held.result(60)
    held_until = next(t for kind, t in first if kind == "hold")
    assert [kind for kind, _ in first] == ["hold"] + ["large"] * 20
    assert [kind for kind, _ in other] == ["small"] * 4
    assert max(t for _, t in other) < held_until  # served while the worker held its lock


class _Unloadable:
    """Pickled in the worker, it cannot be unpickled back in the client."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def _refuse_to_load():
    raise RuntimeError("this result cannot be rebuilt here")


def unloadable_on_two(x):
    return _Unloadable() if x == 2 else x


def test_a_result_that_cannot_be_unpickled_fails_its_batch_and_nothing_hangs(servers):
    server = servers.start(workers=1)
    numap = NuMap(unloadable_on_two, range(6), worker_num=0, stride=1,  # one item a batch
                  worker_remote=((server.address, 1),))
    out = []
    stream = numap.get_task(0, timeout=30)
    while True:  # the remote I/O thread must survive it: a hang times out instead
        try:
            out.append(next(stream))
        except StopIteration:
            break
        except RuntimeError as error:
            out.append(str(error))
    numap.stop()
    assert out[:2] == [0, 1] and out[3:] == [3, 4, 5]
    assert "could not be unpickled" in out[2] and "cannot be rebuilt here" in out[2]


def exits_on_zero(x):
    if x == 0:
        time.sleep(0.5)  # meanwhile the next batch waits in the same worker process
        os._exit(3)
    return x


def test_a_worker_process_that_dies_fails_only_the_batch_it_ran(servers):
    server = servers.start(workers=1)
    numap = NuMap(exits_on_zero, range(4), worker_num=0, stride=1,
                  worker_remote=((server.address, 1),))
    out = _drain(numap)
    numap.stop()
    assert "exit code 3" in str(out[0])
    assert out[1:] == [1, 2, 3]  # the batches it had not started run elsewhere


def test_a_malformed_message_does_not_bring_the_server_down(servers):
    import zmq

    from numap._auth import Session
    from numap._remote import Message

    server = servers.start(workers=1)
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(server.endpoint)
        session = Session(None, "test")
        sock.send_multipart(session.hello())
        assert sock.poll(10_000)
        session.accept(sock.recv_multipart())
        assert sock.poll(10_000)
        session.open(sock.recv_multipart())  # its limits
        sock.send_multipart(session.sign(Message.TASK, []))  # no frame at all
        assert sock.poll(10_000)
        assert sock.recv_multipart()[0] == b"DENIED"
    finally:
        sock.close()
        context.term()
    with NuMap(abs, [-1, -2], worker_num=0, worker_remote=((server.address, 1),)) as numap:
        assert list(numap) == [1, 2]


CLIENT = """
import sys, time
from numap import NuMap
def slow(x):
    time.sleep(0.5)
    return x
numap = NuMap(slow, range(1000), worker_num=0, worker_remote=((sys.argv[1], 1),))
print(next(iter(numap)), flush=True)
time.sleep(60)
"""


def test_a_server_survives_a_client_that_vanishes_mid_task(servers, tmp_path):
    server = servers.start(workers=1)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    client = subprocess.Popen([sys.executable, str(script), server.address],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert client.stdout.readline().strip() == "0"
    finally:
        os.killpg(client.pid, signal.SIGKILL)
        client.wait(10)
        client.stdout.close()
    numap = NuMap(square, range(50), worker_num=0, worker_remote=((server.address, 1),))
    assert list(numap) == [x * x for x in range(50)]
    numap.stop()


def test_a_batch_larger_than_the_server_takes_fails_clearly(servers):
    server = servers.start(workers=1, extra=("--max-message", "200000"))
    numap = NuMap(len, [b"x" * 10, b"y" * 500_000, b"z"], worker_num=0, stride=1,
                  worker_remote=((server.address, 1),))
    out = _drain(numap)
    numap.stop()
    assert out[0] == 10 and out[2] == 1
    assert isinstance(out[1], ValueError)
    assert f"larger than remote worker {server.address} takes (200000 bytes)" in str(out[1])


def test_a_plumber_pipeline_runs_on_remote_workers_unchanged(servers, key):
    from papyflow import Piper, Plumber

    server = servers.start(workers=2, key=key)
    numap = NuMap(worker_num=0, worker_remote=((server.address, 2),), remote_auth=key)
    first = Piper(_square_inbox, parallel=numap)
    last = Piper(_label_inbox, parallel=numap, track=True)
    plumber = Plumber()
    plumber.add_pipe((first, last))
    plumber.start([range(50)])
    plumber.run()
    plumber.wait(timeout=60)
    tracked = plumber.stats["pipers_tracked"][last]
    plumber.stop()
    assert [tracked[0][k] for k in range(50)] == [f"<{k * k}>" for k in range(50)]


def _square_inbox(inbox):
    return inbox[0] ** 2


def _label_inbox(inbox):
    return f"<{inbox[0]}>"
