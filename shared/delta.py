"""Model deltas: GGUF-aware, tensor by tensor; whole-file bsdiff4 for anything else.

Patch format (one file): ``LCDELTA1`` | old sha256 (32 bytes) | new sha256 (32) | new length (u64) |
u32 n | n bytes of raw-deflated JSON ops | one bz2 stream of payloads. The ops, in order, write the new
file from start to end:

* ``copy``   — bytes that exist unchanged in the old file (unchanged tensors, merged when adjacent);
* ``bsdiff`` — bsdiff4 from an old region to the new bytes (a changed tensor, chunked so no patch covers
  more than ``chunk_bytes``; the metadata section is diffed the same way). Its control, diff and extra
  blocks go into the one shared bz2 stream instead of three bz2 streams per patch, and the control
  block of an in-place change is left implicit: per-patch overhead is what decides the comparison with
  whole-file bsdiff4 (measured in ``tests/benchmarks/delta.py``);
* ``data``   — new bytes with no counterpart, in the bz2 stream.

Diffing reads one chunk pair at a time and applying streams op by op into the output, so memory stays
bounded by the chunk size whatever the model size. The preamble carries the sha256 of the old file (a
delta applies only to its own base) and of the new one (checked while writing).
"""

from __future__ import annotations

import bz2
import hashlib
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import bsdiff4.core as bsdiff_core

from linecrew.shared.errors import DeltaBaseMismatchError, DeltaFormatError
from linecrew.shared.release import BoundedHasher

