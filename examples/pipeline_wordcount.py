"""Word counts over a corpus of text files, read and counted in worker processes.

::

    files --> tokenize --> count --> report
    (here)    (readers)    (counters)  (here)

- ``files`` names the text files: those given on the command line (a folder
  gives its ``*.txt`` files), or else a corpus this file writes itself into a
  temporary folder (see ``DATA``), the same every time;
- ``tokenize`` reads a file and splits it into lower-case words, in a pool of
  worker processes (NuMap ``readers``);
- ``count`` counts the words of a file in a second pool (NuMap ``counters``);
- ``report`` prints one line per file, in the order the files came.

Run it with ``papyflow run examples/pipeline_wordcount.py`` (add
``--input some/folder`` for your own files, ``--workers 4`` for more workers),
or as ``python examples/pipeline_wordcount.py``.
"""

import atexit
import os
import random
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from numap import NuMap
from papyflow import Piper, Plumber

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def files(inbox):
    """The path of one input file (the input piper's item is the path itself)."""
    return str(inbox[0]).strip()


def tokenize(inbox):
    """(file name, its words in lower case)."""
    path = Path(inbox[0])
    return path.name, WORD.findall(path.read_text(encoding="utf-8").lower())


def count(inbox):
    """(file name, number of words, the five most common words and their counts)."""
    name, words = inbox[0]
    return name, len(words), Counter(words).most_common(5)


def report(inbox):
    name, total, common = inbox[0]
    top = ", ".join(f"{word} {n}" for word, n in common)
    print(f"{name:<14} {total:>7} words   most common: {top}", flush=True)
    return total


readers = NuMap(worker_type="process", worker_num=2, name="readers")
counters = NuMap(worker_type="process", worker_num=2, name="counters")

plumber = Plumber()
plumber.add_pipe((
    Piper(files, name="files"),
    Piper(tokenize, parallel=readers, name="tokenize"),
    Piper(count, parallel=counters, name="count"),
    Piper(report, name="report"),
))


def inputs(paths):
    """One input: the text files named by ``paths`` (folders give their ``*.txt`` files)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(path.glob("*.txt")))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return [found]


# -- the corpus used when no file is given ---------------------------------------

VOCABULARY = tuple(dict.fromkeys((
    "the river runs past the old mill and under the stone bridge where a heron "
    "waits for fish in the cold water while the miller counts sacks of grain "
    "and the children of the village throw pebbles from the bank until the "
    "evening bell rings across the fields of barley and the orchard of pears"
).split()))  # each word once, in order of first use


def write_corpus(folder, documents=24, lines=400, seed=2024):
    """Write ``documents`` text files of made-up prose into ``folder``; the same for a seed."""
    chooser = random.Random(seed)
    # A few words are much more common than the rest, as in real text.
    weights = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]
    paths = []
    for number in range(documents):
        text = []
        for _ in range(lines):
            words = chooser.choices(VOCABULARY, weights, k=chooser.randint(6, 14))
            text.append(" ".join(words).capitalize() + ".")
        path = Path(folder) / f"doc{number:02d}.txt"
        path.write_text("\n".join(text) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def DATA():
    """The inputs without ``--input``: a corpus written into a temporary folder."""
    folder = tempfile.mkdtemp(prefix="papyflow-wordcount-")
    owner = os.getpid()

    def remove():
        if os.getpid() == owner:  # not in a forked worker that exits
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return [write_corpus(folder)]


if __name__ == "__main__":
    from papyflow.cli import main

    sys.exit(main(["run", __file__, *sys.argv[1:]]))
