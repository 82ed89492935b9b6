"""Models from any nn.Module: the CAM layer found as torchcam finds it, the ModelSpec's
identity, and the ``callable`` model entry through the CLI."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from faithbench.errors import ConfigError, IncompatibleError
from faithbench.models.module import find_cam_layer, from_module


class Branchy(nn.Module):
    """A spatial head after pooling-free layers, then a functional pool: the last module
    with a spatial output is ``head.1`` (a ReLU inside a Sequential that is not last)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Conv2d(4, 6, 1), nn.ReLU())
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.stem(x)).mean((2, 3)))


def test_cam_layer_matches_torchcam(tiny_cnn, tiny_resnet):
    torchcam = pytest.importorskip("torchcam.methods._utils")
    import torchvision

    nets = [tiny_cnn, tiny_resnet, Branchy().eval(),
            torchvision.models.mobilenet_v3_small(num_classes=4).eval()]
    for net in nets:
        for shape in ((3, 32, 32), (3, 64, 48)):
            assert find_cam_layer(net, shape) == torchcam.locate_candidate_layer(net, shape)


def test_cam_layer_hand_checked(tiny_cnn, caplog):
    # TinyCNN: features (Sequential) finishes after its last conv, 16x16 maps; the
    # functional relu and the 1x1 pool follow; a container finishes after its children.
    with caplog.at_level("INFO", logger="faithbench"):
        assert find_cam_layer(tiny_cnn, (3, 32, 32)) == "features"
    assert "'features'" in caplog.text
    assert find_cam_layer(Branchy(), (3, 8, 8)) == "head"
    flat = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    assert find_cam_layer(flat, (3, 2, 2)) is None  # no spatial output at all
    one = nn.Sequential(nn.Conv2d(3, 2, 4), nn.Flatten(), nn.Linear(2, 2))
    assert find_cam_layer(one, (3, 4, 4)) is None  # 1x1 maps are not spatial


def test_from_module_spec(tiny_cnn):
    spec = from_module(tiny_cnn, preprocess={"size": 32, "resize": "stretch"})
    assert spec.cam_layer == "features" and spec.class_names == ["0", "1", "2", "3", "4"]
    assert spec.preprocess.size == 32 and spec.label_space == "custom"
    assert not any(p.requires_grad for p in spec.model.parameters())
    same = from_module(tiny_cnn, preprocess={"size": 32}, cam_layer="features.5")
    assert same.weights_id == spec.weights_id and same.cam_layer == "features.5"
    with torch.no_grad():
        tiny_cnn.fc.bias.add_(1.0)
    assert from_module(tiny_cnn, preprocess={"size": 32}).weights_id != spec.weights_id
    with pytest.raises(ConfigError, match="features.9"):
        from_module(tiny_cnn, preprocess={"size": 32}, cam_layer="features.9")
    with pytest.raises(ConfigError, match="5 outputs but 2 class names"):
        from_module(tiny_cnn, preprocess={"size": 32}, class_names=["a", "b"])
    with pytest.raises(ConfigError, match="resize"):
        from_module(tiny_cnn, preprocess={"resize": "squash"})


FACTORY = '''
import torch
from torch import nn


def build(width=4, classes=5):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))
'''


def test_callable_model_through_the_cli(workdir):
    from faithbench.cli import compose
    from faithbench.run import MODELS, prepare, run

    (workdir / "my_models.py").write_text(textwrap.dedent(FACTORY))
    names = ["circle", "square", "triangle", "star", "cross"]  # the shapes dataset's classes
    (workdir / "names.txt").write_text("\n".join(names) + "\n")
    base = ["model=callable", "model.fn=my_models:build", "model.size=64",
            "model.resize=stretch", "model.class_names=names.txt", "dataset=shapes",
            "dataset.limit=4", "batch_size=4", "figures.grid=0", "metrics=[deletion]",
            "device=cpu"]
    with pytest.raises(IncompatibleError, match="'custom' classes"):
        prepare(compose(base))  # the default label space is custom
    base.append("model.label_space=shapes")
    (workdir / "wrong.txt").write_text("\n".join(reversed(names)))
    with pytest.raises(IncompatibleError, match="classes differ"):
        prepare(compose([*base, "model.class_names=wrong.txt"]))
    job = prepare(compose([*base, "+model.width=6"]))
    assert job.scorer.spec.cam_layer == "1" and job.scorer.spec.class_names[1] == "square"
    assert job.scorer.spec.model[0].out_channels == 6
    (workdir / "my_models.py").write_text(textwrap.dedent(FACTORY) + "\n# edited\n")
    MODELS.clear()  # a sweep's process keeps its model loaded; a new process would not
    assert prepare(compose([*base, "+model.width=6"])).key != job.key  # source in the key
    with pytest.raises(ConfigError, match="needs model.fn=package.module:function"):
        prepare(compose([*base[:1], *base[2:]]))
    with pytest.raises(ConfigError, match="no attribute 'buld'"):
        prepare(compose([*base[:1], "model.fn=my_models:buld", *base[2:]]))
    res = run(compose(base))  # the whole run: scored and logged
    assert res["n_samples"] == 4 and 0 <= res["deletion"] <= 1
