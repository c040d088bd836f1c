"""PyTorch side of `npm run bench -- vs-torch` (issue 11): the same networks, built from the project's PyTorch
reference modules (training/reference/models.py) with random weights, exported to ONNX for EditKit, and timed in
PyTorch with the same inputs and thread count.

    /usr/bin/python3 training/bench/vs_torch.py export --size bundled|sd15 --out DIR
    /usr/bin/python3 training/bench/vs_torch.py time --dir DIR --what unet|unet_grad|vae_encode|vae_decode \
        --threads 2 --repeats 5
    /usr/bin/python3 training/bench/vs_torch.py matmul --threads 2

`export` writes DIR/{unet,vae_encoder,vae_decoder}.onnx, the weights (DIR/*.pt), the inputs (DIR/*.npy) and
DIR/meta.json (parameter counts, multiply-add counts). `time` prints one JSON line: the median of `repeats` runs
after one warm-up, in ms, the process's peak RSS, and the BLAS torch runs on. Each `time` call is its own process,
so its peak RSS is that configuration's.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "training", "reference"))
import models as M  # noqa: E402


def config(size: str) -> dict:
    if size == "bundled":
        unet = json.load(open(os.path.join(ROOT, "models", "emoji-ldm", "unet", "config.json")))
        vae = json.load(open(os.path.join(ROOT, "models", "emoji-ldm", "vae_decoder", "config.json")))
        return {
            "unet": dict(
                in_channels=unet["in_channels"], out_channels=unet["out_channels"],
                block_out_channels=unet["block_out_channels"], down_block_types=unet["down_block_types"],
                up_block_types=unet["up_block_types"], layers_per_block=unet["layers_per_block"],
                norm_num_groups=unet["norm_num_groups"], attention_head_dim=32,
                cross_attention_dim=unet["cross_attention_dim"], sample_size=unet["sample_size"]),
            "vae": dict(block_out_channels=vae["block_out_channels"], layers_per_block=vae["layers_per_block"],
                        latent_channels=vae["latent_channels"], norm_num_groups=vae["norm_num_groups"],
                        sample_size=vae["sample_size"]),
            "latent": unet["sample_size"], "image": vae["sample_size"], "context": [24, unet["cross_attention_dim"]],
        }
    if size == "sd15":
        widths = [320, 640, 1280, 1280]
        return {
            "unet": dict(in_channels=4, out_channels=4, block_out_channels=widths,
                         down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                         up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, layers_per_block=2,
                         norm_num_groups=32, attention_head_dim=40, cross_attention_dim=768, sample_size=64),
            "vae": dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
                        norm_num_groups=32, sample_size=512),
            "latent": 64, "image": 512, "context": [77, 768],
        }
    raise SystemExit(f"unknown size {size}")


class Encode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode_parameters(sample)


class Decode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample)


def multiply_adds(module: torch.nn.Module, *inputs) -> int:
    """Multiply-adds of Conv2d and Linear layers and of attention's two matmuls, counted with hooks."""
    total = [0]

    def conv(m, i, o):
        total[0] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, i, o):
        total[0] += o.numel() * m.in_features

    def attention(m, i, o):
        x = i[0]
        context = i[1] if len(i) > 1 and i[1] is not None else x
        b, n, c = x.shape
        total[0] += 2 * b * n * context.shape[1] * c  # QKᵀ and AV

    hooks = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif isinstance(m, M.Attention):
            hooks.append(m.register_forward_hook(attention))
    with torch.no_grad():
        module(*inputs)
    for h in hooks:
        h.remove()
    return total[0]


class LoRALinear(torch.nn.Module):
    """y = W x + B A x, rank r, A ~ N(0, 1/r²) as diffusers' LoRALinearLayer; B small but non-zero so that A's
    gradient is not trivially zero (EditKit's side uses initB 'normal' for the same reason)."""

    def __init__(self, base: torch.nn.Linear, rank: int):
        super().__init__()
        self.base = base
        self.down = torch.nn.Linear(base.in_features, rank, bias=False)
        self.up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.normal_(self.down.weight, std=1 / rank)
        torch.nn.init.normal_(self.up.weight, std=0.01)

    def forward(self, x):
        return self.base(x) + self.up(self.down(x))


def add_lora(unet: torch.nn.Module, rank: int = 16) -> list:
    """LoRA on every attention projection (to_q, to_k, to_v, to_out), as DragDiffusion; returns the new parameters."""
    params = []
    for m in unet.modules():
        if isinstance(m, M.Attention):
            for name in ("to_q", "to_k", "to_v", "to_out"):
                lora = LoRALinear(getattr(m, name), rank)
                setattr(m, name, lora)
                params += [lora.down.weight, lora.up.weight]
    return params


