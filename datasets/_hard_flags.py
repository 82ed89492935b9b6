"""The pointing-game "difficult" subset flags of Zhang et al. (Excitation Backprop, ECCV
2016), in the file format TorchRay ships (``pointing_game_ebp_voc07_difficult.txt``,
``pointing_game_ebp_coco_difficult.txt``).

One line per image: the image name (file name without extension: ``000001`` for VOC,
``COCO_val2014_000000000042`` for COCO), then one 0/1 flag per class in the dataset's
class order (20 for VOC, 80 for COCO), tab- or space-separated. A 1 puts the (image,
class) pair in the difficult subset. As in TorchRay, an image missing from the file keeps
all its classes in the subset.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from faithbench.errors import ConfigError


def read_flags(path: str | Path, num_classes: int) -> dict[str, Tensor]:
    """Image name -> the class ids [J] int64 flagged difficult for that image."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"difficult flag file {str(path)!r} does not exist. TorchRay ships "
                          "pointing_game_ebp_voc07_difficult.txt and pointing_game_ebp_coco_"
                          "difficult.txt in torchray/benchmark/; or set dataset.difficult_file="
                          "null to score the full set only")
    out: dict[str, Tensor] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != num_classes + 1 or any(p not in ("0", "1") for p in parts[1:]):
            raise ConfigError(f"{path}:{n}: expected an image name and {num_classes} 0/1 "
                              f"flags, got {len(parts) - 1} fields")
        flags = torch.tensor([p == "1" for p in parts[1:]])
        out[parts[0]] = flags.nonzero()[:, 0]
    return out


def hard_classes(flags: dict[str, Tensor] | None, name: str, present: Tensor) -> Tensor | None:
    """The difficult classes [J] of image ``name`` (``present``: its classes, used when
    the image is not in the file); None when no flag file was given."""
    if flags is None:
        return None
    return flags.get(name, present)
