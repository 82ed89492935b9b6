"""The registry index of ``faithbench list`` and ``--help`` (faithbench.index): what it
holds equals what the registries say, and every change it depends on rebuilds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from faithbench import index
from faithbench.cli import list_lines
from faithbench.config import REGISTRY_KINDS, entry_nodes, registry_index


def _listing(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faithbench", "list", "methods"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def test_index_holds_what_the_registries_say(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return registry_index()

    first = json.loads(json.dumps(index.read(build)))  # plain JSON
    assert first["list"] == {k: list_lines(k) for k in REGISTRY_KINDS}
    assert first["nodes"] == json.loads(json.dumps(entry_nodes()))
    again = index.read(build)
    assert again == first and len(calls) == 1  # read back, not rebuilt


def test_index_is_rebuilt_when_a_file_it_depends_on_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = index.fingerprint()
    assert index.fingerprint() == before
    (site / "notes.txt").write_text("an unrelated file")
    assert index.fingerprint() == before
    (site / "plug_y-0.1.dist-info").mkdir()  # an install
    assert index.fingerprint() != before
    calls = []
    index.read(lambda: calls.append(1) or {"n": len(calls)})
    assert index.read(lambda: calls.append(1) or {"n": len(calls)}) == {"n": 1}
    monkeypatch.setenv("FAITHBENCH_NO_INDEX", "1")
    assert index.read(lambda: {"n": 99}) == {"n": 99}


def test_list_sees_a_plugin_installed_edited_and_removed(tmp_path):
    """A fresh process lists a plugin as soon as it is installed, lists it with its new
    flags after an edit of its source, and forgets it when it is removed."""
    site = tmp_path / "site"
    site.mkdir()
    env = {**os.environ, "FAITHBENCH_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    assert "plug_m" not in _listing(tmp_path, env).stdout
    info = site / "plug_x-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-x\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[faithbench.methods]\nplug_m = plug_x:f\n")
    src = site / "plug_x.py"
    src.write_text("def f(model, x, target):\n    return x.sum(1)\n")
    line = next(l for l in _listing(tmp_path, env).stdout.splitlines() if "plug_m" in l)
    assert "[plug-x 0.1]" in line and "needs_layer" not in line, line
    src.write_text(textwrap.dedent("""
        from faithbench.methods import register

        @register(context=("layer",), cost="backward")
        def f(model, x, target, layer=None):
            return x.sum(1)
        """))
    line = next(l for l in _listing(tmp_path, env).stdout.splitlines() if "plug_m" in l)
    assert "needs_layer=True" in line, line
    for p in info.iterdir():
        p.unlink()
    info.rmdir()
    assert "plug_m" not in _listing(tmp_path, env).stdout


def test_help_page_is_kept_per_arguments_and_rebuilt_on_change(tmp_path, monkeypatch):
    """``faithbench --help`` prints Hydra's page; the page is kept per argument list for
    one fingerprint, so a second call reads it back, other arguments get their own page,
    and a change of what the index depends on builds it again."""
    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def page(argv):
        return lambda: calls.append(argv) or f"page {' '.join(argv)} #{len(calls)}"

    assert index.text(["--help"], page(["--help"])) == "page --help #1"
    assert index.text(["--help"], page(["--help"])) == "page --help #1"  # read back
    assert index.text(["model=timm", "--help"], page(["model=timm", "--help"])) == \
        "page model=timm --help #2"
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    (site / "plug_z-0.1.dist-info").mkdir()  # an install: new fingerprint, page rebuilt
    assert index.text(["--help"], page(["--help"])) == "page --help #3"
    monkeypatch.setenv("FAITHBENCH_NO_INDEX", "1")
    assert index.text(["--help"], page(["--help"])) == "page --help #4"


def test_help_from_the_index_equals_hydras_page(tmp_path):
    env = {**os.environ, "FAITHBENCH_CACHE_DIR": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "faithbench", "model=timm", "--help"]
    kept = [subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600) for _ in range(2)]
    direct = subprocess.run(run, cwd=tmp_path, env={**env, "FAITHBENCH_NO_INDEX": "1"},
                            capture_output=True, text=True, timeout=600)
    assert all(p.returncode == 0 for p in (*kept, direct))
    assert kept[0].stdout == kept[1].stdout == direct.stdout
    assert "arch: resnet50.a1_in1k" in direct.stdout and "\nmethod: " in direct.stdout
    assert list((tmp_path / "cache").glob("text-*.txt"))  # the page was kept


def test_config_nodes_from_the_index_equal_the_registries(tmp_path, monkeypatch):
    """The command line composes from the index's nodes (``faithbench.cli.main``): every
    node it stores, with its struct flag, equals the one generated from the registries."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from faithbench.config import store_nodes

    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path))

    def stored() -> dict:
        out = {}

        def walk(tree: dict, path: str) -> None:
            for name, item in tree.items():
                if isinstance(item, dict):
                    walk(item, f"{path}/{name}")
                elif getattr(item, "provider", None) == "faithbench":
                    node = item.node
                    flags = [(p, OmegaConf.is_struct(OmegaConf.select(node, p)) if p else
                              OmegaConf.is_struct(node)) for p in ("",) + tuple(
                        f"metric.{m}" for m in node.get("metric", {}))]
                    out[f"{path}/{name}"] = (OmegaConf.to_container(node), flags)

        walk(ConfigStore.instance().repo, "")
        return out

    store_nodes(from_index=False)
    live = stored()
    store_nodes(from_index=True)
    assert stored() == live and len(live) > 30
    store_nodes(from_index=False)


def test_report_facts_from_the_index_equal_the_registries(tmp_path, monkeypatch):
    """The report reads metric directions, aggregations, curve axes and the control and
    oracle flags from the index (``faithbench.report.facts``): for every registered
    entry they equal the registry's, and a metric whose aggregation is not built in is
    read from the registry."""
    from faithbench import methods, metrics
    from faithbench.aggregate import Aggregation
    from faithbench.errors import ConfigError
    from faithbench.report import facts

    monkeypatch.setenv("FAITHBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(facts, "_live", lambda: False)  # as in a report's process: the index
    facts._indexed.cache_clear()  # read from this test's cache folder
    custom = 0
    for n in metrics.METRICS.names():
        live, got = metrics.get(n).info, facts.metric(n)
        assert got.aggregate is live.aggregate
        assert got.higher_is_better == live.higher_is_better
        assert dict(got.outputs) == dict(live.outputs) and dict(got.curve_axes) == dict(live.curve_axes)
        for key in [n, *live.outputs, "not_an_output"]:
            assert got.direction(n, key) == live.direction(n, key)
        custom += got is live  # read from the registry
    assert custom >= 1  # e.g. max_box_acc's curve maximum
    for n in methods.METHODS.names():
        live, got = methods.get(n).info, facts.method(n)
        assert (got.model_free, got.oracle) == (live.model_free, live.oracle)
    assert facts.method("random").model_free and facts.method("oracle").oracle
    assert not facts.registered("no_such_metric")
    try:
        facts.method("no_such_method")
    except ConfigError as e:
        assert "no_such_method" in str(e)
    else:
        raise AssertionError("an unknown method was accepted")
    assert isinstance(facts.metric("deletion").aggregate, Aggregation)
