"""Float64 PyTorch gradients of the bundled models, the reference for EditKit's ONNX autodiff on whole networks.

    /usr/bin/python3 training/reference/autodiff_bundled_reference.py [--models models] [--only unet|clip] [--out DIR]

For models/emoji-ldm/unet/model.onnx and models/emoji-clip/image_encoder/model.onnx (training/train_all.py,
exported by training/emoji/export.py) this script

1. rebuilds the PyTorch module from training/emoji (unet.py's UNet2DConditionModel from unet/config.json;
   clip.py's ImageEncoder from emoji-clip/config.json) inside export.py's wrapper (`UNetWithFeatures`,
   `ClipImageWrap`), so parameter names and the traced graph are those of the export;
2. maps every parameter to where the graph reads it: the same module, with distinct random values in every
   parameter, is exported again exactly as export.py does (export_onnx, float32 storage, into a temp folder), and
   each weight read by a node of that export (keyed by node name and input slot, following Cast and Identity:
   torch's exporter deduplicates equal initializers, so initializer names depend on the values) is identified by
   its values as a parameter, its transpose (Linear weights become `onnx::MatMul_*` = W^T) or a reshape of it
   (GroupNorm's scale and shift become `onnx::Mul_*` / `onnx::Add_*` of shape [C, 1, 1]). The committed file
   must read weights at the same slots, and where it reads constants (no parameter) they must equal the fresh
   export's;
3. loads the committed weights (float16-stored initializers, `<name>__fp16` + Cast, widened exactly; float32
   ones as they are) into the module in float64 (the sinusoidal timestep projection, computed in float32 by
   design as in the ONNX graph, is widened after it);
4. runs the committed ONNX file in onnxruntime-node (training/emoji/ort_run.mjs; Python has no onnxruntime
   here) on the fixture inputs and checks that its output matches the float64 module's (relative error
   max|Δ|/max|ref| < 1e-4), so a mapping mistake cannot reach the fixtures;
5. computes, in float64 with torch.autograd, the gradient of a fixed scalar loss that EditKit's autodiff builds
   itself (src/autodiff/losses.ts), w.r.t. the input(s) and a few named weights, given in the ONNX tensor's
   layout (transposed for MatMul initializers, [C, 1, 1] for GroupNorm's):
   - UNet:  L = mseLoss('out_sample', {input: 'out_sample_target'}) = mean((out_sample - target)^2) at
            sample [1, C, h, w] (the native latent size), timestep 500, encoder_hidden_states
            [1, model_max_length, D];
            wrt sample, encoder_hidden_states, an attention to_q weight, a resnet conv weight and conv_in's bias
            (a float32 initializer: promoted to an input in the test).
   - CLIP image encoder: L = cosineDistanceLoss('image_embeds', {input: 'image_embeds_direction'})
            = mean(1 - cos(image_embeds, direction)) at pixel_values [1, 3, S, S] (the config's image_size);
            wrt pixel_values, the stem conv weight, the projection (Linear) weight and the final GroupNorm's scale
            (a float32 initializer: promoted).

Writes tests/fixtures/autodiff/bundled/{unet,clip}/*.npy (float32: the exact inputs fed, the float64 results
rounded) and manifest.json (ONNX tensor names, layouts, the SHA-256 of each ONNX file the values belong to, the
loss values and the measured ONNX Runtime forward error). tests/autodiff/bundled_models.test.ts reads them.
Regenerate after re-training or re-exporting the models. Seeded and single-threaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from typing import Callable, Dict, List, Tuple

import numpy as np
import onnx
import torch
from onnx import numpy_helper

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "training", "emoji"))

import common  # noqa: E402,F401  (sets up training/reference and training/common on sys.path)
import export as E  # noqa: E402
import models as M  # noqa: E402  (training/reference/models.py)
from clip import ImageEncoder  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures", "autodiff", "bundled")
FORWARD_TOLERANCE = 1e-4

# The weights whose gradients are checked (PyTorch parameter names inside export.py's wrappers).
UNET_WEIGHTS = [
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    "unet.down_blocks.1.resnets.0.conv1.weight",
    "unet.conv_in.bias",
]
CLIP_WEIGHTS = [
    "vision.stem.weight",
    "vision.proj.weight",
    "vision.norm.weight",
]


# --------------------------------------------------------------------------------------------------------------
# Mapping parameters to the initializers of an export
# --------------------------------------------------------------------------------------------------------------


def _key(a: np.ndarray) -> bytes:
    return hashlib.sha256(np.sort(np.asarray(a, dtype=np.float32).ravel()).tobytes()).digest()


def weight_slots(path: str) -> Tuple[Dict[Tuple[str, int], str], Dict[str, np.ndarray], Dict[str, str]]:
    """Where an ONNX file's nodes read its weights. Returns
    - slots {(node name, input index): root tensor} for every input of a computing node that is a weight,
    - values {root: float64 array}, storage {root: how it is stored}.
    A root is the float tensor the graph computes with: a float32 initializer, or the Cast output of a float16
    one (export.py's fp16_storage keeps the original name there). Identity nodes (torch's exporter deduplicates
    equal initializers with them) are followed back to their root."""
    model = onnx.load(path)
    raw = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    root: Dict[str, str] = {}
    values: Dict[str, np.ndarray] = {}
    storage: Dict[str, str] = {}
    for k, v in raw.items():
        if v.dtype != np.float16:
            root[k] = k
            values[k] = v.astype(np.float64) if v.dtype.kind == "f" else v
            storage[k] = f"{v.dtype} initializer"
    slots: Dict[Tuple[str, int], str] = {}
    names = set()
    for n in model.graph.node:
        if n.op_type == "Cast" and n.input[0] in raw and raw[n.input[0]].dtype == np.float16:
            root[n.output[0]] = n.output[0]
            values[n.output[0]] = raw[n.input[0]].astype(np.float64)
            storage[n.output[0]] = "float16 initializer + Cast"
            continue
        if n.op_type == "Identity" and n.input[0] in root:
            root[n.output[0]] = root[n.input[0]]
            continue
        assert n.name and n.name not in names, f"{path}: node names must be unique and set ({n.name!r})"
        names.add(n.name)
        for i, x in enumerate(n.input):
            if x in root:
                slots[(n.name, i)] = root[x]
    return slots, values, storage


def map_parameters(wrapper: torch.nn.Module, export: Callable[[str], None]) -> Tuple[Dict[tuple, tuple], Dict[tuple, np.ndarray]]:
    """Export `wrapper` afresh (float32 storage) with distinct random values in every parameter and identify what
    each weight slot holds. Returns ({slot: (parameter name, layout)}, {slot: value} for slots holding constants).
    layout: 'same', 'transposed' (2-D, W^T: Linear weights as MatMul initializers) or 'reshaped' (the same
    elements in another shape: GroupNorm's scale and shift as [C, 1, 1])."""
    g = torch.Generator().manual_seed(12345)
    params = dict(wrapper.named_parameters())
    with torch.no_grad():
        saved = {k: p.detach().clone() for k, p in params.items()}
        for p in params.values():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    try:
        with tempfile.TemporaryDirectory(prefix="editkit-autodiff-map-") as tmp:
            path = os.path.join(tmp, "model.onnx")
            export(path)
            slots, values, _ = weight_slots(path)
        by_key: Dict[bytes, List[str]] = {}
        for k, p in params.items():
            by_key.setdefault(_key(p.detach().numpy()), []).append(k)
        mapping, constants = {}, {}
        for slot, r in slots.items():
            arr = values[r]
            hits = by_key.get(_key(arr)) if arr.dtype.kind == "f" else None
            if not hits:
                constants[slot] = arr
                continue
            assert len(hits) == 1, f"{slot}: values match several parameters {hits}"
            p = params[hits[0]].detach().numpy().astype(np.float64)
            if arr.shape == p.shape and np.array_equal(arr, p):
                layout = "same"
            elif arr.ndim == 2 and p.ndim == 2 and np.array_equal(arr, p.T):
                layout = "transposed"
            elif arr.size == p.size and np.array_equal(arr.ravel(), p.ravel()):
                layout = "reshaped"
            else:
                raise AssertionError(f"{slot} {arr.shape}: holds the values of {hits[0]} {p.shape} in an unknown layout")
            mapping[slot] = (hits[0], layout)
        missing = set(params) - {v[0] for v in mapping.values()}
        assert not missing, f"parameters not found among the export's weights: {sorted(missing)}"
        return mapping, constants
    finally:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(saved[k])


def load_committed(wrapper: torch.nn.Module, export: Callable[[str], None], path: str) -> Dict[str, dict]:
    """Loads the weights of the ONNX file at `path` into `wrapper` (float64 afterwards). Returns, per parameter,
    the ONNX tensor the graph computes with (`wrt` for the autodiff), its layout, storage and shape."""
    mapping, constants = map_parameters(wrapper, export)
    slots, values, storage = weight_slots(path)
    fresh = set(mapping) | set(constants)
    if set(slots) != fresh:
        raise AssertionError(
            f"{path}: nodes reading weights differ from a fresh export of the module: only in the file "
            f"{sorted(set(slots) - fresh)[:10]}, only in the fresh export {sorted(fresh - set(slots))[:10]}")
    for slot, c in constants.items():
        v = values[slots[slot]]
        if storage[slots[slot]].startswith("float16"):
            c = c.astype(np.float16).astype(np.float64)
        if v.shape != c.shape or not np.array_equal(v, c):
            raise AssertionError(f"{path}: the constant read by {slot} differs from a fresh export (a folded parameter?)")
    params = dict(wrapper.named_parameters())
    loaded: Dict[str, np.ndarray] = {}
    info: Dict[str, dict] = {}
    for slot, (pname, layout) in mapping.items():
        r = slots[slot]
        v = values[r]
        w = v.T if layout == "transposed" else v.reshape(tuple(params[pname].shape))
        if pname in loaded:
            assert np.array_equal(loaded[pname], w), f"{pname}: read with different values by different nodes"
        loaded[pname] = w
        prev = info.setdefault(pname, {"wrt": r, "layout": layout, "storage": storage[r], "shape": list(v.shape)})
        if prev["wrt"] != r:
            prev["wrt"] = None  # read through several roots: no single ONNX tensor holds it
    # A root shared by several parameters (deduplicated equal values) is not one parameter's tensor.
    owners: Dict[str, set] = {}
    for slot, (pname, _) in mapping.items():
        owners.setdefault(slots[slot], set()).add(pname)
    for pname, d in info.items():
        if d["wrt"] is not None and len(owners[d["wrt"]]) > 1:
            d["wrt"] = None
    wrapper.double()
    with torch.no_grad():
        for pname, w in loaded.items():
            params[pname].copy_(torch.from_numpy(np.ascontiguousarray(w)))
    return info


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rel_err(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(np.asarray(ref, np.float64) - got).max() / np.abs(ref).max())


def f32(x: torch.Tensor) -> torch.Tensor:
    """A float64 tensor holding float32-representable values (what the fixture file and ONNX Runtime get)."""
    return x.float().double()


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


def unet_from_config(cfg: dict) -> M.UNet2DConditionModel:
    boc = list(cfg["block_out_channels"])
    heads = list(cfg["attention_head_dim"])  # diffusers' meaning: heads per level (channels / head_dim)
    head_dim = boc[0] // heads[0]
    assert all(c // head_dim == h for c, h in zip(boc, heads)), f"inconsistent heads {heads} for {boc}"
    return M.UNet2DConditionModel(
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"], block_out_channels=tuple(boc),
        down_block_types=tuple(cfg["down_block_types"]), up_block_types=tuple(cfg["up_block_types"]),
        layers_per_block=cfg["layers_per_block"], norm_num_groups=cfg["norm_num_groups"],
        attention_head_dim=head_dim, cross_attention_dim=cfg["cross_attention_dim"],
        use_linear_projection=cfg["use_linear_projection"], sample_size=cfg["sample_size"],
    ).eval()


def export_unet_like(wrapper: E.UNetWithFeatures, path: str, max_length: int) -> None:
    """export.py's export_ldm UNet export (same trace inputs, names, axes), float32 storage."""
    unet = wrapper.unet
    g = torch.Generator().manual_seed(99)
    c, size = unet.config["in_channels"], unet.config["sample_size"]
    sample = torch.randn(2, c, size, size, generator=g)
    hidden = torch.randn(2, max_length, unet.config["cross_attention_dim"], generator=g)
    t = torch.tensor([500, 500], dtype=torch.int64)
    feat_names = [E.FEATURE_NAME.format(i) for i in range(len(unet.up_blocks))]
    axes = {
        "sample": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"},
        "timestep": {0: "steps"},
        "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
        "out_sample": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"},
    }
    for f in feat_names:
        axes[f] = {0: "batch_size", 2: f"{f}_height", 3: f"{f}_width"}
    E.export_onnx(wrapper, (sample, t, hidden), path, ["sample", "timestep", "encoder_hidden_states"],
                  ["out_sample", *feat_names], axes, keep_outputs=["out_sample"], fp16=False)


class _Clip(torch.nn.Module):
    def __init__(self, vision: ImageEncoder):
        super().__init__()
        self.vision = vision


def export_clip_like(wrapper: E.ClipImageWrap, path: str, image_size: int) -> None:
    """export.py's export_clip image-encoder export, float32 storage."""
    g = torch.Generator().manual_seed(7)
    px = torch.randn(2, 3, image_size, image_size, generator=g)
    E.export_onnx(wrapper, (px,), path, ["pixel_values"], ["image_embeds"],
                  {"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"}}, fp16=False)


def save(folder: str, name: str, a) -> str:
    if isinstance(a, torch.Tensor):
        a = a.detach().numpy()
    np.save(os.path.join(folder, name + ".npy"), np.ascontiguousarray(np.asarray(a, dtype=np.float32)))
    return name + ".npy"


def weight_entries(info: Dict[str, dict], wrapper, pnames: List[str], grads, folder: str) -> List[dict]:
    """Fixture entries for parameter gradients, in the layout of the ONNX tensor that holds the parameter."""
    params = dict(wrapper.named_parameters())
    out = []
    for pname, grad in zip(pnames, grads):
        d = info[pname]
        assert d["wrt"], f"{pname}: no single ONNX tensor holds this parameter; pick another weight"
        g = grad.detach().numpy()
        ref = g.T if d["layout"] == "transposed" else g.reshape(d["shape"])
        out.append({
            "wrt": d["wrt"],
            "parameter": pname,
            "shape": list(ref.shape),
            "parameter_shape": list(params[pname].shape),
            "layout": d["layout"],
            "storage": d["storage"],
            # a float32 initializer is a constant of the graph: the test promotes it to an input and feeds its value
            "promote": d["storage"] == "float32 initializer",
            "file": save(folder, "grad_" + pname.replace(".", "_"), ref),
        })
    return out


def ort_forward(model: str, inputs: Dict[str, np.ndarray], output: str) -> np.ndarray:
    return E.run_ort([{"model": model, "inputs": inputs, "outputs": [output]}])[0][output]


# --------------------------------------------------------------------------------------------------------------
# The two references
# --------------------------------------------------------------------------------------------------------------


def unet_reference(models: str) -> dict:
    path = os.path.join(models, "emoji-ldm", "unet", "model.onnx")
    with open(os.path.join(models, "emoji-ldm", "unet", "config.json")) as f:
        cfg = json.load(f)
    unet = unet_from_config(cfg)
    wrapper = E.UNetWithFeatures(unet)  # its hooks make the up blocks' outputs graph outputs while tracing
    with open(os.path.join(models, "emoji-ldm", "tokenizer", "tokenizer_config.json")) as f:
        max_length = int(json.load(f).get("model_max_length", 77))
    info = load_committed(wrapper, lambda p: export_unet_like(wrapper, p, max_length), path)
    for blk in unet.up_blocks:  # as export_ldm does after exporting
        blk._forward_hooks.clear()
    project = unet.time_proj.forward
    unet.time_proj.forward = lambda t: project(t).double()  # float32 by design (as in the graph), then widened

    size = cfg["sample_size"]
    g = torch.Generator().manual_seed(301)
    sample = f32(torch.randn(1, cfg["in_channels"], size, size, generator=g, dtype=torch.float64)).requires_grad_()
    ehs = f32(torch.randn(1, max_length, cfg["cross_attention_dim"], generator=g, dtype=torch.float64)).requires_grad_()
    target = f32(torch.randn(1, cfg["out_channels"], size, size, generator=g, dtype=torch.float64))
    timestep = 500
    out = unet(sample, torch.tensor([timestep], dtype=torch.int64), ehs)
    loss = ((out - target) ** 2).mean()
    params = dict(wrapper.named_parameters())
    grads = torch.autograd.grad(loss, [sample, ehs] + [params[p] for p in UNET_WEIGHTS])

    got = ort_forward(path, {"sample": sample.detach().float().numpy(), "timestep": np.array([timestep], np.int64),
                             "encoder_hidden_states": ehs.detach().float().numpy()}, "out_sample")
    forward_err = rel_err(out.detach().numpy(), got)
    print(f"[unet] ONNX Runtime forward vs float64 PyTorch: max|Δ|/max|ref| = {forward_err:.2e}")
    assert forward_err < FORWARD_TOLERANCE, "the PyTorch module does not reproduce the ONNX file: mapping error?"

    folder = os.path.join(OUT, "unet")
    os.makedirs(folder, exist_ok=True)
    entry = {
        "onnx": os.path.relpath(path, ROOT),
        "onnx_sha256": sha256(path),
        "inputs": {
            "sample": {"file": save(folder, "sample", sample), "shape": list(sample.shape)},
            "encoder_hidden_states": {"file": save(folder, "encoder_hidden_states", ehs), "shape": list(ehs.shape)},
            "timestep": {"int64": [timestep], "shape": [1]},
            "out_sample_target": {"file": save(folder, "out_sample_target", target), "shape": list(target.shape)},
        },
        "loss": {"kind": "mse", "tensor": "out_sample", "target_input": "out_sample_target", "reduction": "mean",
                 "value": float(loss)},
        "output": {"name": "out_sample", "file": save(folder, "out_sample", out)},
        "ort_forward_rel_err": forward_err,
        "gradients": [
            {"wrt": "sample", "file": save(folder, "grad_sample", grads[0]), "shape": list(sample.shape),
             "storage": "graph input", "promote": False},
            {"wrt": "encoder_hidden_states", "file": save(folder, "grad_encoder_hidden_states", grads[1]),
             "shape": list(ehs.shape), "storage": "graph input", "promote": False},
        ] + weight_entries(info, wrapper, UNET_WEIGHTS, grads[2:], folder),
    }
    print(f"[unet] loss {float(loss):.6f}; wrote {folder}")
    return entry


def clip_reference(models: str) -> dict:
    path = os.path.join(models, "emoji-clip", "image_encoder", "model.onnx")
    with open(os.path.join(models, "emoji-clip", "config.json")) as f:
        cfg = json.load(f)
    vc = cfg["vision_config"]
    vision = ImageEncoder(tuple(vc["widths"]), vc.get("blocks_per_stage", 1), cfg["projection_dim"]).eval()
    wrapper = E.ClipImageWrap(_Clip(vision))
    info = load_committed(wrapper, lambda p: export_clip_like(wrapper, p, cfg.get("image_size", 128)), path)

    size = cfg.get("image_size", 128)
    g = torch.Generator().manual_seed(302)
    px = f32(torch.randn(1, 3, size, size, generator=g, dtype=torch.float64)).requires_grad_()
    direction = f32(torch.randn(1, cfg["projection_dim"], generator=g, dtype=torch.float64))
    emb = wrapper(px)
    # losses.ts cosineDistanceLoss: 1 - <a, b> / max(sqrt(|a|^2 |b|^2), 1e-8), mean over the batch
    dot = (emb * direction).sum(-1)
    norms = torch.sqrt((emb * emb).sum(-1) * (direction * direction).sum(-1)).clamp(min=1e-8)
    loss = (1 - dot / norms).mean()
    params = dict(wrapper.named_parameters())
    grads = torch.autograd.grad(loss, [px] + [params[p] for p in CLIP_WEIGHTS])

    got = ort_forward(path, {"pixel_values": px.detach().float().numpy()}, "image_embeds")
    forward_err = rel_err(emb.detach().numpy(), got)
    print(f"[clip] ONNX Runtime forward vs float64 PyTorch: max|Δ|/max|ref| = {forward_err:.2e}")
    assert forward_err < FORWARD_TOLERANCE, "the PyTorch module does not reproduce the ONNX file: mapping error?"

    folder = os.path.join(OUT, "clip")
    os.makedirs(folder, exist_ok=True)
    entry = {
        "onnx": os.path.relpath(path, ROOT),
        "onnx_sha256": sha256(path),
        "inputs": {
            "pixel_values": {"file": save(folder, "pixel_values", px), "shape": list(px.shape)},
            "image_embeds_direction": {"file": save(folder, "image_embeds_direction", direction),
                                       "shape": list(direction.shape)},
        },
        "loss": {"kind": "cosine", "tensor": "image_embeds", "other_input": "image_embeds_direction",
                 "reduction": "mean", "value": float(loss)},
        "output": {"name": "image_embeds", "file": save(folder, "image_embeds", emb)},
        "ort_forward_rel_err": forward_err,
        "gradients": [
            {"wrt": "pixel_values", "file": save(folder, "grad_pixel_values", grads[0]), "shape": list(px.shape),
             "storage": "graph input", "promote": False},
        ] + weight_entries(info, wrapper, CLIP_WEIGHTS, grads[1:], folder),
    }
    print(f"[clip] loss {float(loss):.6f}; wrote {folder}")
    return entry


def set_out(folder: str) -> None:
    global OUT
    OUT = os.path.abspath(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.path.join(ROOT, "models"), help="folder holding emoji-ldm/ and emoji-clip/")
    ap.add_argument("--only", choices=["unet", "clip"], default=None)
    ap.add_argument("--out", default=OUT, help="fixture folder (default tests/fixtures/autodiff/bundled)")
    args = ap.parse_args()
    set_out(args.out)
    torch.set_num_threads(1)
    manifest_path = os.path.join(OUT, "manifest.json")
    manifest = {}
    if args.only and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    manifest["_comment"] = ("Float64 PyTorch autograd references for tests/autodiff/bundled_models.test.ts, written by "
                            "/usr/bin/python3 training/reference/autodiff_bundled_reference.py (see its docstring). "
                            "All .npy files are float32.")
    if args.only in (None, "unet"):
        manifest["unet"] = unet_reference(args.models)
    if args.only in (None, "clip"):
        manifest["clip"] = clip_reference(args.models)
    os.makedirs(OUT, exist_ok=True)
    common.write_json(manifest_path, manifest)
    total = sum(os.path.getsize(os.path.join(dp, n)) for dp, _, fs in os.walk(OUT) for n in fs)
    print(f"wrote {manifest_path} ({total / 1024:.0f} KiB in {OUT})")


if __name__ == "__main__":
    main()
