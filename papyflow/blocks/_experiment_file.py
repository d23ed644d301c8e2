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
    declaration = _json_literal(experiment.declaration)
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
        "import json",
        "import sys",
        "",
        "from numap import NuMap",
        "from papyflow.blocks.experiment import Experiment",
        "",
        f"PREFIX = {experiment.prefix!r}",
        f"INDEX_FOLDER = {plumber.index_folder!r}",
        f"CACHE = {plumber.cache!r}",
        f"DECLARATION = json.loads({declaration})",
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


def _json_literal(value: object) -> str:
    """Python source of a string holding ``value`` as JSON text, for ``json.loads``.

    The declaration is written as JSON rather than as a Python literal: JSON,
    as :mod:`json` reads declaration files, holds ``NaN`` and ``Infinity``,
    which ``repr`` writes as names that are not defined (``nan``, ``inf``).
    The text is ASCII and has no quote ``'`` (it is escaped as ``\\u0027``, all
    the same to JSON), so it fits a raw triple-quoted string as it is.

    Raises:
        TypeError: ``value`` is not JSON data.
    """
    text = json.dumps(value, indent=4, ensure_ascii=True).replace("'", "\\u0027")
    return f"r'''\n{text}\n'''"
