"""On-disk heatmap cache: one checksummed, compressed fp16 file per (method key, sample).

Maps are stored as ``fp16(map / s)`` with the per-map scale ``s = max|map|`` kept in
fp32, so gradients of 1e-8 survive the half precision. The runner scores the decoded
map whether it was just computed or read back (``quantize``), so a cached rerun gives the
same numbers as the first run. A truncated or corrupted file fails its CRC32 check, is
reported, and is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)
MAGIC = b"FBH1"


def quantize(maps: Tensor) -> Tensor:
    """The maps as the cache stores them: [B,H,W] -> [B,H,W] float32."""
    q, s = _encode(maps)
    return q.float() * s.view(-1, 1, 1)


def _encode(maps: Tensor) -> tuple[Tensor, Tensor]:
    finite = torch.where(maps.isfinite(), maps.abs(), torch.zeros_like(maps))
    s = finite.flatten(1).amax(1).float()
    s = torch.where(s > 0, s, torch.ones_like(s))
    return (maps / s.view(-1, 1, 1)).half(), s


class HeatmapCache:
    """Files under ``root/<namespace>/``; ``namespace`` hashes model weights, method,
    method params and the dataset transform, keys are sample ids (with the target)."""

    def __init__(self, root: str | Path, namespace: str) -> None:
        self.dir = Path(root) / namespace
        self.dir.mkdir(parents=True, exist_ok=True)
        self.corrupt = 0

    def _path(self, key: str) -> Path:
        return self.dir / (hashlib.sha1(key.encode()).hexdigest()[:24] + ".fbh")

    def get(self, keys: list[str]) -> list[Tensor | None]:
        return [self._read(self._path(k)) for k in keys]

    def put(self, keys: list[str], maps: Tensor) -> None:
        q, s = _encode(maps.detach())
        q, s = q.cpu().numpy(), s.cpu().numpy()
        for k, qi, si in zip(keys, q, s):
            payload = zlib.compress(qi.tobytes(), 1)
            head = json.dumps({"shape": list(qi.shape), "scale": float(si),
                               "crc": zlib.crc32(payload)}).encode()
            path = self._path(k)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(MAGIC + struct.pack("<I", len(head)) + head + payload)
            os.replace(tmp, path)

    def _read(self, path: Path) -> Tensor | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            if raw[:4] != MAGIC:
                raise ValueError("bad magic")
            (n,) = struct.unpack("<I", raw[4:8])
            head = json.loads(raw[8 : 8 + n])
            payload = raw[8 + n :]
            if zlib.crc32(payload) != head["crc"]:
                raise ValueError("checksum mismatch")
            q = np.frombuffer(zlib.decompress(payload), dtype=np.float16).reshape(head["shape"])
            return torch.from_numpy(q.astype(np.float32)) * head["scale"]
        except (ValueError, KeyError, struct.error, zlib.error, json.JSONDecodeError) as e:
            self.corrupt += 1
            log.warning("heatmap cache entry %s is corrupt (%s); recomputing it", path, e)
            return None

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*.fbh"))
