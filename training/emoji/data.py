"""EmojiWorld data for the trainers, rendered by EditKit's own Node renderer (the single source of truth).

The trainer never draws a pixel itself: it spawns the world's batch renderer (built JS under dist/, see
src/world/README.md, "Batch protocol") and reads its stdout:

    one JSON stream-header line, then per record one JSON line followed by exactly `nbytes` raw bytes
    (the record's `arrays`, uint8, C order, concatenated in the order listed).

Scenes are pure functions of their seeds, and the world splits the seed space: `train` seeds for training,
`heldout` seeds only for evaluation. Several renderer processes run in parallel over disjoint index ranges, and
the result is cached on disk (outside the repository by default) keyed by split, range and a hash of the built
renderer, so the stages of one run (and re-runs) share one rendering.

    from data import load_scenes
    train = load_scenes("train", 0, 8000)        # SceneSet: images uint8 [N, H, W, 3], captions, labels
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from common import ROOT, log

DIST_WORLD = os.path.join(ROOT, "dist", "world")
DEFAULT_CACHE = os.path.join(tempfile.gettempdir(), "editkit-emojiworld-cache")


# --------------------------------------------------------------------------------------------------------------
# The renderer process
# --------------------------------------------------------------------------------------------------------------


_LIB_PROGRAM = (
    "const [root, split, start, count, mode, subset] = process.argv.slice(1);"
    "const { writeBatch } = await import(root + '/dist/world/batch.js');"
    "const { findWorldSubset } = await import(root + '/dist/world/subsets.js');"
    "const scene = subset ? findWorldSubset(subset).scene : undefined;"
    "await writeBatch({ split, start: Number(start), count: Number(count), mode, objectMasks: false, scene },"
    " process.stdout);"
)


def renderer_argv(split: str, start: int, count: int, mode: str = "scene", subset: Optional[str] = None) -> List[str]:
    """The command that writes a batch stream (src/world/README.md, "Batch protocol") to stdout.

    EDITKIT_WORLD_BATCH selects it: "cli" = `node dist/cli/main.js world batch ... --out -` (the documented
    command; the default when the CLI's dependencies are installed), "lib" = the same stream from the world
    library's own `writeBatch` (dist/world/batch.js; needs only the world's dependencies, sharp and zod, which
    helps on a training machine without onnxruntime-node; byte-identical output), or a command to which the
    `world batch` flags are appended."""
    choice = os.environ.get("EDITKIT_WORLD_BATCH", "")
    if not choice:
        cli_ok = os.path.exists(os.path.join(ROOT, "dist", "cli", "main.js")) and os.path.isdir(
            os.path.join(ROOT, "node_modules", "onnxruntime-node"))
        choice = "cli" if cli_ok else "lib"
    if choice == "lib":
        return ["node", "--input-type=module", "-e", _LIB_PROGRAM, ROOT, split, str(start), str(count), mode,
                subset or ""]
    base = ["node", os.path.join(ROOT, "dist", "cli", "main.js"), "world", "batch"] if choice == "cli" else choice.split()
    return base + ["--split", split, "--start", str(start), "--count", str(count), "--mode", mode,
                   "--no-object-masks", *(["--subset", subset] if subset else []), "--out", "-"]


def renderer_version() -> str:
    """Hash of the built world code: a changed renderer invalidates the cache."""
    h = hashlib.sha256()
    if os.path.isdir(DIST_WORLD):
        for dirpath, _, files in sorted(os.walk(DIST_WORLD)):
            for name in sorted(files):
                if name.endswith((".js", ".json")):
                    with open(os.path.join(dirpath, name), "rb") as f:
                        h.update(name.encode() + f.read())
    return h.hexdigest()[:16]


def _read_exact(f, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            raise EOFError(f"renderer stream ended {n - got} bytes early")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def read_stream(f, want: Sequence[str] = ("image",)) -> tuple:
    """Parse one batch stream from a binary file object. Returns (stream header, [(record header, {name: array})])
    keeping only the arrays named in `want` (others are read and dropped)."""
    first = f.readline()
    if not first:
        raise EOFError("renderer wrote nothing")
    header = json.loads(first)
    if header.get("type") != "header":
        raise ValueError(f"not an EmojiWorld batch stream: {first[:200]!r}")
    records = []
    while True:
        line = f.readline()
        if not line:
            break
        if not line.strip():
            continue
        rec = json.loads(line)
        payload = _read_exact(f, int(rec["nbytes"]))
        arrays, off = {}, 0
        for a in rec["arrays"]:
            shape = tuple(int(s) for s in a["shape"])
            n = int(np.prod(shape)) if shape else 1
            if a["name"] in want:
                arrays[a["name"]] = np.frombuffer(payload, dtype=np.uint8, count=n, offset=off).reshape(shape).copy()
            off += n
        records.append((rec, arrays))
    return header, records


def _render_chunk(split: str, start: int, count: int, out: dict, key: int, errors: list,
                  subset: Optional[str] = None) -> None:
    argv = renderer_argv(split, start, count, subset=subset)
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, records = read_stream(proc.stdout)
        err = proc.stderr.read().decode("utf-8", "replace")
        rc = proc.wait()
        if rc != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {rc}: {err[-2000:]}")
        if len(records) != count:
            raise RuntimeError(f"{' '.join(argv)} wrote {len(records)} records, expected {count}")
        out[key] = records
    except Exception as e:  # noqa: BLE001 -- reported by the caller
        errors.append(e)


# --------------------------------------------------------------------------------------------------------------
# Scene sets
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SceneSet:
    split: str
    start: int
    images: np.ndarray  # uint8 [N, H, W, 3]
    caption: List[str]  # the record's own caption
    captions: List[List[str]]  # every template's wording (text augmentation)
    classes: List[List[str]]  # object classes in drawing order
    background: List[str]
    seeds: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.caption)

    def subset(self, idx) -> "SceneSet":
        idx = np.asarray(idx)
        return SceneSet(
            self.split, self.start, self.images[idx], [self.caption[i] for i in idx],
            [self.captions[i] for i in idx], [self.classes[i] for i in idx], [self.background[i] for i in idx],
            self.seeds[idx], self.meta,
        )

    def object_targets(self, class_names: Sequence[str]) -> np.ndarray:
        """Multi-hot [N, K] of the classes present."""
        index = {c: i for i, c in enumerate(class_names)}
        y = np.zeros((len(self), len(class_names)), dtype=np.float32)
        for n, cs in enumerate(self.classes):
            for c in cs:
                y[n, index[c]] = 1.0
        return y

    def background_targets(self, background_names: Sequence[str]) -> np.ndarray:
        index = {b: i for i, b in enumerate(background_names)}
        return np.array([index[b] for b in self.background], dtype=np.int64)


def _cache_path(cache_dir: str, split: str, start: int, count: int, subset: Optional[str] = None) -> str:
    return os.path.join(cache_dir, f"{split}-{subset or 'full'}-{start}-{count}-{renderer_version()}")


def load_scenes(split: str, start: int, count: int, workers: int = 0, cache_dir: Optional[str] = None,
                chunk: int = 500, subset: Optional[str] = None) -> SceneSet:
    """Scenes `start .. start+count-1` of `split` (of the named world subset, if any), rendered by the Node
    renderer (cached)."""
    cache_dir = cache_dir or os.environ.get("EDITKIT_WORLD_CACHE", DEFAULT_CACHE)
    path = _cache_path(cache_dir, split, start, count, subset)
    if os.path.exists(path + ".json") and os.path.exists(path + ".npy"):
        with open(path + ".json", encoding="utf-8") as f:
            m = json.load(f)
        images = np.load(path + ".npy", mmap_mode=None)
        return SceneSet(split, start, images, m["caption"], m["captions"], m["classes"], m["background"],
                        np.array(m["seeds"], dtype=np.int64), m.get("meta", {}))
    workers = workers or max(1, min(os.cpu_count() or 1, 16))
    t = time.time()
    ranges = [(s, min(chunk, start + count - s)) for s in range(start, start + count, chunk)]
    results: Dict[int, list] = {}
    errors: list = []
    pending = list(enumerate(ranges))
    running: List[threading.Thread] = []
    while pending or running:
        while pending and len(running) < workers:
            key, (s, c) = pending.pop(0)
            th = threading.Thread(target=_render_chunk, args=(split, s, c, results, key, errors, subset),
                                  daemon=True)
            th.start()
            running.append(th)
        for th in list(running):
            th.join(timeout=0.05)
            if not th.is_alive():
                running.remove(th)
        if errors:
            raise RuntimeError(f"EmojiWorld renderer failed: {errors[0]}") from errors[0]
    records = [r for k in sorted(results) for r in results[k]]
    images = np.stack([a["image"] for _, a in records])
    heads = [h for h, _ in records]
    caption = [h["caption"] for h in heads]
    captions = [list(h.get("captions") or [h["caption"]]) for h in heads]
    classes = [list(h["facts"]["classes"]) for h in heads]
    background = [h["facts"]["background"] for h in heads]
    seeds = np.array([h["seed"] for h in heads], dtype=np.int64)
    meta = {"renderer": renderer_version(), "seconds": round(time.time() - t, 1), "workers": workers,
            "subset": subset}
    log(f"rendered {count} {split} scenes ({start}..{start + count - 1}) in {time.time() - t:.1f}s "
        f"with {workers} renderer processes")
    os.makedirs(cache_dir, exist_ok=True)
    np.save(path + ".npy.tmp.npy", images)
    os.replace(path + ".npy.tmp.npy", path + ".npy")
    with open(path + ".json.tmp", "w", encoding="utf-8") as f:
        json.dump({"caption": caption, "captions": captions, "classes": classes, "background": background,
                   "seeds": seeds.tolist(), "meta": meta}, f)
    os.replace(path + ".json.tmp", path + ".json")
    return SceneSet(split, start, images, caption, captions, classes, background, seeds, meta)


def world_vocabulary(subset: Optional[str] = None) -> dict:
    """Class and background names in the world's own order (from the built catalog, via Node), restricted to the
    named world subset if one is given; `scene` holds the subset's sampling options (image size etc.)."""
    code = (
        "import('./dist/world/index.js').then(m => { const s = process.argv[1] ? m.findWorldSubset(process.argv[1])"
        " : undefined; if (process.argv[1] && !s) throw new Error('unknown world subset ' + process.argv[1]);"
        " const scene = s ? s.scene : {};"
        " const keep = (all, some) => some ? all.filter(x => some.includes(x)) : all;"
        " process.stdout.write(JSON.stringify({classes: keep(m.CLASS_NAMES, scene.classes),"
        " backgrounds: keep(m.BACKGROUND_NAMES, scene.backgrounds), scene, subset: s ? s.name : null,"
        " description: s ? s.description : null})) })"
    )
    out = subprocess.run(["node", "-e", code, subset or ""], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


# --------------------------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------------------------


def to_tensor(images: np.ndarray, device=None):
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in [-1, 1] (SD's image convention)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


if __name__ == "__main__":  # quick look: python3 training/emoji/data.py train 0 16
    split, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = load_scenes(split, start, count)
    print(s.images.shape, s.caption[:3], s.classes[:3], s.background[:3])
