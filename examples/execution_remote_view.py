"""A database view served over zmq, read remotely by an algorithm.

A :class:`~papyflow.execution.DBExecutor` serves the ``train`` set of the toy
database (``examples/toy/prefix``) through a message handler bound to
127.0.0.1; an :class:`~papyflow.execution.AlgorithmExecutor` runs
``toy/preprocess/1`` with its input read from that handler, writes its output
to a cache in a temporary folder, and says ``don`` to a supervising handler.
Both ends use the same freshly made key: every message is signed.

Run: ``python examples/execution_remote_view.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import zmq

from numap._auth import keygen
from papyflow.dataflow.data import CachedDataSource
from papyflow.execution import AlgorithmExecutor, DBExecutor, MessageHandler

PREFIX = str(Path(__file__).resolve().parent / "toy" / "prefix")

CONFIGURATION = {
    "algorithm": "toy/preprocess/1",
    "parameters": {"layers": 1},
    "inputs": {"features": {"database": "toy/1", "protocol": "main", "set": "train",
                            "output": "features", "channel": "main"}},
    "outputs": {"features": {"path": "pr/ep/ro/cessed", "channel": "main"}},
}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        key = keygen(os.path.join(folder, "key"))
        cache = os.path.join(folder, "cache")
        context = zmq.Context()
        sockets = []

        def connect(address: str) -> zmq.Socket:
            socket = context.socket(zmq.DEALER)
            socket.connect(address)
            sockets.append(socket)
            return socket

        try:
            with DBExecutor(MessageHandler(auth=key), PREFIX, cache, CONFIGURATION) as db, \
                    MessageHandler(auth=key) as supervisor:
                db.process()
                print(f"the view is served at {db.address}")
                executor = AlgorithmExecutor(connect(supervisor.address), CONFIGURATION,
                                             cache_root=cache, prefix=PREFIX,
                                             db_socket=connect(db.address), auth=key)
                executor.process()
                supervisor.join(10)
                print("the algorithm said it is done:", supervisor.statistics)
        finally:
            for socket in sockets:
                socket.close(linger=0)
            context.term()
        output = CachedDataSource()
        output.setup(os.path.join(cache, "pr/ep/ro/cessed.data"), PREFIX)
        with output:
            print(f"{len(output)} units written; the first three:")
            for data, start, end in list(output)[:3]:
                print(f"  {start}..{end}: {data.value.round(3)}")


if __name__ == "__main__":
    main()
