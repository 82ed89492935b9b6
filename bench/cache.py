"""On-disk heatmap cache: one checksummed, losslessly compressed float32 file per
(method key, sample).

A map read back is bit-for-bit the map that was computed, so scoring never depends on
storage: a cached rerun, ``cache=false`` and a direct call of the method give the same
numbers. (Format 1, ``FBH1``, stored ``fp16(map / max|map|)``: that created ties and
moved deletion/insertion AUCs by up to 9e-4; its files are never read as maps, and the
format is part of the cache directory's name so they are not even looked up.) Each
file is ``FBH2``, a JSON header (shape, CRC32 of the payload) and the payload: the
float32 map split into its four byte planes (as blosc's shuffle: ~10% smaller) and
zlib-compressed. A truncated or corrupted file fails its check, is reported, and is
recomputed.
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
MAGIC = b"FBH2"
OLD_MAGICS = (b"FBH1",)  # fp16 maps: not exact, so never decoded as a map
FORMAT = "f32"  # part of the cache directory's name: a new format never reads old files


def encode(m: np.ndarray) -> bytes:
    """One [H,W] map as an ``FBH2`` file: lossless, checksummed."""
    m = np.ascontiguousarray(m, dtype="<f4")
    payload = zlib.compress(m.view(np.uint8).reshape(-1, 4).T.tobytes(), 1)
    head = json.dumps({"shape": list(m.shape), "crc": zlib.crc32(payload)}).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + payload


def decode(raw: bytes) -> np.ndarray:
    """The exact float32 map of an ``FBH2`` file; ValueError (or a zlib, struct or JSON
    error) for anything else."""
    if raw[:4] in OLD_MAGICS:
        raise ValueError(f"old format {raw[:4]!r} (fp16, not exact)")
    if raw[:4] != MAGIC:
        raise ValueError("bad magic")
    (n,) = struct.unpack("<I", raw[4:8])
    head = json.loads(raw[8 : 8 + n])
    payload = raw[8 + n :]
    if zlib.crc32(payload) != head["crc"]:
        raise ValueError("checksum mismatch")
    shape = tuple(int(s) for s in head["shape"])
    planes = np.frombuffer(zlib.decompress(payload), dtype=np.uint8)
    if planes.size != 4 * int(np.prod(shape)):
        raise ValueError(f"payload of {planes.size} bytes does not hold shape {shape}")
    return planes.reshape(4, -1).T.copy().view("<f4").reshape(shape).astype(np.float32)


class HeatmapCache:
    """Files under ``root/<namespace>-<FORMAT>/``; ``namespace`` hashes model weights,
    method, method params and the dataset transform, keys are sample ids (with the
    target)."""

    def __init__(self, root: str | Path, namespace: str) -> None:
        self.dir = Path(root) / f"{namespace}-{FORMAT}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.corrupt = 0

    def _path(self, key: str) -> Path:
        return self.dir / (hashlib.sha1(key.encode()).hexdigest()[:24] + ".fbh")

    def get(self, keys: list[str]) -> list[Tensor | None]:
        """The stored [H,W] float32 maps (CPU), None where absent or unreadable."""
        return [self._read(self._path(k)) for k in keys]

    def put(self, keys: list[str], maps: Tensor) -> None:
        """Store [B,H,W] maps exactly (as float32; atomic per file)."""
        for k, m in zip(keys, maps.detach().float().cpu().numpy()):
            path = self._path(k)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(encode(m))
            os.replace(tmp, path)

    def _read(self, path: Path) -> Tensor | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return torch.from_numpy(decode(raw))
        except (ValueError, KeyError, TypeError, struct.error, zlib.error) as e:
            self.corrupt += 1
            log.warning("heatmap cache entry %s is unreadable (%s); recomputing it", path, e)
            return None

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*.fbh"))
