"""Ready-made pieces for papyflow pipelines, after PaPy's ``papy.util``.

- :mod:`papyflow.util.func`: worker functions (pass, zip, join, serialize,
  print, hand items over through files, fifos or sockets) and stream loaders;
- :mod:`papyflow.util.script`: run a bash or Python script as a worker function;
- :mod:`papyflow.util.config`: ``start_logger`` and ``get_defaults``;
- :mod:`papyflow.util.runtime`: ``get_runtime``, a description of the environment.
"""

from . import config, func, runtime, script

__all__ = ["config", "func", "runtime", "script"]
