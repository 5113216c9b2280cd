"""A safetensors weights file read in the order that keeps a hostile file harmless.

Why: the tensors of a model directory can come from anyone. The file is opened once (a regular file
inside the model directory, see `gridcast.safe_files`); its 8-byte header length and JSON header
are read first and checked (dtypes, shapes, contiguous offsets, total bytes under `MAX_WEIGHTS_BYTES`,
the file size equal to what the header describes) and the caller checks the shapes against the
config, all before a byte of tensor data is read; then the data, then the checksum, then parsing.
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
from dataclasses import dataclass
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes

from gridcast.errors import CheckpointError
from gridcast.safe_files import open_regular, parse_json, read_exactly

MAX_WEIGHTS_BYTES = 2 << 30      # a weights file (model or trainer state) larger than 2 GiB is refused
MAX_HEADER_BYTES = 16 << 20      # the JSON header of a safetensors file
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class TensorSpec:
    """What the header says about one tensor, before its data is read."""
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _header(raw: object, path: str) -> dict[str, TensorSpec]:
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    specs: dict[str, TensorSpec] = {}
    spans = []
    for name, entry in raw.items():
        if name == "__metadata__":
            continue
        if not (isinstance(entry, dict) and entry.get("dtype") in DTYPE_BYTES and isinstance(entry.get("shape"), list)
                and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not all(type(n) is int and 0 <= n for n in shape + offsets) or len(shape) > 8:
            raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape or offsets")
        spec = TensorSpec(entry["dtype"], tuple(shape))
        if offsets[1] - offsets[0] != spec.numel * DTYPE_BYTES[spec.dtype]:
            raise CheckpointError(f"{path}: tensor {name!r} offsets do not match its shape {list(shape)}")
        specs[name] = spec
        spans.append((offsets[0], offsets[1]))
    end = 0
    for start, stop in sorted(spans):
        if start != end:
            raise CheckpointError(f"{path}: tensor data is not contiguous in the header")
        end = stop
    return specs


def data_bytes(specs: dict[str, TensorSpec]) -> int:
    return sum(s.numel * DTYPE_BYTES[s.dtype] for s in specs.values())


def read_weights(path: str | os.PathLike, sha256: str,
                 check: Callable[[dict[str, TensorSpec]], None] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of `path`, after the header checks, `check(specs)` (the caller's: shapes against
    the config), the size check and the checksum; floating tensors must be finite."""
    path = os.fspath(path)
    fd, size = open_regular(path, MAX_WEIGHTS_BYTES, CheckpointError, what="weights file")
    try:
        if size < 8:
            raise CheckpointError(f"{path} is corrupted or truncated ({size} bytes, no safetensors header)")
        (length,) = struct.unpack("<Q", read_exactly(fd, 8, path, CheckpointError))
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path} is corrupted or truncated (header length {length} does not fit "
                                  f"a {size}-byte file)")
        head = read_exactly(fd, length, path, CheckpointError)
        specs = _header(parse_json(head, f"{path} header", CheckpointError), path)
        expected = 8 + length + data_bytes(specs)
        if size != expected:
            raise CheckpointError(f"{path} is corrupted or truncated ({size} bytes, its header describes {expected})")
        if check is not None:
            check(specs)
        blob = struct.pack("<Q", length) + head + read_exactly(fd, size - 8 - length, path, CheckpointError)
    finally:
        os.close(fd)
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise CheckpointError(f"{path} is corrupted or truncated (checksum mismatch)")
    try:
        tensors = load_safetensors_bytes(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
    return tensors
