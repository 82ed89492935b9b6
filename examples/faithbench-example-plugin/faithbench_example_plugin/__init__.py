"""An example faithbench plugin: VarGrad, registered through the entry-point group
``faithbench.methods`` (see ``pyproject.toml``)."""
