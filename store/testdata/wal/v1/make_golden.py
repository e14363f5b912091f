#!/usr/bin/env python3
"""Writes the version-1 golden WAL segment from the spec in docs/format/wal.md.

Deliberately independent of the Rust code: if the reader ever drifts from the documented
format, the test `version_1_golden_segment_still_reads` fails. Do not regenerate to make a
failing test pass; the file is meant to stay as committed.
"""
import struct
import zlib
from pathlib import Path

payloads = [b"lookout", b"write-ahead log", bytes(range(256)), b"x" * 1000]
out = bytearray(b"LKWL" + struct.pack("<I", 1))
for p in payloads:
    out += struct.pack("<II", len(p), zlib.crc32(p) & 0xFFFFFFFF) + p
Path(__file__).with_name("00000000000000000001.wal").write_bytes(bytes(out))
