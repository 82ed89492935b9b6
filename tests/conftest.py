"""Shared fixtures: tiny models and inputs that run in milliseconds on CPU."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# the registry index (faithbench.index) and report artifact cache: one per test session
if "FAITHBENCH_CACHE_DIR" not in os.environ:
    os.environ["FAITHBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="faithbench-cache-")
    atexit.register(shutil.rmtree, os.environ["FAITHBENCH_CACHE_DIR"], ignore_errors=True)
torch.set_num_threads(min(2, torch.get_num_threads()))


class TinyCNN(nn.Module):
    """conv-relu-conv-relu(inplace)-pool-conv-relu-GAP-linear: a GAP model (CAM applies)
    mixing nn.ReLU modules, an in-place ReLU and a functional relu."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.features(x))
        return self.fc(self.pool(x).flatten(1))


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / max(1, p[0].numel()) ** 0.5))
    return module.eval()


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables made (creating them takes seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch, _empty_mlflow_db) -> Path:
    """A fresh working directory holding an empty default MLflow store."""
    shutil.copy(_empty_mlflow_db, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def tiny_cnn() -> nn.Module:
    """TinyCNN with seeded weights; CAM layer ``features.5``."""
    return _seeded(TinyCNN(), 0)


@pytest.fixture
def tiny_resnet() -> nn.Module:
    """A torchvision ResNet-18 topology (residual blocks, BatchNorm, in-place ReLU),
    5 classes, seeded weights; CAM layer ``layer4``."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval()


@pytest.fixture
def images() -> torch.Tensor:
    """A batch of 4 random normalised images [4,3,32,32]."""
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def one_thread():
    """Small convolutions run fastest on one thread when other jobs share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_vit() -> nn.Module:
    """A timm VisionTransformer for 32x32 inputs (8-pixel patches, 3 blocks of 2 heads,
    5 classes), seeded weights: the model of methods registered with ``models="vit"``."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return _seeded(VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3,
                                     num_heads=2, num_classes=5), 0)