MAGIC = b"LCDELTA1"
CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Region:
    name: str
    offset: int
    length: int


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def gguf_layout(path: Path) -> list[Region] | None:
    """Regions of a GGUF file in file order: ``__metadata__``, then each tensor (with its padding);
    ``None`` if the file is not GGUF."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            return None
    import gguf

    reader = gguf.GGUFReader(str(path))
    size = path.stat().st_size
    tensors = sorted(reader.tensors, key=lambda t: t.data_offset)
    regions = [Region("__metadata__", 0, int(tensors[0].data_offset) if tensors else size)]
    for i, t in enumerate(tensors):
        end = int(tensors[i + 1].data_offset) if i + 1 < len(tensors) else size
        regions.append(Region(t.name, int(t.data_offset), end - int(t.data_offset)))
    return regions


# --------------------------------------------------------------------------------------------- diff
def make_delta(old: Path, new: Path, out: Path, *, chunk_bytes: int = CHUNK_BYTES) -> dict[str, Any]:
    """Write a delta turning ``old`` into ``new``; returns the header."""
    old_layout, new_layout = gguf_layout(old), gguf_layout(new)
    header: dict[str, Any] = {"old": sha256_file(old), "new": sha256_file(new), "length": new.stat().st_size}
    payload_path = out.with_suffix(out.suffix + ".payload")
    with open(old, "rb") as fo, open(new, "rb") as fn, open(payload_path, "wb") as raw_pay:
        pay = _StreamWriter(raw_pay)
        if old_layout is None or new_layout is None:
            ops = [_bsdiff_op(fo.read(), fn.read(), 0, pay)]  # whole-file fallback
        else:
            ops = list(_gguf_ops(fo, fn, old_layout, new_layout, pay, chunk_bytes))
        pay.close()
    header["ops"] = _merge_copies(ops)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = z.compress(json.dumps(_pack(header["ops"]), separators=(",", ":")).encode()) + z.flush()
    with open(out, "wb") as f, open(payload_path, "rb") as payload_file:
        f.write(MAGIC + bytes.fromhex(header["old"]) + bytes.fromhex(header["new"])
                + struct.pack("<QI", header["length"], len(packed)) + packed)
        while chunk := payload_file.read(1 << 20):
            f.write(chunk)
    payload_path.unlink()
    return header


_FIELDS = {"copy": ("src", "len"), "bsdiff": ("src", "src_len", "len", "c", "d", "e"), "data": ("len",)}
_IN_PLACE = {"copy": ("len",), "bsdiff": ("len", "c", "d", "e")}  # source = same offset, same length


def _pack(ops: list[dict[str, Any]]) -> list[list[Any]]:
    """Ops travel as compact lists (the header is part of every patch's size); when the source is the
    same offset and length in the old file, as for tensors changed in place, it is left implicit."""
    out, pos = [], 0
    for op in ops:
        kind = op["op"]
        if kind in _IN_PLACE and op["src"] == pos and op.get("src_len", op["len"]) == op["len"]:
            out.append([kind[0], *(op[k] for k in _IN_PLACE[kind])])
        else:
            out.append([kind[0].upper(), *(op[k] for k in _FIELDS[kind])])
        pos += op["len"]
    return out


def _unpack(packed: list[list[Any]]) -> list[dict[str, Any]]:
    names = {k[0]: k for k in _FIELDS}
    ops, pos = [], 0
    for item in packed:
        code = item[0] if item and isinstance(item[0], str) else ""
        kind = names.get(code.lower())
        fields = (_IN_PLACE if code.islower() and kind in _IN_PLACE else _FIELDS).get(kind or "", ())
        if kind is None or len(item) != len(fields) + 1:
            raise DeltaFormatError(f"bad delta operation {item!r}")
        op = {"op": kind, **dict(zip(fields, item[1:], strict=True))}
        if code.islower() and kind in _IN_PLACE:
            op.setdefault("src", pos)
            if kind == "bsdiff":
                op["src_len"] = op["len"]
        ops.append(op)
        pos += op["len"]
    return ops


def _merge_copies(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent copies of adjacent old bytes become one (unchanged neighbouring tensors)."""
    out: list[dict[str, Any]] = []
    for op in ops:
        prev = out[-1] if out else None
        if prev and op["op"] == "copy" and prev["op"] == "copy" and prev["src"] + prev["len"] == op["src"]:
            prev["len"] += op["len"]
        else:
            out.append(dict(op))
    return out


def _gguf_ops(fo: BinaryIO, fn: BinaryIO, old_layout: list[Region], new_layout: list[Region], pay: _StreamWriter,
              chunk: int) -> Iterator[dict[str, Any]]:
    old_by_name = {r.name: r for r in old_layout}
    for r in new_layout:
        base = old_by_name.get(r.name)
        if base is None:
            yield _data_op(_read(fn, r.offset, r.length), pay)
            continue
        yield from _tensor_ops(fo, fn, base, r, pay, chunk)  # the metadata section is diffed the same way


def _tensor_ops(fo: BinaryIO, fn: BinaryIO, base: Region, r: Region, pay: _StreamWriter, chunk: int
                ) -> Iterator[dict[str, Any]]:
    """Same-size tensors are compared chunk by chunk (unchanged chunks become copies); a resized tensor
    is patched in proportional chunks."""
    n_chunks = max(1, -(-r.length // chunk))
    for i in range(n_chunks):
        new_off, new_len = r.offset + i * chunk, min(chunk, r.length - i * chunk)
        if base.length == r.length:
            old_off, old_len = base.offset + i * chunk, new_len
        else:
            old_off = base.offset + base.length * i // n_chunks
            old_len = base.offset + base.length * (i + 1) // n_chunks - old_off
        new_bytes, old_bytes = _read(fn, new_off, new_len), _read(fo, old_off, old_len)
        if new_bytes == old_bytes:
            yield {"op": "copy", "src": old_off, "len": new_len}
        else:
            yield _bsdiff_op(old_bytes, new_bytes, old_off, pay)


class _StreamWriter:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.c = bz2.BZ2Compressor(9)

    def write(self, data: bytes) -> None:
        self.f.write(self.c.compress(data))

    def close(self) -> None:
        self.f.write(self.c.flush())


class _StreamReader:
    """Exact-size reads from the payload's bz2 stream, decompressing incrementally (bounded memory)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.d = bz2.BZ2Decompressor()
        self.buf = b""

    def read(self, n: int) -> bytes:
        parts, need = [], n
        while need > 0:
            if not self.buf:
                if self.d.needs_input:
                    if self.d.eof:
                        raise DeltaFormatError("delta payload ends early")
                    chunk = self.f.read(1 << 16)
                    if not chunk:
                        raise DeltaFormatError("delta payload ends early")
                    self.buf = self.d.decompress(chunk, max_length=max(need, 1 << 16))
                else:
                    self.buf = self.d.decompress(b"", max_length=max(need, 1 << 16))
                continue
            take, self.buf = self.buf[:need], self.buf[need:]
            parts.append(take)
            need -= len(take)
        return b"".join(parts)


def _in_place_control(n: int) -> bytes:
    """The control block of a same-size, in-place change: add n bytes, no extra, no seek."""
    return bsdiff_core.encode_int64(n) + bsdiff_core.encode_int64(0) + bsdiff_core.encode_int64(0)


def _bsdiff_op(old: bytes, new: bytes, src: int, pay: _StreamWriter) -> dict[str, Any]:
    control, diff, extra = bsdiff_core.diff(old, new)
    implicit = control == _in_place_control(len(new)) and not extra
    for block in ((diff,) if implicit else (control, diff, extra)):
        pay.write(block)
    return {"op": "bsdiff", "src": src, "src_len": len(old), "len": len(new), "c": -1 if implicit else len(control),
            "d": len(diff), "e": len(extra)}


def _data_op(data: bytes, pay: _StreamWriter) -> dict[str, Any]:
    pay.write(data)
    return {"op": "data", "len": len(data)}


def _read(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)


# -------------------------------------------------------------------------------------------- apply
def read_header(patch: Path) -> tuple[dict[str, Any], int]:
    """``({old_sha256, new_sha256, new_length, ops}, payload offset)``."""
    with open(patch, "rb") as f:
        pre = f.read(84)
        if len(pre) < 84 or pre[:8] != MAGIC:
            raise DeltaFormatError(f"{patch} is not a Linecrew delta")
        length, n = struct.unpack("<QI", pre[72:84])
        try:
            ops = _unpack(json.loads(zlib.decompress(f.read(n), -15)))
        except (ValueError, zlib.error, TypeError) as e:
            raise DeltaFormatError(f"{patch}: damaged header") from e
    return {"old_sha256": pre[8:40].hex(), "new_sha256": pre[40:72].hex(), "new_length": length, "ops": ops}, 84 + n


def apply_delta(old: Path, patch: Path, out: BinaryIO, *, installed_sha256: str | None = None) -> str:
    """Stream the new file into ``out``; checks the base first and the result's sha256 at the end.
    Returns the new sha256."""
    header, start = read_header(patch)
    base = installed_sha256 or sha256_file(old)
    if base != header["old_sha256"]:
        raise DeltaBaseMismatchError(f"delta is for base {header['old_sha256'][:12]}, installed is {base[:12]}")
    hasher = BoundedHasher(header["new_length"], header["new_sha256"])
    with open(old, "rb") as fo, open(patch, "rb") as raw:
        raw.seek(start)
        fp = _StreamReader(raw)
        for op in header["ops"]:
            for data in _run_op(op, fo, fp):
                hasher.update(data)
                out.write(data)
    hasher.finish()
    return str(header["new_sha256"])


def _run_op(op: dict[str, Any], fo: BinaryIO, fp: _StreamReader) -> Iterator[bytes]:
    kind = op.get("op")
    if kind == "copy":  # merged copies can be long: stream them in bounded pieces
        for off in range(0, op["len"], CHUNK_BYTES):
            yield _read(fo, op["src"] + off, min(CHUNK_BYTES, op["len"] - off))
        return
    if kind == "bsdiff":
        control = _in_place_control(op["len"]) if op["c"] == -1 else fp.read(op["c"])
        diff, extra = fp.read(op["d"]), fp.read(op["e"])
        yield bsdiff_core.patch(_read(fo, op["src"], op["src_len"]), op["len"], control, diff, extra)
        return
    if kind == "data":
        yield fp.read(op["len"])
        return
    raise DeltaFormatError(f"unknown delta operation {kind!r}")
