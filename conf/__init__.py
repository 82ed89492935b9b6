"""Hydra configs. The method and metric nodes are not files: importing this package
generates them from the registered functions' signatures (``faithbench.config.store_nodes``;
``faithbench --help`` reads them from ``faithbench.index`` instead)."""

from faithbench import config

config.store_nodes(from_index=config.NODES_FROM_INDEX)
