"""``numap-worker``: serve worker processes to NuMaps on other hosts.

::

    numap-worker keygen KEYFILE                     # a new key (mode 0600)
    numap-worker serve --bind tcp://127.0.0.1:5555 --workers 2 [--auth KEYFILE]

A client uses them with ``NuMap(worker_remote=(('host:5555', 2),),
worker_num=0, remote_auth=KEYFILE)`` (or ``$NUMAP_AUTH``). See
``docs/distributed.md``; the protocol is in :mod:`numap._remote`, the
authentication in :mod:`numap._auth`, the server in :mod:`numap.worker._server`.
"""

from ._server import WorkerServer

__all__ = ["WorkerServer"]
