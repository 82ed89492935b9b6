"""The ``faithbench visualize`` job: configs agree with the registry, every entry runs
end to end on shapes_cnn and logs its PNGs to MLflow, the command line works."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib import resources

import pytest
import yaml
from hydra import compose, initialize_config_module
from mlflow.tracking import MlflowClient

from faithbench import visualize
from faithbench.errors import ConfigError
from faithbench.visualize._job import run

CONF = resources.files("faithbench.conf") / "viz"
PNG = b"\x89PNG\r\n\x1a\n"
# Small settings per entry so that the whole registry runs in seconds.
FAST = {
    "top_patches": ["dataset.limit=24", "viz.k=3", "viz.num_units=2"],
    "embedding": ["dataset.limit=24"],
    "neighbours": ["dataset.limit=24", "viz.k=2", "viz.queries=[0,1]"],
    "occlusion_sensitivity": ["viz.images=[0,1]", "viz.target=pred"],
    "activation_maximisation": ["viz.steps=3", "viz.classes=[circle,1]"],
    "inversion": ["viz.steps=3", "viz.layers=[block1,block2]"],
    "deep_dream": ["viz.steps=2", "viz.octaves=2"],
    "style_transfer": ["viz.steps=3"],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _files() -> dict[str, dict]:
    return {p.name[:-5]: yaml.safe_load(p.read_text()) for p in CONF.iterdir()
            if p.name.endswith(".yaml")}


def test_config_files_match_the_registry_and_python_defaults():
    files = _files()
    assert sorted(files) == visualize.names()
    for name, body in files.items():
        assert body["name"] == name
        sig = inspect.signature(visualize.get(name).fn).parameters
        assert set(body) - {"name"} == set(sig) - {"ctx"}, name
        for key, value in body.items():
            if key != "name":
                default = sig[key].default
                default = list(default) if isinstance(default, tuple) else default
                assert value == default, f"conf/viz/{name}.yaml: {key}={value!r}, Python {default!r}"


def _cfg(overrides: list[str], n: int | None = 32):
    size = [f"dataset.n={n}"] if n else []
    with initialize_config_module("faithbench.conf", version_base="1.3"):
        return compose("visualize", overrides=["device=cpu", *size, *overrides])


@pytest.mark.parametrize("name", visualize.names())
def test_every_visualisation_writes_pngs_and_logs_them(workdir, name):
    res = run(_cfg([f"viz={name}", *FAST.get(name, [])]))
    assert res["figures"]
    base = workdir.resolve() / "faithbench_out" / "visualize" / "shapes_cnn"
    uses_data = visualize.get(name).info.uses_dataset
    for p in res["figures"]:
        assert p.parent == (base / "shapes" / name if uses_data else base / name)
        assert p.read_bytes()[:8] == PNG
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    r = client.get_run(res["run_id"])
    assert r.info.status == "FINISHED" and r.data.tags["viz"] == name
    assert r.data.tags["faithbench.kind"] == "visualize"
    assert r.data.tags["dataset"] == ("shapes" if uses_data else "")
    assert {a.path for a in client.list_artifacts(r.info.run_id)} == {p.name for p in res["figures"]}
    assert r.data.params["viz.name"] == name and "seconds" in r.data.metrics


def test_image_files_need_no_dataset(workdir):
    from PIL import Image

    path = workdir / "scene.png"
    Image.new("RGB", (80, 80), (200, 40, 90)).save(path)
    # photos do not fit shapes_cnn's label space, but no dataset is read
    res = run(_cfg(["viz=deep_dream", "dataset=photos", f"viz.image={path}", "viz.steps=2",
                    "viz.octaves=1"], n=None))
    assert res["figures"][0].parent == workdir.resolve() / "faithbench_out" / "visualize" / "shapes_cnn" / "deep_dream"
    r = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(res["run_id"])
    assert r.data.tags["dataset"] == ""


def test_bad_parameters_and_pairs_are_clear_errors(workdir):
    with pytest.raises(ConfigError, match="has no parameter 'bogus'. Valid parameters: layer"):
        run(_cfg(["viz=filters", "+viz.bogus=1"]))
    with pytest.raises(ConfigError, match="unknown layer 'block9'"):
        run(_cfg(["viz=feature_maps", "viz.layer=block9"]))
    with pytest.raises(ConfigError, match="pick a matching pair"):
        run(_cfg(["viz=feature_maps", "dataset=photos"], n=None))
    with pytest.raises(ConfigError, match="unknown class of shapes_cnn 'circel'. Did you mean 'circle'"):
        run(_cfg(["viz=activation_maximisation", "viz.classes=[circel]", "viz.steps=1"]))
    with pytest.raises(ConfigError, match="unit 999 is outside 0..63 of layer 'block3'"):
        run(_cfg(["viz=top_patches", "viz.units=[999]", "dataset.limit=4"]))
    with pytest.raises(ConfigError, match="unknown reduction 'umap'"):
        run(_cfg(["viz=embedding", "viz.methods=[umap]"]))


def test_command_line_end_to_end(workdir):
    tmp_path = workdir  # holds an MLflow store with its tables made
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = subprocess.run(
        [sys.executable, "-m", "faithbench", "visualize", "-m", "viz=filters,feature_maps",
         "device=cpu", f"out_dir={tmp_path / 'out'}", f"tracking.uri={uri}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    base = tmp_path / "out" / "visualize" / "shapes_cnn"
    assert (base / "filters" / "filters_block1.0.png").read_bytes()[:8] == PNG  # reads no dataset
    assert (base / "shapes" / "feature_maps" / "feature_maps_block3.png").read_bytes()[:8] == PNG
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("faithbench_visualize")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["viz"] for r in runs) == ["feature_maps", "filters"]
    for r in runs:
        arts = [a.path for a in client.list_artifacts(r.info.run_id)]
        assert arts == [{"filters": "filters_block1.0.png",
                         "feature_maps": "feature_maps_block3.png"}[r.data.tags["viz"]]]
    bad = subprocess.run([sys.executable, "-m", "faithbench", "visualize", "viz=filters",
                          "viz.layer=nope", "device=cpu", f"tracking.uri={uri}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown layer 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr
    listed = subprocess.run([sys.executable, "-m", "faithbench", "list", "visualizations"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert listed.returncode == 0
    for name in visualize.names():
        assert name in listed.stdout
