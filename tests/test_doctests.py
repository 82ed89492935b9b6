"""The ``Example:`` blocks of the docstrings run as doctests in the default test run.

The modules are imported under their installed names (``faithbench.methods.grad_cam``),
walked with pkgutil: pytest's ``--doctest-modules`` on the source folders would import
them as ``methods.grad_cam`` (the package-dir mapping) and register every entry twice.
Docstrings of registered entries are read from the entry as the registry wraps it (its
``__module__`` names the module; doctest's finder would skip it).
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
from types import ModuleType

import pytest

PACKAGES = ("faithbench", "faithbench.methods", "faithbench.metrics", "faithbench.datasets")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules() -> list[ModuleType]:
    out: dict[str, ModuleType] = {}
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        out[name] = pkg
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{name}."):
            if not info.name.endswith(".__main__"):  # running it would start the CLI
                out.setdefault(info.name, importlib.import_module(info.name))
    return list(out.values())


def doctests() -> list[doctest.DocTest]:
    finder, parser = doctest.DocTestFinder(), doctest.DocTestParser()
    found: dict[str, doctest.DocTest] = {}
    for mod in modules():
        for test in finder.find(mod):
            if test.examples:
                found[test.name] = test
        for attr, obj in vars(mod).items():
            name = f"{mod.__name__}.{attr}"
            doc = getattr(obj, "__doc__", None)
            if (callable(obj) and getattr(obj, "__module__", None) == mod.__name__
                    and isinstance(doc, str) and name not in found):
                test = parser.get_doctest(doc, dict(vars(mod)), name, mod.__file__, 0)
                if test.examples:
                    found[name] = test
    return sorted(found.values(), key=lambda t: t.name)


TESTS = doctests()


def test_the_examples_are_collected():
    names = {t.name for t in TESTS}
    # One from each kind of place: a module docstring, a function, a re-exported helper.
    assert {"faithbench.params", "faithbench.errors.check_choice", "faithbench.ops.minmax",
            "faithbench.labels", "faithbench.metrics.localisation.curve_max"} <= names
    assert len(names) == len(TESTS)


@pytest.mark.parametrize("test", TESTS, ids=[t.name for t in TESTS])
def test_example(test: doctest.DocTest):
    # Every example states what it must print (or raise): a bare call proves nothing.
    assert any(ex.want or ex.exc_msg for ex in test.examples), f"{test.name}: nothing is checked"
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=out.write, clear_globs=True)
    assert result.failed == 0, out.getvalue()
