"""ONNX export of the trained models in the layouts EditKit reads, plus PyTorch-vs-ONNX Runtime checks.

models/emoji-ldm/ (diffusers/Optimum ONNX layout, as tests/fixtures/bundles/tiny-sd):
    model_index.json                     ORTStableDiffusionPipeline, Optimum-style component entries
    scheduler/scheduler_config.json      DDIMScheduler, SD's scaled_linear betas 0.00085..0.012, 1000 steps
    tokenizer/                           CLIP BPE (vocab.json, merges.txt, ...), pad = <|endoftext|>
    text_encoder/model.onnx              input_ids int32 [batch_size, sequence_length] ->
                                         last_hidden_state [batch_size, sequence_length, D], pooler_output [batch_size, D]
    unet/model.onnx                      sample [batch_size, 4, height, width], timestep int64 [steps],
                                         encoder_hidden_states [batch_size, sequence_length, D] -> out_sample
    vae_encoder/model.onnx               sample [batch_size, 3, H, W] -> latent_parameters (mean || logvar) [.., 8, H/4, W/4]
    vae_decoder/model.onnx               latent_sample [batch_size, 4, h, w] -> sample [.., 3, 4h, 4w]
models/emoji-clip/    image_encoder/model.onnx (pixel_values -> image_embeds), text_encoder/model.onnx
                      (input_ids -> text_embeds), tokenizer/, config.json
models/emoji-judge/   model.onnx (pixel_values -> object_logits, background_logits), labels.json, config.json

Every graph computes and exchanges float32; the weights are *stored* as float16 initializers, each followed by a
Cast to float32 (ONNX Runtime folds the casts when it loads the model), which halves the files without changing
the arithmetic apart from the weights' rounding. The sinusoidal timestep constants stay float32.

The UNet's decoder-block outputs (DragDiffusion's features) are named tensors of the graph: `up_block_<i>_output`
for up block i (lowest resolution first), listed in unet/config.json under `editkit_feature_tensors`. They are not
graph outputs (the UNet's only output is `out_sample`); a tool that wants them adds them as outputs (EditKit's
autodiff `outputs`, or onnx) before creating the session, which also keeps ONNX Runtime's fusions from removing
them.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from common import DIFFUSERS_VERSION, ROOT, TRANSFORMERS_VERSION, log, write_json
import models as M  # training/reference/models.py
import hf_configs as hf  # training/common/hf_configs.py

OPSET = 17
FEATURE_NAME = "up_block_{}_output"
ORT_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_run.mjs")


# --------------------------------------------------------------------------------------------------------------
# Export helpers
# --------------------------------------------------------------------------------------------------------------


def fp16_storage(model: onnx.ModelProto, min_size: int = 256, keep_prefixes: Sequence[str] = ("/time_proj",)):
    """float32 initializers with >= min_size elements -> float16 initializer + Cast(to float32) under the original
    name. Initializers consumed by nodes whose name starts with keep_prefixes stay float32."""
    g = model.graph
    consumers: Dict[str, list] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n.name)
    inits, casts = [], []
    for t in g.initializer:
        size = int(np.prod(t.dims)) if len(t.dims) else 1
        keep = any(c.startswith(p) for c in consumers[t.name] for p in keep_prefixes)
        if t.data_type == TensorProto.FLOAT and size >= min_size and not keep:
            arr = numpy_helper.to_array(t).astype(np.float16)
            h = numpy_helper.from_array(arr, t.name + "__fp16")
            inits.append(h)
            casts.append(helper.make_node("Cast", [h.name], [t.name], to=TensorProto.FLOAT, name=t.name + "__cast"))
        else:
            inits.append(t)
    del g.initializer[:]
    g.initializer.extend(inits)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model


def round_params_fp16(module: nn.Module, min_size: int = 256) -> nn.Module:
    """The PyTorch twin of fp16_storage (parameters with >= min_size elements rounded through float16)."""
    import copy

    m = copy.deepcopy(module)
    with torch.no_grad():
        for p in m.parameters():
            if p.numel() >= min_size:
                p.copy_(p.half().float())
    return m


# torch >= 2.9 defaults torch.onnx.export to the dynamo exporter; these exports rely on the TorchScript tracer
# (output names given to intermediate tensors, dynamic_axes, the reference attention under tracing).
_LEGACY_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def export_onnx(module: nn.Module, args, path: str, inputs: List[str], outputs: List[str], axes: dict,
                keep_outputs: Sequence[str] = None, fp16: bool = True, producer: str = "editkit-emoji") -> dict:
    """torch.onnx.export (opset 17, constant folding on), then: drop outputs not in keep_outputs (their tensors stay
    in the graph under their names), clear value_info, fp16 weight storage, IR version <= 8, checker."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    module.eval()  # (export restores the wrapper's mode on every submodule afterwards: keep it eval)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, **_LEGACY_EXPORTER)
    model = onnx.load_from_string(buf.getvalue())
    if keep_outputs is not None:
        kept = [o for o in model.graph.output if o.name in keep_outputs]
        del model.graph.output[:]
        model.graph.output.extend(kept)
    del model.graph.value_info[:]
    if fp16:
        model = fp16_storage(model)
    model.ir_version = min(model.ir_version, 8)
    model.producer_name = producer
    model.producer_version = "1"
    onnx.checker.check_model(model)
    onnx.save_model(model, path)
    return {"path": os.path.relpath(path, ROOT), "bytes": os.path.getsize(path), "opset": OPSET,
            "ir_version": model.ir_version}


