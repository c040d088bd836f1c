#!/usr/bin/env python3
"""Reader for EditKit's EmojiWorld batch stream (src/world/README.md, "Batch protocol").

The Node renderer is the single source of truth for EmojiWorld pixels; a PyTorch trainer runs it as a
subprocess and reads its stdout with this module (numpy only):

    from read_batch import spawn, read_records
    proc = spawn(["--mode", "edit", "--count", "1000", "--start", "0"])
    for header, arrays in read_records(proc.stdout):
        arrays["source"]   # uint8 [H, W, 3]
        header["instruction"]

Command line (summary and self-check of a stream file, or of stdin with '-'):

    node dist/cli/main.js world batch --mode edit --count 50 --out /tmp/b.bin
    python3 scripts/world/read_batch.py /tmp/b.bin --check
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

FORMAT = "editkit-emojiworld-batch"
VERSION = 1


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    chunks = []
    left = n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError(f"stream ended {left} bytes short of a record's {n}-byte payload")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_header(stream: IO[bytes]) -> Dict[str, Any]:
    """Read and check the stream's first line."""
    line = stream.readline()
    if not line:
        raise EOFError("empty stream (did the renderer fail? see its stderr)")
    header = json.loads(line)
    if header.get("format") != FORMAT:
        raise ValueError(f"not an EmojiWorld batch stream: {line[:80]!r}")
    if header.get("version") != VERSION:
        raise ValueError(f"batch format version {header.get('version')}, this reader knows {VERSION}")
    return header


def read_records(stream: IO[bytes], header: Optional[Dict[str, Any]] = None) -> Iterator[Tuple[Dict[str, Any], Dict[str, np.ndarray]]]:
    """Yield (record header, {array name: uint8 ndarray}) for each record; reads the stream header first
    unless it was already read with read_header()."""
    if header is None:
        read_header(stream)
    while True:
        line = stream.readline()
        if not line:
            return
        meta = json.loads(line)
        payload = _read_exactly(stream, meta["nbytes"])
        arrays: Dict[str, np.ndarray] = {}
        offset = 0
        for spec in meta["arrays"]:
            if spec["dtype"] != "uint8":
                raise ValueError(f"unsupported dtype {spec['dtype']}")
            shape = tuple(spec["shape"])
            count = int(np.prod(shape)) if shape else 1
            arrays[spec["name"]] = np.frombuffer(payload, dtype=np.uint8, count=count, offset=offset).reshape(shape)
            offset += count
        if offset != meta["nbytes"]:
            raise ValueError(f"record {meta.get('index')}: arrays take {offset} bytes, header says {meta['nbytes']}")
        yield meta, arrays


def spawn(batch_args: List[str], cli: Optional[List[str]] = None) -> subprocess.Popen:
    """Start `editkit world batch ARGS` writing to a pipe. `cli` is the command that runs EditKit
    (default: node dist/cli/main.js, from the repository root)."""
    command = (cli or ["node", "dist/cli/main.js"]) + ["world", "batch", *batch_args, "--out", "-"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, bufsize=1 << 20)


def _check(meta: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> List[str]:
    problems = []
    if meta["type"] == "edit":
        changed = np.any(arrays["source"] != arrays["target"], axis=-1)
        outside = int(np.count_nonzero(changed & (arrays["mask"] == 0)))
        if outside:
            problems.append(f"{outside} changed pixels outside the mask")
        if not changed.any():
            problems.append("source and target are identical")
    else:
        if "objects" in arrays and arrays["objects"].shape[0] != len(meta["scene"]["objects"]):
            problems.append("object mask count differs from the scene's objects")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="batch file, or '-' for stdin")
    parser.add_argument("--check", action="store_true", help="verify masks against the pixels")
    parser.add_argument("--show", type=int, default=3, help="print this many records' text")
    args = parser.parse_args()
    stream = sys.stdin.buffer if args.path == "-" else open(args.path, "rb")
    header = read_header(stream)
    count = 0
    bad = 0
    for meta, arrays in read_records(stream, header):
        if count < args.show:
            text = meta.get("instruction") or meta.get("caption")
            shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in arrays.items())
            print(f"#{meta['index']} seed {meta['seed']} {meta.get('task', 'scene')}: {text!r} [{shapes}]")
        if args.check:
            for problem in _check(meta, arrays):
                bad += 1
                print(f"#{meta['index']}: {problem}", file=sys.stderr)
        count += 1
    print(f"{count} {header['mode']} record(s) from the {header['split']} split" + (f", {bad} problem(s)" if args.check else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
