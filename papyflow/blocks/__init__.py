"""Blocks: algorithms, libraries and databases declared as assets under a prefix.

* :mod:`papyflow.blocks.loader`: loading block code as modules, running user
  methods safely;
* :mod:`papyflow.blocks.library`: libraries of code shared by blocks;
* :mod:`papyflow.blocks.algorithm`: algorithm declarations and their runners;
* :mod:`papyflow.blocks.database`: databases, their protocols, sets and views;
* :mod:`papyflow.blocks.pipers`: database views and algorithms as Pipers;
* :mod:`papyflow.blocks.experiment`: experiment declarations built into Pipers.
"""
