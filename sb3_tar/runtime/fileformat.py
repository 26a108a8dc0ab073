"""The exported actor's file: a small JSON header and the arrays it points to, nothing executable.

Layout: the 8 bytes ``b"SB3TARA\\x01"``, the header's length as a little-endian uint32, the
header (UTF-8 JSON), the arrays back to back, little-endian, and last the CRC-32 of everything
before it (uint32), so a flipped bit anywhere (header, length or arrays) is caught before anything
is read. The header describes the observation, every layer (linear layers with their weight
encoding, see ``encoding``), the action bounds and where the model came from; each array is
``{"offset", "dtype", "shape"}`` into the payload, whose length and CRC-32 the header records too.
Files written before the whole-file checksum start with ``b"SB3TARA\\x00"`` and have no trailer;
they are still read, with the payload's checksum only. Any language can read it; Python needs
torch only (no pickle, so loading a file runs no code from it).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import torch

from sb3_tar.engine.errors import UserError
from sb3_tar.runtime.encoding import _BYTES, decode, encode
from sb3_tar.runtime.spec import ACTIVATIONS, DISCRETE_BOUNDS, Activation, ActorSpec, Linear, Normalization

MAGIC = b"SB3TARA\x01"  # with the whole-file CRC-32 trailer
MAGIC_WITHOUT_TRAILER = b"SB3TARA\x00"  # files written before it
FORMAT = "sb3-tar-actor"
VERSION = 2  # 2 added discrete actors (action bounds "argmax" and "categorical", action groups)
_TORCH_DTYPES = {"float32": torch.float32, "uint8": torch.uint8, "uint16": torch.int16, "int32": torch.int32}


class _Payload:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, dtype: str, tensor: torch.Tensor) -> dict[str, Any]:
        data = tensor.detach().cpu().contiguous().to(_TORCH_DTYPES[dtype])
        raw = data.numpy().tobytes() if data.numel() else b""
        entry = {"offset": self.size, "dtype": dtype, "shape": list(data.shape)}
        self.chunks.append(raw)
        self.size += len(raw)
        return entry


def _float_array(payload: _Payload, tensor: torch.Tensor | None) -> dict[str, Any] | None:
    return None if tensor is None else payload.add("float32", tensor.to(torch.float32))


def required_version(spec: ActorSpec) -> int:
    """The oldest format version that reads ``spec``: a file records it, so an older sb3-tar refuses
    what it cannot run with a version message, and still reads what it can."""
    return 2 if spec.action_bounds in DISCRETE_BOUNDS or spec.action_groups != 1 else 1


def write_actor(spec: ActorSpec, path: str | Path) -> Path:
    """Write ``spec`` to ``path`` (parent folders created); returns the path."""
    if sys.byteorder != "little":
        raise RuntimeError("sb3-tar actor files are little-endian; this big-endian machine cannot write them")
    payload = _Payload()
    layers: list[dict[str, Any]] = []
    for layer in spec.layers:
        if isinstance(layer, Linear):
            encoding, arrays = encode(layer.weight, layer.mask)
            layers.append({
                "type": "linear", "name": layer.name, "in_features": layer.in_features,
                "out_features": layer.out_features, "kept": layer.kept, "encoding": encoding,
                "arrays": {name: payload.add(dtype, tensor) for name, (dtype, tensor) in arrays.items()},
                "bias": _float_array(payload, layer.bias),
            })
        elif isinstance(layer, Activation):
            layers.append({"type": "activation", "name": layer.name, "options": dict(layer.options)})
        else:
            layers.append({"type": "normalization", "name": layer.name, "mean": _float_array(payload, layer.mean),
                           "std": _float_array(payload, layer.std), "scale": _float_array(payload, layer.scale),
                           "shift": _float_array(payload, layer.shift)})
    header = {
        "format": FORMAT,
        "version": required_version(spec),
        "observation": {"shape": list(spec.observation_shape), "divisor": spec.observation_divisor},
        "layers": layers,
        "action": {"shape": list(spec.action_shape), "bounds": spec.action_bounds, "groups": spec.action_groups,
                   "low": _float_array(payload, spec.action_low), "high": _float_array(payload, spec.action_high)},
        "metadata": dict(spec.metadata),
    }
    body = b"".join(payload.chunks)
    header["payload"] = {"nbytes": len(body), "crc32": zlib.crc32(body)}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = MAGIC + struct.pack("<I", len(encoded)) + encoded + body
    # Written beside the target and renamed over it: a full disk never leaves half a file, nor spoils an older one.
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(content + struct.pack("<I", zlib.crc32(content)))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_header(path: str | Path) -> tuple[dict[str, Any], memoryview]:
    """The header of an actor file and its payload, checked whole (CRC-32) before anything is parsed.

    :raises ValueError: naming the file, for anything but an intact sb3-tar actor file.
    """
    data = Path(path).read_bytes()
    corrupt = f"{path}: the file is truncated or corrupt"
    if data[: len(MAGIC)] not in (MAGIC, MAGIC_WITHOUT_TRAILER):
        raise UserError(f"{path}: not an sb3-tar actor file (it does not start with {MAGIC!r}); "
                        "write one with sb3_tar.export.export_actor or `sb3-tar export`")
    if data[: len(MAGIC)] == MAGIC:
        if len(data) < len(MAGIC) + 8 or zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
            raise UserError(f"{corrupt} (its CRC-32 does not match: re-export it)")
        data = data[:-4]
    if len(data) < len(MAGIC) + 4:
        raise UserError(f"{corrupt} ({len(data)} bytes)")
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(data[start: start + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{corrupt} (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: the header is not a JSON object; the file is corrupt")
    version = header.get("version")
    if (header.get("format") != FORMAT or isinstance(version, bool) or not isinstance(version, int)
            or not 1 <= version <= VERSION):
        raise UserError(f"{path}: format {header.get('format')!r} version {version!r}; this sb3-tar reads "
                        f"{FORMAT!r} versions 1 to {VERSION} (a newer sb3-tar may read it)")
    payload = memoryview(data)[start + length:]
    recorded = header.get("payload")
    if (not isinstance(recorded, dict) or len(payload) != recorded.get("nbytes")
            or zlib.crc32(payload) != recorded.get("crc32")):
        raise UserError(f"{corrupt} ({len(payload)} payload bytes, or a CRC-32 mismatch)")
    return header, payload


def _array(payload: memoryview, entry: dict[str, Any] | None) -> torch.Tensor | None:
    if entry is None:
        return None
    count = 1
    for size in entry["shape"]:
        count *= size
    start = entry["offset"]
    raw = bytearray(payload[start: start + count * _BYTES[entry["dtype"]]])
    if not count:
        return torch.zeros(entry["shape"], dtype=_TORCH_DTYPES[entry["dtype"]])
    return torch.frombuffer(raw, dtype=_TORCH_DTYPES[entry["dtype"]]).reshape(entry["shape"])


def read_actor(path: str | Path) -> ActorSpec:
    """The ``ActorSpec`` that ``write_actor`` wrote to ``path``.

    :raises ValueError: naming the file, for a file that is not an intact actor file (a header whose
        entries do not describe an actor is refused as corrupt, never a raw ``KeyError``).
    """
    if sys.byteorder != "little":
        raise RuntimeError("sb3-tar actor files are little-endian; this big-endian machine cannot read them")
    header, payload = read_header(path)
    try:
        return _spec_from(path, header, payload)
    except ValueError:
        raise
    except (KeyError, TypeError, IndexError, AttributeError, RuntimeError) as error:
        raise UserError(f"{path}: the file is corrupt: its header does not describe an actor "
                        f"({type(error).__name__}: {error})") from None


def _spec_from(path: str | Path, header: dict[str, Any], payload: memoryview) -> ActorSpec:
    layers: list[Linear | Activation | Normalization] = []
    for entry in header["layers"]:
        if entry["type"] == "linear":
            arrays = {name: (ref["dtype"], _array(payload, ref)) for name, ref in entry["arrays"].items()}
            weight, mask = decode(entry["encoding"], arrays, entry["out_features"], entry["in_features"])
            layers.append(Linear(weight, mask, _array(payload, entry["bias"]), entry["name"]))
        elif entry["type"] == "activation":
            if entry["name"] not in ACTIVATIONS:
                raise UserError(f"{path}: activation {entry['name']!r} is not supported by this sb3-tar; "
                                f"supported: {sorted(ACTIVATIONS)}")
            layers.append(Activation(entry["name"], entry["options"]))
        elif entry["type"] == "normalization":
            layers.append(Normalization(*(_array(payload, entry[key]) for key in ("mean", "std", "scale", "shift")),
                                        entry["name"]))
        else:
            raise UserError(f"{path}: layer type {entry['type']!r} is not one of ['linear', 'activation', "
                            "'normalization']")
    action = header["action"]
    observation = header["observation"]
    return ActorSpec(tuple(observation["shape"]), observation["divisor"], tuple(layers), tuple(action["shape"]),
                     _array(payload, action["low"]), _array(payload, action["high"]), action["bounds"],
                     header["metadata"], action.get("groups", 1))  # files written before groups hold one
