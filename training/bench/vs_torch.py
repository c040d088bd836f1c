"""PyTorch side of `npm run bench -- vs-torch` (issue 11): the same networks, built from the project's PyTorch
reference modules (training/reference/models.py) with random weights, exported to ONNX for EditKit, and timed in
PyTorch with the same inputs and thread count.

    /usr/bin/python3 training/bench/vs_torch.py export --size bundled|sd15 --out DIR
    /usr/bin/python3 training/bench/vs_torch.py time --dir DIR --what unet|unet_grad|drag_step|lora_step|vae_encode|vae_decode \
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


def ddim_alphas() -> torch.Tensor:
    """The bundled scheduler's ᾱ (scaled_linear betas 0.00085–0.012, 1000 steps), as EditKit's DDIM builds it."""
    cfg = json.load(open(os.path.join(ROOT, "models", "emoji-ldm", "scheduler", "scheduler_config.json")))
    betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, cfg["num_train_timesteps"],
                           dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def ddim_step(alphas, eps, t, t_next, x):
    """x at ᾱ_t → x at ᾱ_{t_next} (either direction), η = 0."""
    a, a_next = alphas[t], (alphas[t_next] if t_next >= 0 else torch.tensor(1.0))
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps


def end_to_end(args, unet, vae, x):
    """One whole DiffEdit or DragDiffusion edit, making the network calls EditKit's run reported (`--counts`): the same
    modules, batch sizes and number of calls, with the host-side work of each step (DDIM updates, mask, blending,
    Adam on z_t, point tracking). Text encoder: the bundled configuration with random weights."""
    counts = json.loads(args.counts)
    cfg = json.load(open(os.path.join(ROOT, "models", "emoji-ldm", "text_encoder", "config.json")))
    text = M.CLIPTextModel(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                           num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
                           intermediate_size=cfg["intermediate_size"],
                           max_position_embeddings=cfg["max_position_embeddings"]).eval()
    length = cfg["max_position_embeddings"]
    tokens = lambda n: torch.randint(0, cfg["vocab_size"] - 2, (n, length))  # noqa: E731
    encode_text = lambda ids: text(ids)[0]  # noqa: E731
    alphas = ddim_alphas()
    image = x["image"]
    steps = 50
    timesteps = list(range(0, 1000, 1000 // steps))[::-1]
    timesteps = [t + 1 for t in timesteps]  # steps_offset 1

    if args.what == "diffedit":
        def fn():
            with torch.no_grad():
                reference, query = encode_text(tokens(2)).chunk(2)
                x0 = vae.encode_parameters(image)[:, : x["latent_sample"].shape[1]]
                t_mask = timesteps[steps - int(steps * 0.5)]
                total = torch.zeros(x0.shape[2:])
                for _ in range(counts["maskDraws"]):
                    noisy = alphas[t_mask].sqrt() * x0 + (1 - alphas[t_mask]).sqrt() * torch.randn_like(x0)
                    eps_r, eps_q = unet(torch.cat([noisy, noisy]), torch.tensor([t_mask, t_mask]),
                                        torch.cat([reference, query])).chunk(2)
                    total += (eps_q - eps_r).abs().mean(1)[0]
                mask = (total / total.mean()).clamp(max=3) / 3 > 0.5
                # DDIM inversion (its own VAE encode and empty prompt), batch 1, no guidance
                k = counts["inversionSteps"]
                z = vae.encode_parameters(image)[:, : x0.shape[1]]
                empty = encode_text(tokens(1))
                walk = timesteps[steps - k:][::-1]
                encoded = [z]
                for i, t in enumerate(walk):
                    eps = unet(z, torch.tensor([t]), empty)
                    z = ddim_step(alphas, eps, walk[i - 1] if i > 0 else 0, t, z)
                    encoded.append(z)
                # Mask-guided decoding with classifier-free guidance, batch 2
                context = encode_text(tokens(2))
                latents = encoded[-1]
                for i, t in enumerate(walk[::-1]):
                    uncond, cond = unet(torch.cat([latents, latents]), torch.tensor([t, t]), context).chunk(2)
                    eps = uncond + 7.5 * (cond - uncond)
                    t_next = walk[::-1][i + 1] if i + 1 < len(walk) else -1
                    latents = ddim_step(alphas, eps, t, t_next, latents)
                    latents = torch.where(mask, latents, encoded[len(walk) - 1 - i])
                vae.decode(latents)
        return fn

    # DragDiffusion
    params = add_lora(unet)
    for p in unet.parameters():
        p.requires_grad_(p in set(params))
    features = {}
    unet.up_blocks[len(unet.up_blocks) - 2].register_forward_hook(
        lambda module, inputs, output: features.__setitem__("f", output))

    def fn():
        embedding = encode_text(tokens(1)).detach()
        # 1. LoRA: batch B of noised posterior samples, MSE to the noise, AdamW
        optimizer = torch.optim.AdamW(params, lr=5e-4, weight_decay=1e-2)
        with torch.no_grad():
            posterior = vae.encode_parameters(image)
        mean, logvar = posterior.chunk(2, dim=1)
        batch = counts["loraBatch"]
        for _ in range(counts["loraSteps"]):
            z0 = (mean + (0.5 * logvar.clamp(-30, 20)).exp() * torch.randn_like(mean)).repeat(batch, 1, 1, 1)
            t = torch.randint(0, 1000, (batch,))
            noise = torch.randn_like(z0)
            a = alphas[t].view(-1, 1, 1, 1)
            loss = ((unet(a.sqrt() * z0 + (1 - a).sqrt() * noise, t, embedding.repeat(batch, 1, 1)) - noise) ** 2
                    ).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            # 2. DDIM inversion to z_t, batch 1
            z = vae.encode_parameters(image)[:, : mean.shape[1]]
            k = counts["inversionSteps"]
            walk = timesteps[steps - k:][::-1]
            for i, t in enumerate(walk):
                eps = unet(z, torch.tensor([t]), embedding)
                z = ddim_step(alphas, eps, walk[i - 1] if i > 0 else 0, t, z)
        # 3. Latent optimisation: gradient runs with motion supervision, Adam on z_t, point tracking
        zt = z.clone().requires_grad_(True)
        adam = torch.optim.Adam([zt], lr=0.01)
        t = torch.tensor([walk[-1]])
        handle = torch.tensor([3, 3])
        f0 = None
        for _ in range(counts["dragRuns"]):
            eps = unet(zt, t, embedding)
            f = features["f"]
            if f0 is None:
                f0 = f[0, :, handle[0], handle[1]].detach()
            h, w = f.shape[2:]
            r0, c0 = int(handle[0]), int(handle[1])
            patch = f[0, :, max(0, r0 - 1): r0 + 2, max(0, c0 - 1): c0 + 2]
            shifted = f[0, :, min(h - 3, r0 + 1): min(h - 3, r0 + 1) + patch.shape[1],
                        min(w - 3, c0 + 1): min(w - 3, c0 + 1) + patch.shape[2]]
            loss = (shifted - patch.detach()).abs().mean() * 9 + 0.1 * (0.9 * zt - 0.1 * eps - z).abs().sum()
            adam.zero_grad()
            loss.backward()
            adam.step()
            with torch.no_grad():
                window = f[0, :, max(0, r0 - 3): r0 + 4, max(0, c0 - 3): c0 + 4]
                distance = (window - f0.view(-1, 1, 1)).abs().sum(0)
                index = int(distance.argmin())
                handle = torch.tensor([max(0, r0 - 3) + index // distance.shape[1],
                                       max(0, c0 - 3) + index % distance.shape[1]])
        # 4. Denoise from the optimised z_t beside the input's branch (batch 2), decode
        with torch.no_grad():
            batch = torch.cat([z, zt.detach()])
            context = embedding.repeat(2, 1, 1)
            down = walk[::-1]
            for i, s in enumerate(down):
                eps = unet(batch, torch.tensor([s, s]), context)
                batch = ddim_step(alphas, eps, s, down[i + 1] if i + 1 < len(down) else -1, batch)
            vae.decode(batch[1:])
    return fn


def time_one(args):
    torch.set_num_threads(args.threads)
    meta = json.load(open(os.path.join(args.dir, "meta.json")))
    cfg = meta["config"]
    load = lambda n: torch.from_numpy(np.load(os.path.join(args.dir, f"{n}.npy")))  # noqa: E731
    x = {n: load(n) for n in ("sample", "timestep", "encoder_hidden_states", "image", "latent_sample")}
    if args.what in ("diffedit", "drag"):
        torch.manual_seed(0)
        unet = M.UNet2DConditionModel(**cfg["unet"]).eval()
        unet.load_state_dict(torch.load(os.path.join(args.dir, "unet.pt")))
        vae = M.AutoencoderKL(**cfg["vae"]).eval()
        vae.load_state_dict(torch.load(os.path.join(args.dir, "vae.pt")))
        fn = end_to_end(args, unet, vae, x)
    elif args.what.startswith("unet") or args.what in ("lora_step", "drag_step"):
        unet = M.UNet2DConditionModel(**cfg["unet"]).eval()
        unet.load_state_dict(torch.load(os.path.join(args.dir, "unet.pt")))
        if args.what == "unet":
            def fn():
                with torch.no_grad():
                    unet(x["sample"], x["timestep"], x["encoder_hidden_states"])
        elif args.what == "lora_step":
            # One LoRA training step: forward, MSE to a target, backward to the LoRA factors, Adam update. Batch 2
            # at the bundled size, 1 at SD-1.5 size (as the EditKit side).
            for p in unet.parameters():
                p.requires_grad_(False)
            params = add_lora(unet)
            optimizer = torch.optim.AdamW(params, lr=5e-4)
            n = 1 if x["sample"].shape[2] >= 64 else x["sample"].shape[0]
            sample, t, ctx = x["sample"][:n], x["timestep"][:n], x["encoder_hidden_states"][:n]
            target = torch.zeros_like(sample)

            def fn():
                optimizer.zero_grad()
                loss = ((unet(sample, t, ctx) - target) ** 2).mean()
                loss.backward()
                optimizer.step()
        elif args.what == "drag_step":
            # One DragDiffusion latent-optimisation iteration, batch 1, as the official drag_diffusion_update: the
            # decoder feature of the second-to-last up block (hook), motion supervision Σ w·|F·W_shift − sg(F·W_src)|
            # for one handle with r_m = 1 (9 points), the mask term Σ keep·|a·z + b·ε − z⁰|, backward to z_t.
            for p in unet.parameters():
                p.requires_grad_(False)
            sample, t, ctx = x["sample"][:1], x["timestep"][:1], x["encoder_hidden_states"][:1]
            features = {}
            unet.up_blocks[len(unet.up_blocks) - 2].register_forward_hook(
                lambda module, inputs, output: features.__setitem__("f", output))
            with torch.no_grad():
                unet(sample, t, ctx)
            channels, cells, points = features["f"].shape[1], features["f"].shape[2] * features["f"].shape[3], 9
            ramp = lambda shape, step=0.618034: torch.remainder(  # noqa: E731
                torch.arange(int(np.prod(shape)), dtype=torch.float64) * step, 1).float().reshape(shape)
            shifted, source = ramp((cells, points)), ramp((cells, points), 0.414214)
            point_weights = torch.ones(points)
            keep = torch.full((1, 1, *sample.shape[2:]), 0.1)
            previous = ramp(tuple(sample.shape))

            def fn():
                z = sample.clone().requires_grad_(True)
                eps = unet(z, t, ctx)
                f = features["f"].reshape(1, channels, cells)
                motion = ((f @ shifted - (f @ source).detach()).abs() * point_weights).sum()
                mask_term = ((0.9 * z - 0.1 * eps - previous).abs() * keep).sum()
                (motion + mask_term).backward()
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
    t.add_argument("--what", choices=["unet", "unet_grad", "drag_step", "lora_step", "vae_encode", "vae_decode",
                                      "diffedit", "drag"], required=True)
    t.add_argument("--counts", default="{}", help="end-to-end rows: the network calls EditKit's run made (JSON)")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--repeats", type=int, default=5)
    m = sub.add_parser("matmul")
    m.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    {"export": export, "time": time_one, "matmul": matmul}[args.cmd](args)


main()
