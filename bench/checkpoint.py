"""Safe checkpoint loading: tensors only, never arbitrary unpickling."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor

from faithbench.errors import ConfigError


def load_state_dict(path: str | Path, key: str | None = None) -> dict[str, Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``.

    Args:
        path: a ``.pt``/``.pth`` file.
        key: optional entry holding the state dict (``"state_dict"``, ``"model"``);
            by default the usual wrappers are unwrapped when present.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(
            f"refusing to load checkpoint {str(path)!r}: it needs arbitrary unpickling, "
            "which can run code. Re-save its state_dict with torch.save(model.state_dict(), ...)."
            f" ({str(e).splitlines()[0]})"
        ) from None
    for k in ([key] if key else ["state_dict", "model", "model_state_dict"]):
        if isinstance(obj, dict) and k in obj and isinstance(obj[k], dict):
            obj = obj[k]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ConfigError(f"checkpoint {str(path)!r} holds no state dict of tensors")
    return obj
