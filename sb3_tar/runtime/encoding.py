"""How a layer's kept weights are stored: the smallest of three encodings, chosen per layer.

For a layer of ``P = out * in`` weights of which ``k`` are kept (float32 values, 4 bytes each):

- ``dense``: every weight, ``4 P`` bytes: a layer that keeps every weight (a sparse layer, however
  dense, takes one of the other two, so that its mask travels with it);
- ``bitmask``: one bit per weight (row-major, least significant bit first) and the kept values,
  ``ceil(P / 8) + 4 k`` bytes;
- ``indices``: the number of kept weights of each row and the column of each kept weight, both in
  the narrowest unsigned integer that holds them (``uint8``, ``uint16`` or ``int32``), and the kept
  values, ``out * count_bytes + k * (index_bytes + 4)`` bytes.

The sizes are exact, so the choice is made by computing them, not by a density threshold:
a bitmask wins when ``k / P > 1 / (8 * index_bytes)`` (above 12.5 % density for 256-wide inputs,
above 6.25 % for 1024-wide ones), indices below. Values stay float32, so an exported actor
computes what the model computes.
"""

from __future__ import annotations

import torch

from sb3_tar.engine.errors import UserError

ENCODINGS = ("dense", "bitmask", "indices")
_BITS = torch.arange(8, dtype=torch.uint8)


def unsigned_dtype(largest: int) -> str:
    """The narrowest of ``uint8``, ``uint16``, ``int32`` that holds ``0 .. largest``."""
    if largest < 2**8:
        return "uint8"
    if largest < 2**16:
        return "uint16"
    return "int32"


_BYTES = {"uint8": 1, "uint16": 2, "int32": 4, "float32": 4}


def encoded_sizes(out_features: int, in_features: int, kept: int,
                  largest_row_count: int | None = None) -> dict[str, int]:
    """Bytes of the weights of one layer in each encoding (biases not included).

    :param largest_row_count: the most weights one row keeps (default: ``in_features``), which sets
        the width of the row counts of ``indices``.
    """
    weights = out_features * in_features
    counts = unsigned_dtype(in_features if largest_row_count is None else largest_row_count)
    return {
        "dense": 4 * weights,
        "bitmask": -(-weights // 8) + 4 * kept,
        "indices": out_features * _BYTES[counts] + kept * (_BYTES[unsigned_dtype(in_features - 1)] + 4),
    }


def to_dtype(values: torch.Tensor, dtype: str) -> torch.Tensor:
    """Integers as one of the file's integer types (``uint16`` as its 16 low bits in an int16 tensor)."""
    if dtype == "uint16":  # 32768..65535 become the negative int16 with the same 16 bits
        values = values.to(torch.int32)
        return torch.where(values >= 2**15, values - 2**16, values).to(torch.int16)
    return values.to({"uint8": torch.uint8, "int32": torch.int32}[dtype])


def from_dtype(values: torch.Tensor, dtype: str) -> torch.Tensor:
    """The inverse of ``to_dtype``, as int64."""
    if dtype == "uint16":
        return values.to(torch.int64) & 0xFFFF
    return values.to(torch.int64)


def encode(weight: torch.Tensor, mask: torch.Tensor) -> tuple[str, dict[str, tuple[str, torch.Tensor]]]:
    """The smallest encoding of a layer that keeps its mask, and its arrays, ``name -> (file dtype, tensor)``.

    ``dense`` only for a layer that keeps every weight: a nearly dense sparse layer would be a few bytes
    smaller dense, but its pruned weights would read back as kept zeros and its kept count would be wrong.
    """
    weight, mask = weight.detach().cpu().to(torch.float32), mask.detach().cpu().to(torch.bool)
    out_features, in_features = weight.shape
    row_counts = mask.sum(dim=1)
    sizes = encoded_sizes(out_features, in_features, int(mask.sum()), int(row_counts.max()) if out_features else 0)
    candidates = ENCODINGS if bool(mask.all()) else ENCODINGS[1:]
    encoding = min(candidates, key=lambda name: (sizes[name], ENCODINGS.index(name)))
    if encoding == "dense":
        return encoding, {"values": ("float32", weight.reshape(-1))}
    values = ("float32", weight[mask])  # row-major order of the kept positions
    if encoding == "bitmask":
        return encoding, {"bits": ("uint8", pack_bits(mask.reshape(-1))), "values": values}
    counts_dtype = unsigned_dtype(int(row_counts.max()))
    columns = mask.nonzero()[:, 1]
    return encoding, {
        "row_counts": (counts_dtype, to_dtype(row_counts, counts_dtype)),
        "columns": (unsigned_dtype(in_features - 1), to_dtype(columns, unsigned_dtype(in_features - 1))),
        "values": values,
    }


def decode(encoding: str, arrays: dict[str, tuple[str, torch.Tensor]], out_features: int,
           in_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, mask)`` of a layer from its encoding and arrays (as ``encode`` returns them)."""
    if encoding not in ENCODINGS:
        raise UserError(f"weight encoding {encoding!r} is not one of {list(ENCODINGS)}")
    shape = (out_features, in_features)
    if encoding == "dense":
        weight = arrays["values"][1].reshape(shape).to(torch.float32)
        return weight, torch.ones(shape, dtype=torch.bool)
    if encoding == "bitmask":
        mask = unpack_bits(arrays["bits"][1], out_features * in_features).reshape(shape)
    else:
        counts = from_dtype(*reversed(arrays["row_counts"]))
        columns = from_dtype(*reversed(arrays["columns"]))
        if counts.numel() != out_features or int(counts.sum()) != columns.numel():
            raise UserError(f"a {out_features}x{in_features} layer's row counts ({counts.numel()} rows, "
                            f"{int(counts.sum())} weights) do not match its {columns.numel()} column indices")
        rows = torch.repeat_interleave(torch.arange(out_features), counts)
        mask = torch.zeros(shape, dtype=torch.bool)
        mask[rows, columns] = True
    values = arrays["values"][1].to(torch.float32)
    if int(mask.sum()) != values.numel():
        raise UserError(f"a {out_features}x{in_features} layer keeps {int(mask.sum())} weights but stores "
                        f"{values.numel()} values")
    weight = torch.zeros(shape, dtype=torch.float32)
    weight[mask] = values
    return weight, mask


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Booleans packed 8 to a byte, least significant bit first (as ``numpy.packbits(bitorder="little")``)."""
    padded = torch.zeros(-(-bits.numel() // 8) * 8, dtype=torch.uint8)
    padded[: bits.numel()] = bits.to(torch.uint8)
    return (padded.reshape(-1, 8) << _BITS).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` booleans of ``pack_bits``'s bytes."""
    return ((packed.to(torch.uint8).reshape(-1, 1) >> _BITS) & 1).reshape(-1)[:count].to(torch.bool)
