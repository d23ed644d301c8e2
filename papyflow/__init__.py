"""papyflow: parallel data-processing pipelines in plain Python.

Build a graph of processing steps (:class:`Piper` nodes wrapping
:class:`Worker` compositions) in a :class:`Dagger`, run it with a
:class:`Plumber`, and let :mod:`numap` evaluate the parallel steps on threads
or processes.
"""

from .dagger import Dagger
from .errors import DaggerError, PiperError, PlumberError, WorkerError
from .piper import Piper
from .plumber import Plumber
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Dagger",
    "DaggerError",
    "Piper",
    "PiperError",
    "Plumber",
    "PlumberError",
    "Worker",
    "WorkerError",
]
