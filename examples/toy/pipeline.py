"""The toy verification pipeline built from blocks as Pipers.

    train set:  features --> preprocess --> enroll (one model per client) --+
                client --------------------^                                |
    test set:   features --> preprocess --> score (against every model) <--+
                client --------------------^    |
                                                +--> eer (an analyzer)

Run it with ``python examples/toy/pipeline.py`` (``--workers 2`` runs the
sequential blocks on two worker processes); it prints the equal error rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from numap import NuMap
from papyflow import Dagger
from papyflow.blocks.algorithm import Algorithm
from papyflow.blocks.database import Database
from papyflow.blocks.pipers import (
    algorithm_piper,
    connect_blocks,
    database_inputs,
    database_pipers,
)

PREFIX = str(Path(__file__).resolve().parent / "prefix")


def build(parallel: NuMap | bool = False,
          index_folder: str | None = None) -> tuple[Dagger, dict[str, object]]:
    """The pipeline, and its Pipers by role; the views' indices are cached in
    ``index_folder`` (by default in the temporary folder)."""
    database = Database(PREFIX, "toy/1")

    def index(set_name: str) -> str | None:
        return None if index_folder is None else str(Path(index_folder) / f"{set_name}.json")

    train = database_pipers(database, "main", "train", index_file=index("train"))
    test = database_pipers(database, "main", "test", index_file=index("test"))

    def block(asset: str, **options: object):
        return algorithm_piper(Algorithm(PREFIX, asset), **options)

    pipers = {
        "preprocess train": block("toy/preprocess/1", parallel=parallel,
                                  name="preprocess train"),
        "preprocess test": block("toy/preprocess/1", parallel=parallel, name="preprocess test"),
        "enroll": block("toy/enroll/1", parallel=parallel),
        "score": block("toy/score/1", parallel=parallel),
        "eer": block("toy/eer/1"),  # an analyzer keeps state over all steps: not splittable
    }
    dagger = Dagger()
    connect_blocks(dagger, pipers["preprocess train"], {"features": train["features"]})
    connect_blocks(dagger, pipers["enroll"], {"features": pipers["preprocess train"],
                                              "client": train["client"]})
    connect_blocks(dagger, pipers["preprocess test"], {"features": test["features"]})
    connect_blocks(dagger, pipers["score"], {"probe": pipers["preprocess test"],
                                             "client": test["client"],
                                             "model": pipers["enroll"],
                                             "model_client": train["client"]})
    connect_blocks(dagger, pipers["eer"], {"scores": pipers["score"]})
    return dagger, pipers


def run(workers: int = 0) -> object:
    """Run the pipeline; the analyzer's result record."""
    numap = NuMap(worker_type="process", worker_num=workers) if workers else False
    dagger, pipers = build(numap)
    dagger.connect(database_inputs(dagger))
    dagger.start()
    try:
        (result,) = list(pipers["eer"])
    finally:
        dagger.stop()
    return result.data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0,
                        help="worker processes for the sequential blocks (0: none)")
    result = run(parser.parse_args().workers)
    print(f"equal error rate: {result.eer:.3f} "
          f"({result.genuine} genuine, {result.impostor} impostor scores)")


if __name__ == "__main__":
    main()