def export(args):
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = config(args.size)
    os.makedirs(args.out, exist_ok=True)
    unet = M.UNet2DConditionModel(**cfg["unet"]).eval()
    vae = M.AutoencoderKL(**cfg["vae"]).eval()
    lat, img = cfg["latent"], cfg["image"]
    ch = cfg["unet"]["in_channels"]
    inputs = {
        "sample": torch.randn(2, ch, lat, lat),
        "timestep": torch.tensor([500, 500], dtype=torch.int64),
        "encoder_hidden_states": torch.randn(2, *cfg["context"]),
        "image": torch.rand(1, 3, img, img) * 2 - 1,
        "latent_sample": torch.randn(1, cfg["vae"]["latent_channels"], lat, lat),
    }
    for name, value in inputs.items():
        np.save(os.path.join(args.out, f"{name}.npy"), value.numpy())
    torch.save(unet.state_dict(), os.path.join(args.out, "unet.pt"))
    torch.save(vae.state_dict(), os.path.join(args.out, "vae.pt"))
    opset = 17
    with torch.no_grad():
        torch.onnx.export(unet, (inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]),
                          os.path.join(args.out, "unet.onnx"), opset_version=opset,
                          input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["out_sample"],
                          dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"},
                                        "encoder_hidden_states": {0: "batch"}, "out_sample": {0: "batch"}})
        torch.onnx.export(Encode(vae), (inputs["image"],), os.path.join(args.out, "vae_encoder.onnx"),
                          opset_version=opset, input_names=["sample"], output_names=["latent_parameters"])
        torch.onnx.export(Decode(vae), (inputs["latent_sample"],), os.path.join(args.out, "vae_decoder.onnx"),
                          opset_version=opset, input_names=["latent_sample"], output_names=["sample"])
    meta = {
        "size": args.size,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "vae_parameters": sum(p.numel() for p in vae.parameters()),
        "multiply_adds": {
            "unet": multiply_adds(unet, inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]),
            "vae_encode": multiply_adds(Encode(vae), inputs["image"]),
            "vae_decode": multiply_adds(Decode(vae), inputs["latent_sample"]),
        },
        "config": cfg,
    }
    json.dump(meta, open(os.path.join(args.out, "meta.json"), "w"), indent=2)
    print(json.dumps({k: meta[k] for k in ("unet_parameters", "vae_parameters", "multiply_adds")}))


def blas() -> str:
    """The BLAS library this process loaded (Debian's torch links the reference BLAS unless OpenBLAS is installed)."""
    try:
        maps = open("/proc/self/maps").read()
    except OSError:
        maps = ""
    libraries = {os.path.realpath(line.split()[-1]) for line in maps.splitlines() if ".so" in line}
    for name in ("libopenblas", "libmkl", "libblis", "libblas"):
        for path in sorted(libraries):
            if os.path.basename(path).startswith(name):
                return path
    return "unknown"


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def time_one(args):
    torch.set_num_threads(args.threads)
    meta = json.load(open(os.path.join(args.dir, "meta.json")))
    cfg = meta["config"]
    load = lambda n: torch.from_numpy(np.load(os.path.join(args.dir, f"{n}.npy")))  # noqa: E731
    x = {n: load(n) for n in ("sample", "timestep", "encoder_hidden_states", "image", "latent_sample")}
    if args.what.startswith("unet") or args.what == "lora_step":
        unet = M.UNet2DConditionModel(**cfg["unet"]).eval()
        unet.load_state_dict(torch.load(os.path.join(args.dir, "unet.pt")))
        if args.what == "unet":
            def fn():
                with torch.no_grad():
                    unet(x["sample"], x["timestep"], x["encoder_hidden_states"])
        elif args.what == "lora_step":
            # One LoRA training step, batch 2: forward, MSE to a target, backward to the LoRA factors, Adam update.
            for p in unet.parameters():
                p.requires_grad_(False)
            params = add_lora(unet)
            optimizer = torch.optim.AdamW(params, lr=5e-4)
            target = torch.zeros_like(x["sample"])

            def fn():
                optimizer.zero_grad()
                loss = ((unet(x["sample"], x["timestep"], x["encoder_hidden_states"]) - target) ** 2).mean()
                loss.backward()
                optimizer.step()
        else:
            # d mean((ε − target)²) / d sample, batch 1 (DragDiffusion's latent gradient, without the feature cut).
            for p in unet.parameters():
                p.requires_grad_(False)
            sample, t, ctx = x["sample"][:1], x["timestep"][:1], x["encoder_hidden_states"][:1]
            target = torch.zeros_like(sample)

            def fn():
                s = sample.clone().requires_grad_(True)
                loss = ((unet(s, t, ctx) - target) ** 2).mean()
                loss.backward()
    else:
        vae = M.AutoencoderKL(**cfg["vae"]).eval()
        vae.load_state_dict(torch.load(os.path.join(args.dir, "vae.pt")))
        if args.what == "vae_encode":
            def fn():
                with torch.no_grad():
                    vae.encode_parameters(x["image"])
        else:
            def fn():
                with torch.no_grad():
                    vae.decode(x["latent_sample"])
    ms = median_ms(fn, args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"what": args.what, "ms": ms, "peak_rss_mib": peak, "threads": torch.get_num_threads(),
                      "blas": blas(), "torch": torch.__version__}))


def matmul(args):
    torch.set_num_threads(args.threads)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    ms = median_ms(lambda: a @ b, 10)
    print(json.dumps({"gflops": 2 * n ** 3 / ms / 1e6, "blas": blas()}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--size", choices=["bundled", "sd15"], required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--threads", type=int, default=2)
    t = sub.add_parser("time")
    t.add_argument("--dir", required=True)
    t.add_argument("--what", choices=["unet", "unet_grad", "lora_step", "vae_encode", "vae_decode"], required=True)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--repeats", type=int, default=5)
    m = sub.add_parser("matmul")
    m.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    {"export": export, "time": time_one, "matmul": matmul}[args.cmd](args)


main()
