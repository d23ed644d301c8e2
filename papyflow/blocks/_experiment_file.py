"""``ExperimentPlumber.save``: an experiment written as a pipeline file that rebuilds it.

Block Pipers hold user classes that are loaded from the prefix where they
run, so the file does not list Pipers as ``Plumber.save`` does for plain
pipelines: it holds what the experiment was built from (the prefix, the
declaration, the NuMap's settings, the index folder and the cache) and builds
it again when it runs, planning against the cache as it is then. It follows
the pipeline-file contract of :mod:`papyflow.pipefile`: ``plumber``, and
``DATA`` (the source Pipers' inputs).
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING

from numap import NuMap

if TYPE_CHECKING:
    from .experiment import ExperimentPlumber

__all__ = ["experiment_source"]


def experiment_source(plumber: ExperimentPlumber) -> str:
    """The source of a Python file that rebuilds ``plumber``'s experiment.

    Raises:
        TypeError: the declaration is not JSON data, or ``parallel`` is
            neither ``False`` nor a NuMap.
    """
    experiment = plumber.experiment
    declaration = json.loads(json.dumps(experiment.declaration))  # JSON data only
    if isinstance(plumber.parallel, NuMap):
        settings = {k: v for k, v in plumber.parallel.settings.items() if v is not None}
        parallel = f"NuMap(**{settings!r})"
    elif plumber.parallel is False:
        parallel = "False"
    else:
        raise TypeError(f"parallel must be False or a NuMap, not {plumber.parallel!r}")
    stamp = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    lines = [
        f'"""A papyflow experiment, saved by Plumber.save on {stamp}.',
        "",
        "Run it: papyflow run THIS_FILE (or python THIS_FILE).",
        "Load it: papyflow.Plumber().load(THIS_FILE).",
        '"""',
        "",
        "import sys",
        "",
        "from numap import NuMap",
        "from papyflow.blocks.experiment import Experiment",
        "",
        f"PREFIX = {experiment.prefix!r}",
        f"INDEX_FOLDER = {plumber.index_folder!r}",
        f"CACHE = {plumber.cache!r}",
        f"DECLARATION = {declaration!r}",
        "",
        "experiment = Experiment(PREFIX, DECLARATION)",
        f"plumber, pipers = experiment.build(parallel={parallel}, index_folder=INDEX_FOLDER,",
        "                                   cache=CACHE)",
        "",
        "",
        "def DATA():",
        "    return plumber.inputs()",
        "",
        "",
        'if __name__ == "__main__":',
        "    from papyflow.cli import main",
        "",
        '    sys.exit(main(["run", __file__, *sys.argv[1:]]))',
        "",
    ]
    return "\n".join(lines)