# --------------------------------------------------------------------------------------------------------------
# Wrappers with Optimum's names
# --------------------------------------------------------------------------------------------------------------


class TextEncoderWrap(nn.Module):
    def __init__(self, te):
        super().__init__()
        self.te = te

    def forward(self, input_ids):
        return self.te(input_ids)


class VaeEncoderWrap(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode_parameters(sample)


class VaeDecoderWrap(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample)


class UNetWithFeatures(nn.Module):
    """out_sample plus every up block's output (captured with forward hooks on the reference UNet)."""

    def __init__(self, unet: M.UNet2DConditionModel):
        super().__init__()
        self.unet = unet
        self._feats: list = []
        for blk in unet.up_blocks:
            blk.register_forward_hook(lambda _m, _i, out: self._feats.append(out))

    def forward(self, sample, timestep, encoder_hidden_states):
        self._feats = []
        out = self.unet(sample, timestep, encoder_hidden_states)
        feats, self._feats = self._feats, []
        return (out, *feats)


# --------------------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------------------


def text_encoder_config(te: M.CLIPTextModel, tok_vocab: Dict[str, int], name: str) -> dict:
    eos = tok_vocab["<|endoftext|>"]
    return {**hf.clip_text_config(te, name, tok_vocab["<|startoftext|>"], eos, eos),
            "editkit_weight_storage": "float16"}


def unet_config(unet: M.UNet2DConditionModel) -> dict:
    rev = list(unet.config["block_out_channels"])[::-1]
    n = len(rev)
    return {
        **hf.unet_config(unet),
        "torch_dtype": "float32",
        "editkit_weight_storage": "float16",
        # DragDiffusion features: ONNX tensor names of the up blocks' outputs, lowest resolution first
        "editkit_feature_tensors": [FEATURE_NAME.format(i) for i in range(n)],
        "editkit_feature_channels": rev,
        # each feature map's side relative to the latent's (every up block but the last ends with a ×2 upsampler)
        "editkit_feature_scale": [2.0 ** -(n - 2 - i) if i < n - 1 else 1.0 for i in range(n)],
    }


def vae_config(vae: M.AutoencoderKL, scaling: float) -> dict:
    return {**hf.vae_config(vae), "scaling_factor": round(float(scaling), 5), "force_upcast": False,
            "editkit_weight_storage": "float16"}


MODEL_INDEX = {
    "_class_name": "ORTStableDiffusionPipeline",
    "_diffusers_version": DIFFUSERS_VERSION,
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["optimum", "ORTModelTextEncoder"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["optimum", "ORTModelUnet"],
    "vae_decoder": ["optimum", "ORTModelVaeDecoder"],
    "vae_encoder": ["optimum", "ORTModelVaeEncoder"],
}


# --------------------------------------------------------------------------------------------------------------
# Bundles
# --------------------------------------------------------------------------------------------------------------


def _copy_tokenizer(src: str, dst: str) -> None:
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def _fresh(folder: str) -> None:
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)


def export_ldm(out: str, tok, text_encoder: M.CLIPTextModel, unet: M.UNet2DConditionModel, vae: M.AutoencoderKL,
               scaling: float, scheduler_config: dict, extra: dict) -> dict:
    _fresh(out)
    text_encoder, unet, vae = text_encoder.cpu().eval(), unet.cpu().eval(), vae.cpu().eval()
    files = {}
    _copy_tokenizer(tok.folder, os.path.join(out, "tokenizer"))
    write_json(os.path.join(out, "model_index.json"), MODEL_INDEX)
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), scheduler_config)
    ids = torch.tensor([tok.ids("a photo of a cat"), tok.ids("")], dtype=torch.int32)
    files["text_encoder"] = export_onnx(
        TextEncoderWrap(text_encoder), (ids,), os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"],
        ["last_hidden_state", "pooler_output"],
        {"input_ids": {0: "batch_size", 1: "sequence_length"},
         "last_hidden_state": {0: "batch_size", 1: "sequence_length"}, "pooler_output": {0: "batch_size"}})
    write_json(os.path.join(out, "text_encoder", "config.json"),
               text_encoder_config(text_encoder, tok.tok.encoder, "editkit/emoji-ldm"))

    n_up = len(unet.up_blocks)
    feat_names = [FEATURE_NAME.format(i) for i in range(n_up)]
    g = torch.Generator().manual_seed(99)
    c, size = unet.config["in_channels"], unet.config["sample_size"]
    sample = torch.randn(2, c, size, size, generator=g)
    hidden = torch.randn(2, tok.max_length, unet.config["cross_attention_dim"], generator=g)
    t = torch.tensor([500, 500], dtype=torch.int64)
    axes = {
        "sample": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"},
        "timestep": {0: "steps"},
        "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
        "out_sample": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"},
    }
    for f in feat_names:
        axes[f] = {0: "batch_size", 2: f"{f}_height", 3: f"{f}_width"}
    wrap = UNetWithFeatures(unet)
    files["unet"] = export_onnx(wrap, (sample, t, hidden), os.path.join(out, "unet", "model.onnx"),
                                ["sample", "timestep", "encoder_hidden_states"], ["out_sample", *feat_names], axes,
                                keep_outputs=["out_sample"])
    for h in list(unet.up_blocks):
        h._forward_hooks.clear()
    write_json(os.path.join(out, "unet", "config.json"), unet_config(unet))

    image_size = vae.config["sample_size"]
    img = torch.rand(1, 3, image_size, image_size, generator=g) * 2 - 1
    files["vae_encoder"] = export_onnx(
        VaeEncoderWrap(vae), (img,), os.path.join(out, "vae_encoder", "model.onnx"), ["sample"],
        ["latent_parameters"],
        {"sample": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"},
         "latent_parameters": {0: "batch_size", 1: "num_channels_latent", 2: "height_latent", 3: "width_latent"}})
    z = torch.randn(1, vae.config["latent_channels"], image_size // 4, image_size // 4, generator=g)
    files["vae_decoder"] = export_onnx(
        VaeDecoderWrap(vae), (z,), os.path.join(out, "vae_decoder", "model.onnx"), ["latent_sample"], ["sample"],
        {"latent_sample": {0: "batch_size", 1: "num_channels_latent", 2: "height_latent", 3: "width_latent"},
         "sample": {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"}})
    for part in ("vae_encoder", "vae_decoder"):
        write_json(os.path.join(out, part, "config.json"), vae_config(vae, scaling))
    write_json(os.path.join(out, "editkit_training.json"), extra)
    return files


class ClipImageWrap(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.vision = clip.vision

    def forward(self, pixel_values):
        return self.vision(pixel_values)


class ClipTextWrap(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.text = clip.text

    def forward(self, input_ids):
        return self.text(input_ids)


def export_clip(out: str, tok, clip, extra: dict, image_size: int = 128) -> dict:
    from clip import CLIP_MEAN, CLIP_STD

    _fresh(out)
    clip = clip.cpu().eval()
    files = {}
    _copy_tokenizer(tok.folder, os.path.join(out, "tokenizer"))
    g = torch.Generator().manual_seed(7)
    px = torch.randn(2, 3, image_size, image_size, generator=g)
    files["image_encoder"] = export_onnx(
        ClipImageWrap(clip), (px,), os.path.join(out, "image_encoder", "model.onnx"), ["pixel_values"],
        ["image_embeds"], {"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"}})
    ids = torch.tensor([tok.ids("a photo of a cat"), tok.ids("")], dtype=torch.int32)
    files["text_encoder"] = export_onnx(
        ClipTextWrap(clip), (ids,), os.path.join(out, "text_encoder", "model.onnx"), ["input_ids"], ["text_embeds"],
        {"input_ids": {0: "batch_size", 1: "sequence_length"}, "text_embeds": {0: "batch_size"}})
    te = clip.text.encoder
    config = {
        "_name_or_path": "editkit/emoji-clip",
        "model_type": "editkit_small_clip",
        "projection_dim": clip.cfg["projection_dim"],
        "logit_scale": round(float(clip.logit_scale.detach().exp().clamp(max=100)), 4),
        "embeds_normalized": False,
        "image_size": image_size,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "preprocessing": f"pixel_values = (rgb / 255 - image_mean) / image_std, RGB, CHW, {image_size}×{image_size} "
                         "(resize first)",
        "inputs": {"image_encoder": {"pixel_values": f"float32 [batch_size, 3, {image_size}, {image_size}]"},
                   "text_encoder": {"input_ids": f"int32 [batch_size, sequence_length] ({tok.max_length}, padded "
                                                 "with <|endoftext|>)"}},
        "outputs": {"image_encoder": {"image_embeds": f"float32 [batch_size, {clip.cfg['projection_dim']}]"},
                    "text_encoder": {"text_embeds": f"float32 [batch_size, {clip.cfg['projection_dim']}]"}},
        "vision_config": {"architecture": "residual CNN (GroupNorm, SiLU), mean pool, linear projection",
                          "widths": list(clip.cfg["image_widths"]), "blocks_per_stage": clip.cfg.get("image_blocks", 1)},
        "text_config": {**te.config, "model_type": "clip_text_model", "pad_token_id": tok.eos_id,
                        "eos_token_id": tok.eos_id},
        "max_length": tok.max_length,
        "editkit_weight_storage": "float16",
        **extra,
    }
    write_json(os.path.join(out, "config.json"), config)
    return files


class JudgeWrap(nn.Module):
    def __init__(self, judge):
        super().__init__()
        self.judge = judge

    def forward(self, pixel_values):
        return self.judge(pixel_values)


def export_judge(out: str, judge, class_names, background_names, extra: dict, image_size: int = 128) -> dict:
    _fresh(out)
    judge = judge.cpu().eval()
    g = torch.Generator().manual_seed(5)
    px = torch.rand(2, 3, image_size, image_size, generator=g) * 2 - 1
    files = {"judge": export_onnx(
        JudgeWrap(judge), (px,), os.path.join(out, "model.onnx"), ["pixel_values"],
        ["object_logits", "background_logits"],
        {"pixel_values": {0: "batch_size"}, "object_logits": {0: "batch_size"}, "background_logits": {0: "batch_size"}})}
    write_json(os.path.join(out, "labels.json"), {
        "objects": list(class_names),
        "backgrounds": list(background_names),
        "object_threshold": 0.5,
        "_comment": "object_logits[i] is objects[i] (sigmoid >= object_threshold: present); background_logits[j] "
                    "is backgrounds[j] (argmax).",
    })
    write_json(os.path.join(out, "config.json"), {
        "_name_or_path": "editkit/emoji-judge",
        "model_type": "editkit_emoji_judge",
        "image_size": image_size,
        "preprocessing": f"pixel_values = rgb / 127.5 - 1 (SD's [-1, 1] image convention), RGB, CHW, "
                         f"{image_size}×{image_size}",
        "inputs": {"pixel_values": f"float32 [batch_size, 3, {image_size}, {image_size}] in [-1, 1]"},
        "outputs": {"object_logits": f"float32 [batch_size, {len(class_names)}] (independent sigmoids)",
                    "background_logits": f"float32 [batch_size, {len(background_names)}] (softmax)"},
        "architecture": "ResNet-style CNN (BatchNorm, ReLU), avg+max pooling, two linear heads",
        "editkit_weight_storage": "float16",
        **extra,
    })
    return files


# --------------------------------------------------------------------------------------------------------------
# Verification against PyTorch through onnxruntime-node
# --------------------------------------------------------------------------------------------------------------


def _with_outputs(path: str, names: Sequence[str], dst: str) -> str:
    """A copy of the model with intermediate tensors `names` added as graph outputs (to read them back)."""
    model = onnx.load(path)
    produced = {o for n in model.graph.node for o in n.output}
    missing = [n for n in names if n not in produced]
    if missing:
        raise AssertionError(f"{path}: tensors {missing} are not in the graph")
    for n in names:
        model.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    onnx.save_model(model, dst)
    return dst


def run_ort(cases: List[dict]) -> List[Dict[str, np.ndarray]]:
    """cases: [{model, inputs: {name: np.ndarray}, outputs: [names]}] -> outputs per case.

    Runs onnxruntime-node (EditKit's runtime) through ort_run.mjs when node and the package are there, else
    Python's onnxruntime (e.g. on a GPU training machine without node_modules); EDITKIT_ORT=node|python forces
    one."""
    how = os.environ.get("EDITKIT_ORT", "")
    if not how:
        how = "node" if os.path.isdir(os.path.join(ROOT, "node_modules", "onnxruntime-node")) else "python"
    if how == "python":
        import onnxruntime as ort

        results = []
        for c in cases:
            sess = ort.InferenceSession(c["model"], providers=["CPUExecutionProvider"])
            outs = sess.run(c["outputs"], dict(c["inputs"]))
            results.append({n: np.asarray(o, dtype=np.float32) for n, o in zip(c["outputs"], outs)})
        return results
    tmp = tempfile.mkdtemp(prefix="editkit-ort-")
    try:
        manifest = {"cases": []}
        for k, c in enumerate(cases):
            inputs = {}
            for name, arr in c["inputs"].items():
                f = os.path.join(tmp, f"{k}-{name}.bin")
                np.ascontiguousarray(arr).tofile(f)
                inputs[name] = {"file": f, "dtype": str(arr.dtype), "shape": list(arr.shape)}
            manifest["cases"].append({"model": c["model"], "out": os.path.join(tmp, f"out{k}"), "inputs": inputs,
                                      "outputs": c["outputs"]})
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        subprocess.run(["node", ORT_RUNNER, os.path.join(tmp, "manifest.json")], cwd=ROOT, check=True)
        results = []
        for k, c in enumerate(cases):
            d = os.path.join(tmp, f"out{k}")
            with open(os.path.join(d, "outputs.json")) as f:
                shapes = json.load(f)["shapes"]
            r = {}
            for name in c["outputs"]:
                fname = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in name)
                r[name] = np.fromfile(os.path.join(d, f"{fname}.bin"), dtype=np.float32).reshape(shapes[name]["shape"])
            results.append(r)
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _err(ref: torch.Tensor, got: np.ndarray) -> dict:
    ref = ref.detach().float().cpu().numpy()
    if ref.shape != got.shape:
        raise AssertionError(f"shape {got.shape} != reference {ref.shape}")
    return {"max_abs_err": float(np.abs(ref - got).max()), "max_abs_ref": float(np.abs(ref).max())}


@torch.no_grad()
def verify_all(dirs: dict, tok, text_encoder, unet, vae, clip, judge, images: np.ndarray) -> dict:
    """Runs every exported model in onnxruntime-node on fixed inputs and compares with the float32 PyTorch
    modules (and, for the LDM parts, with the PyTorch modules whose weights are rounded through float16 as stored).
    `images`: two uint8 [H, W, 3] held-out renders."""
    from clip import clip_pixels
    from data import to_tensor

    tmp = tempfile.mkdtemp(prefix="editkit-verify-")
    report = {}
    cases, refs = [], []
    prompts = ["a photo of a cat and an apple on the grass", ""]
    ids = np.array([tok.ids(p) for p in prompts], dtype=np.int32)
    te16 = round_params_fp16(text_encoder)
    ldm = dirs.get("ldm")
    if ldm:
        hid, pooled = text_encoder(torch.from_numpy(ids).long())
        hid16, pooled16 = te16(torch.from_numpy(ids).long())
        cases.append({"model": os.path.join(ldm, "text_encoder", "model.onnx"), "inputs": {"input_ids": ids},
                      "outputs": ["last_hidden_state", "pooler_output"]})
        refs.append(("ldm/text_encoder", {"last_hidden_state": (hid, hid16), "pooler_output": (pooled, pooled16)}))

        g = torch.Generator().manual_seed(11)
        c, size = unet.config["in_channels"], unet.config["sample_size"]
        sample = torch.randn(2, c, size, size, generator=g)
        t = np.array([801, 321], dtype=np.int64)
        feats = []
        hooks = [b.register_forward_hook(lambda _m, _i, o: feats.append(o)) for b in unet.up_blocks]
        out = unet(sample, torch.from_numpy(t), hid)
        f32 = list(feats)
        feats.clear()
        for h in hooks:
            h.remove()
        u16 = round_params_fp16(unet)
        feats16 = []
        hooks = [b.register_forward_hook(lambda _m, _i, o: feats16.append(o)) for b in u16.up_blocks]
        out16 = u16(sample, torch.from_numpy(t), hid)
        for h in hooks:
            h.remove()
        names = [FEATURE_NAME.format(i) for i in range(len(f32))]
        probe = _with_outputs(os.path.join(ldm, "unet", "model.onnx"), names, os.path.join(tmp, "unet_features.onnx"))
        cases.append({"model": probe, "inputs": {"sample": sample.numpy(), "timestep": t,
                                                 "encoder_hidden_states": hid.numpy()},
                      "outputs": ["out_sample", *names]})
        r = {"out_sample": (out, out16)}
        r.update({n: (a, b) for n, a, b in zip(names, f32, feats16)})
        refs.append(("ldm/unet", r))

        x = to_tensor(images[:1])
        vae16 = round_params_fp16(vae)
        enc, enc16 = vae.encode_parameters(x), vae16.encode_parameters(x)
        cases.append({"model": os.path.join(ldm, "vae_encoder", "model.onnx"), "inputs": {"sample": x.numpy()},
                      "outputs": ["latent_parameters"]})
        refs.append(("ldm/vae_encoder", {"latent_parameters": (enc, enc16)}))
        z = enc[:, : enc.shape[1] // 2].contiguous()
        dec, dec16 = vae.decode(z), vae16.decode(z)
        cases.append({"model": os.path.join(ldm, "vae_decoder", "model.onnx"), "inputs": {"latent_sample": z.numpy()},
                      "outputs": ["sample"]})
        refs.append(("ldm/vae_decoder", {"sample": (dec, dec16)}))
    if dirs.get("clip"):
        px = clip_pixels(images[:2])
        c16 = round_params_fp16(clip)
        cases.append({"model": os.path.join(dirs["clip"], "image_encoder", "model.onnx"),
                      "inputs": {"pixel_values": px.numpy()}, "outputs": ["image_embeds"]})
        refs.append(("clip/image_encoder", {"image_embeds": (clip.vision(px), c16.vision(px))}))
        cases.append({"model": os.path.join(dirs["clip"], "text_encoder", "model.onnx"),
                      "inputs": {"input_ids": ids}, "outputs": ["text_embeds"]})
        ids_t = torch.from_numpy(ids).long()
        refs.append(("clip/text_encoder", {"text_embeds": (clip.text(ids_t), c16.text(ids_t))}))
    if dirs.get("judge"):
        px = to_tensor(images[:2])
        lo, lb = judge(px)
        cases.append({"model": os.path.join(dirs["judge"], "model.onnx"), "inputs": {"pixel_values": px.numpy()},
                      "outputs": ["object_logits", "background_logits"]})
        refs.append(("judge", {"object_logits": (lo, None), "background_logits": (lb, None)}))
    results = run_ort(cases)
    for (name, ref), got in zip(refs, results):
        rep = {}
        for k, (a, b) in ref.items():
            e = _err(a, got[k])
            if b is not None:
                e["max_abs_err_vs_fp16_weights"] = _err(b, got[k])["max_abs_err"]
            rep[k] = e
        report[name] = rep
        log(f"ONNX check {name}: " + ", ".join(
            f"{k} max|Δ| {v['max_abs_err']:.2e} (vs fp16-rounded weights "
            f"{v.get('max_abs_err_vs_fp16_weights', float('nan')):.2e}, max|ref| {v['max_abs_ref']:.2f})"
            for k, v in rep.items()))
    shutil.rmtree(tmp, ignore_errors=True)
    return report
