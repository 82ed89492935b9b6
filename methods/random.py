"""Random baseline: seeded uniform noise, a map with no information (a floor for every
metric)."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

from faithbench.methods import register
from faithbench.methods._common import check_inputs


def image_seed(seed: int | None, image: Tensor) -> int:
    """A 63-bit seed from the run seed and the image's bytes: each image gets its own
    noise, whatever batch it comes in and on every device."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(0 if seed is None else int(seed)).encode())
    h.update(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


@register(context=("seed",), cost="free")
def random(model: nn.Module | None, x: Tensor, target: Tensor, seed: int | None = None) -> Tensor:
    """Independent U(0, 1) values per pixel; it ignores the model and the target.

    Args:
        model: unused.
        x: images [B,3,H,W]; each image's noise is drawn from a generator seeded by
            ``seed`` and a hash of the image, so it does not depend on the batch.
        target: unused (checked for shape).
        seed: the run seed.

    Returns:
        [B,H,W] float32 in [0, 1).
    """
    check_inputs(x, target)
    _, _, h, w = x.shape
    maps = [torch.rand(h, w, generator=torch.Generator().manual_seed(image_seed(seed, img)))
            for img in x]
    return torch.stack(maps).to(x.device)
