"""The Xet side of the stand-in Hub: what `hf_xet` (huggingface_hub's default upload path when it is installed)
sends, stored and turned back into files, so that a push needs no `HF_HUB_DISABLE_XET=1`.

An upload through Xet goes like this (observed from hf_xet 1.x; the stand-in implements exactly these calls):

1. `GET /api/{type}s/{repo}/xet-write-token/{rev}` on the Hub: `{"casUrl", "accessToken", "exp"}`. The stand-in's
   `casUrl` is `{hub}/xet-cas/{type}/{quoted repo}`, so the CAS calls below know their repository.
2. `GET {casUrl}/v1/chunks/default/{hash}`: global deduplication; the stand-in has none (404).
3. `POST {casUrl}/v1/xorb-grants/...`: not implemented (404); hf_xet then uploads the xorb directly.
4. `POST {casUrl}/v1/xorbs/default/{hash}`: a xorb, the chunks of one or more files, each behind an 8-byte header
   (version, compressed size in 3 bytes little-endian, compression scheme, uncompressed size in 3 bytes), stored
   raw (scheme 0), LZ4 frame (1), or LZ4 frame of the bytes grouped by position modulo 4 (2).
5. `POST {casUrl}/v2/shards` (404 here, so hf_xet falls back to) `POST {casUrl}/v1/shards`: a shard, the
   file-reconstruction table. A 48-byte header; then per file a 48-byte record (file hash, flags, entry count), its
   entries (xorb hash, flags, bytes, first and end chunk index), a verification record per entry when the flags
   say so, and a metadata record holding the file's SHA-256 when they say so; a bookend (32 bytes of 0xff); then
   the xorbs' chunk tables, and another bookend. Hashes are four little-endian 64-bit words, written as hex in the
   URLs word by word.

On a shard the stand-in rebuilds each file from its xorbs and keeps it under its SHA-256, exactly as if it had come
through Git LFS: the commit's `lfsFile` entries, downloads and `Range` requests then work unchanged. Downloads are
plain HTTP (the stand-in sends no `X-Xet-Hash`), which huggingface_hub falls back to.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

BOOKEND = b"\xff" * 32
RECORD = 48  # every record of a shard is 48 bytes
FLAG_VERIFICATION = 0x80000000
FLAG_METADATA = 0x40000000
LZ4_MAGIC = 0x184D2204


class XetFormatError(ValueError):
    """A xorb or shard that does not parse."""


def hash_string(raw: bytes) -> str:
    """A 32-byte Xet hash as hf_xet writes it in URLs: its four little-endian u64 words, each as 16 hex digits."""
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


def lz4_block(data: bytes, output: bytearray, limit: int) -> None:
    """Decompress one LZ4 block into `output` (which may hold earlier blocks, as dictionary), up to `limit` bytes."""
    i, end = 0, len(data)
    while i < end:
        token = data[i]
        i += 1
        length = token >> 4
        if length == 15:
            while True:
                extra = data[i]
                i += 1
                length += extra
                if extra != 255:
                    break
        output += data[i : i + length]
        i += length
        if i >= end:
            break  # the last sequence has literals only
        offset = data[i] | (data[i + 1] << 8)
        i += 2
        if offset == 0 or offset > len(output):
            raise XetFormatError("LZ4: a match points before the start of the output")
        length = (token & 15) + 4
        if token & 15 == 15:
            while True:
                extra = data[i]
                i += 1
                length += extra
                if extra != 255:
                    break
        start = len(output) - offset
        if length <= offset:
            output += output[start : start + length]
        else:  # an overlapping match repeats the last `offset` bytes
            for k in range(length):
                output.append(output[start + k])
        if len(output) > limit:
            raise XetFormatError("LZ4: more output than the chunk header announced")


def lz4_frame(data: bytes, size: int) -> bytes:
    """Decompress an LZ4 frame (magic, descriptor, blocks, end mark) of `size` decompressed bytes."""
    if len(data) < 7 or struct.unpack_from("<I", data)[0] != LZ4_MAGIC:
        raise XetFormatError("not an LZ4 frame")
    flags = data[4]
    i = 6 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0) + 1  # FLG, BD, content size, dict id, HC
    block_checksum = 4 if flags & 0x10 else 0
    output = bytearray()
    while True:
        (block_size,) = struct.unpack_from("<I", data, i)
        i += 4
        if block_size == 0:
            break
        stored, block_size = block_size & 0x80000000, block_size & 0x7FFFFFFF
        block = data[i : i + block_size]
        i += block_size + block_checksum
        if stored:
            output += block
        else:
            lz4_block(block, output, size)
    if len(output) != size:
        raise XetFormatError(f"LZ4: {len(output)} bytes, the chunk header says {size}")
    return bytes(output)


def ungroup_bytes(data: bytes) -> bytes:
    """Undo hf_xet's byte grouping: the data is byte 0 of every 4, then byte 1 of every 4, ... (floats compress
    better so); put each byte back at its position."""
    n = len(data)
    output = bytearray(n)
    start = 0
    for k in range(4):
        count = len(range(k, n, 4))
        output[k::4] = data[start : start + count]
        start += count
    return bytes(output)


def xorb_chunks(xorb: bytes) -> Iterator[bytes]:
    """The decompressed chunks of a xorb, in order (its trailing footer, if any, is not a chunk and ends the walk)."""
    i = 0
    while i + 8 <= len(xorb):
        header = xorb[i : i + 8]
        if header == b"\xff" * 8 or header[0] != 0:
            return  # the footer
        stored_size, scheme = int.from_bytes(header[1:4], "little"), header[4]
        size = int.from_bytes(header[5:8], "little")
        body = xorb[i + 8 : i + 8 + stored_size]
        if len(body) != stored_size:
            raise XetFormatError("a xorb chunk is cut short")
        if scheme == 0:
            chunk = body
        elif scheme == 1:
            chunk = lz4_frame(body, size)
        elif scheme == 2:
            chunk = ungroup_bytes(lz4_frame(body, size))
        else:
            raise XetFormatError(f"unknown chunk compression scheme {scheme}")
        if len(chunk) != size:
            raise XetFormatError("a xorb chunk does not have the size its header announces")
        yield chunk
        i += 8 + stored_size


@dataclass
class ShardFile:
    """One file of a shard: its SHA-256 (when the shard records it) and its segments `(xorb, first, end chunk)`."""

    sha256: str | None
    segments: list[tuple[str, int, int]]


def parse_shard(shard: bytes) -> list[ShardFile]:
    """The files a shard describes (its file-info section; the chunk tables that follow are not needed here)."""
    if len(shard) < RECORD:
        raise XetFormatError("a shard shorter than its header")
    files, i = [], RECORD
    while True:
        record = shard[i : i + RECORD]
        if len(record) < RECORD:
            raise XetFormatError("a shard without the bookend of its file section")
        if record[:32] == BOOKEND:
            return files
        flags, count = struct.unpack_from("<II", record, 32)
        i += RECORD
        segments = []
        for _ in range(count):
            entry = shard[i : i + RECORD]
            _, _, first, end = struct.unpack_from("<IIII", entry, 32)
            segments.append((hash_string(entry[:32]), first, end))
            i += RECORD
        if flags & FLAG_VERIFICATION:
            i += RECORD * count
        sha256 = None
        if flags & FLAG_METADATA:
            sha256 = hash_string(shard[i : i + 32])
            i += RECORD
        files.append(ShardFile(sha256, segments))


def reconstruct(file: ShardFile, xorbs: dict[str, bytes]) -> bytes:
    """A file's bytes from its segments; its SHA-256 is checked when the shard records it."""
    parts = []
    for xorb_hash, first, end in file.segments:
        if xorb_hash not in xorbs:
            raise XetFormatError(f"the shard refers to a xorb that was never uploaded: {xorb_hash}")
        for index, chunk in enumerate(xorb_chunks(xorbs[xorb_hash])):
            if index >= end:
                break
            if index >= first:
                parts.append(chunk)
    data = b"".join(parts)
    if file.sha256 is not None and hashlib.sha256(data).hexdigest() != file.sha256:
        raise XetFormatError("a file rebuilt from its xorbs does not hash to the SHA-256 its shard records")
    return data
