"""Assembles a random-weight SD-1.5-size model folder (diffusers/Optimum ONNX layout) from the vs-torch bench's
export, for measuring whole pipelines at that size (`editkit drag --model DIR`, docs/bench/vs-torch.md).

    /usr/bin/python3 training/bench/vs_torch.py export --size sd15 --out bench-results/vs-torch/models/sd15
    /usr/bin/python3 training/bench/make_sd15_bundle.py bench-results/vs-torch/models/sd15 bench-results/sd15-bundle

The UNet (860 M parameters, weights in external-data files as real SD exports keep them) and the VAE are the
export's, hard-linked (ONNX Runtime refuses external data reached through a symbolic link out of the model's
folder). The text encoder is a stand-in of the right width (token + position embeddings, 768 wide, 77 tokens):
the pipelines' memory and time at this size are the UNet's and the VAE's. Tokenizer and scheduler are the bundled
model's. Nothing here is a trained model; the images it makes are noise.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUNDLED = os.path.join(ROOT, "models", "emoji-ldm")
SKIP = {"meta.json", "unet.onnx", "vae_encoder.onnx", "vae_decoder.onnx"}


def link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)  # another file system


def main(export: str, out: str) -> None:
    meta = json.load(open(os.path.join(export, "meta.json")))
    if meta.get("size") != "sd15":
        sys.exit(f"{export} is not an sd15 export of training/bench/vs_torch.py")
    if os.path.exists(out):
        shutil.rmtree(out)
    for d in ("unet", "vae_encoder", "vae_decoder", "text_encoder"):
        os.makedirs(os.path.join(out, d))
    shutil.copytree(os.path.join(BUNDLED, "scheduler"), os.path.join(out, "scheduler"))
    shutil.copytree(os.path.join(BUNDLED, "tokenizer"), os.path.join(out, "tokenizer"))
    shutil.copy(os.path.join(BUNDLED, "model_index.json"), out)

    for name in os.listdir(export):
        if name in SKIP or name.endswith((".npy", ".pt")):
            continue
        link(os.path.join(export, name), os.path.join(out, "unet", name))  # the UNet's external weights
    link(os.path.join(export, "unet.onnx"), os.path.join(out, "unet", "model.onnx"))
    link(os.path.join(export, "vae_encoder.onnx"), os.path.join(out, "vae_encoder", "model.onnx"))
    link(os.path.join(export, "vae_decoder.onnx"), os.path.join(out, "vae_decoder", "model.onnx"))

    config = meta["config"]
    unet = dict(config["unet"], _class_name="UNet2DConditionModel", sample_size=config["latent"])
    json.dump(unet, open(os.path.join(out, "unet", "config.json"), "w"), indent=1)
    vae = dict(config["vae"], _class_name="AutoencoderKL", scaling_factor=0.18215, in_channels=3, out_channels=3)
    for d in ("vae_encoder", "vae_decoder"):
        json.dump(vae, open(os.path.join(out, d, "config.json"), "w"), indent=1)

    length, width = config["context"]
    tokenizer_config_path = os.path.join(out, "tokenizer", "tokenizer_config.json")
    tokenizer_config = json.load(open(tokenizer_config_path))
    tokenizer_config["model_max_length"] = length
    json.dump(tokenizer_config, open(tokenizer_config_path, "w"), indent=1)
    vocab = len(json.load(open(os.path.join(out, "tokenizer", "vocab.json")))) + len(
        tokenizer_config.get("added_tokens_decoder", {})
    )

    rng = np.random.default_rng(0)
    token = numpy_helper.from_array((0.5 * rng.standard_normal((vocab, width))).astype(np.float32), "token_embedding")
    position = numpy_helper.from_array(
        (0.1 * rng.standard_normal((1, length, width))).astype(np.float32), "position_embedding"
    )
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["token_embedding", "input_ids"], ["tokens"], axis=0),
            helper.make_node("Add", ["tokens", "position_embedding"], ["last_hidden_state"]),
        ],
        "text_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", length])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", length, width])],
        [token, position],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, os.path.join(out, "text_encoder", "model.onnx"))
    json.dump(
        {"architectures": ["CLIPTextModel"], "hidden_size": width, "max_position_embeddings": length,
         "model_type": "clip_text_model"},
        open(os.path.join(out, "text_encoder", "config.json"), "w"),
        indent=1,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: make_sd15_bundle.py EXPORT_DIR OUT_DIR")
    main(sys.argv[1], sys.argv[2])
