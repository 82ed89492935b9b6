"""faithbench: a benchmark harness for the faithfulness of attribution maps.

Importing the top-level package is cheap; the runner, tracking and reports are imported
on demand (``faithbench.run``, ``faithbench.report``).
"""

__version__ = "0.1.0"
