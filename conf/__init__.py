"""Hydra configs. The method and metric nodes are not files: importing this package
generates them from the registered functions' signatures (``faithbench.config.store_nodes``)."""

from faithbench.config import store_nodes

store_nodes()
