"""BEAT-style remote data: message handlers and the executors of blocks.

::

    DBExecutor (views)  --MessageHandler--\\
                                           >== zmq, authenticated ==> AlgorithmExecutor
    LoopExecutor (evaluator) --LoopMessageHandler--/                   (RemoteDataSource,
                                                                        LoopChannel)

* :class:`MessageHandler`: a thread answering ``ifo``, ``get``, ``don``,
  ``err`` for the data sources it serves; :class:`LoopMessageHandler` also
  answers a loop processor (``val``, ``wrt``, ``red``);
* :class:`DBExecutor`: serves the outputs of database views;
* :class:`AlgorithmExecutor`: runs an algorithm block, inputs from a handler
  or the cache, outputs to the cache;
* :class:`LoopExecutor`, :class:`LoopChannel`: the two ends of a loop.

The wire protocol and its authentication are in
:mod:`papyflow.dataflow._remote` and :mod:`papyflow.execution.messagehandlers`;
``docs/execution.md`` tells the whole story.
"""

from ..dataflow._remote import (
    AuthenticationError,
    RemoteChannel,
    RemoteError,
    RemoteTimeoutError,
)
from .algorithm import AlgorithmExecutor
from .database import DBExecutor
from .loop import LoopChannel, LoopExecutor
from .messagehandlers import LoopMessageHandler, MessageHandler

__all__ = [
    "AlgorithmExecutor",
    "AuthenticationError",
    "DBExecutor",
    "LoopChannel",
    "LoopExecutor",
    "LoopMessageHandler",
    "MessageHandler",
    "RemoteChannel",
    "RemoteError",
    "RemoteTimeoutError",
]
