"""Float64 PyTorch gradients of the tiny SD UNet, the reference for EditKit's ONNX autodiff on a real export.

    /usr/bin/python3 training/reference/autodiff_unet_reference.py

Rebuilds the UNet of tests/fixtures/bundles/tiny-sd (training/fixtures/make_tiny_sd.py: unet1, seed 102) and
checks that its weights equal the exported model's initializers. Then, in float64, for
L = sum(unet(sample, timestep, encoder_hidden_states) * projection), writes to tests/fixtures/autodiff/unet/:
sample, encoder_hidden_states, projection (inputs), out (the forward output), and dL/d of sample,
encoder_hidden_states, conv_in.weight and the first to_q weight, the latter transposed as in the ONNX export
(torch exports Linear weights as W^T initializers named onnx::MatMul_*). All .npy files are float32.
"""

import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "training", "reference"))
sys.path.insert(0, os.path.join(ROOT, "training", "fixtures"))
sys.path.insert(0, os.path.join(ROOT, "training", "common"))

import models as M  # noqa: E402
from make_tiny_sd import init_model  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures", "autodiff", "unet")
ONNX = os.path.join(ROOT, "tests", "fixtures", "bundles", "tiny-sd", "unet", "model.onnx")
TO_Q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"


def main() -> None:
    torch.set_num_threads(1)
    unet = init_model(M.UNet2DConditionModel(in_channels=4, cross_attention_dim=32, sample_size=8), 102, {"conv_out": 2.0})
    exported = {t.name: numpy_helper.to_array(t) for t in onnx.load(ONNX).graph.initializer}
    state = unet.state_dict()
    assert np.array_equal(exported["conv_in.weight"], state["conv_in.weight"].numpy()), "conv_in differs from the bundle"
    to_q = state[TO_Q + ".weight"].numpy()
    matches = [k for k, v in exported.items() if v.shape == to_q.T.shape and np.array_equal(v, to_q.T)]
    assert len(matches) == 1, f"to_q weight not found uniquely in the export: {matches}"

    unet = unet.double()
    # The sinusoidal timestep projection is computed in float32 by design (as diffusers does); widen its output.
    project = unet.time_proj.forward
    unet.time_proj.forward = lambda t: project(t).double()
    g = torch.Generator().manual_seed(201)
    sample = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64).float().double().requires_grad_()
    ehs = torch.randn(1, 5, 32, generator=g, dtype=torch.float64).float().double().requires_grad_()
    projection = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64).float().double()
    timestep = torch.tensor([500], dtype=torch.int64)
    out = unet(sample, timestep, ehs)
    loss = (out * projection).sum()
    params = dict(unet.named_parameters())
    grads = torch.autograd.grad(loss, [sample, ehs, params["conv_in.weight"], params[TO_Q + ".weight"]])

    os.makedirs(OUT, exist_ok=True)
    arrays = {
        "sample": sample,
        "encoder_hidden_states": ehs,
        "projection": projection,
        "out": out,
        "grad_sample": grads[0],
        "grad_encoder_hidden_states": grads[1],
        "grad_conv_in_weight": grads[2],
        "grad_to_q_weight_t": grads[3].t(),
    }
    for name, t in arrays.items():
        np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(t.detach().numpy().astype(np.float32)))
    with open(os.path.join(OUT, "to_q_initializer.txt"), "w") as f:
        f.write(matches[0] + "\n")
    print("wrote", OUT, "loss", float(loss))


if __name__ == "__main__":
    main()
