"""Train EditKit's default models on EmojiWorld and export them, in one command.

    /usr/bin/python3 training/train_all.py --out models/ [--preset cpu|gpu|smoke] [--device auto|cpu|cuda]
                                           [--budget-minutes N] [--threads N] [--seed 0] [--resume]

writes models/emoji-ldm/ (VAE + text encoder + UNet + tokenizer + DDIM scheduler, the bundle `editkit generate`
loads by default), models/emoji-clip/ and models/emoji-judge/, each with its measured figures; the working
folder (--workdir, default $TMPDIR/editkit-train-<preset>) keeps checkpoints, the log and sample grids.

Stages (each seeded from --seed; each trains for its step count or its share of the wall-clock budget, whichever
ends first; see common.Budget):
  1. render training scenes (train split) and evaluation scenes (heldout split) with the Node renderer
  2. learn the CLIP BPE tokenizer on the training captions
  3. VAE (vae.py)              -> held-out reconstruction PSNR, latent scaling factor
  4. small CLIP (clip.py)      -> held-out retrieval accuracy
  5. judge (judge.py)          -> held-out accuracy
  6. encode training latents; LDM = UNet + text encoder (initialised from the CLIP text tower) (unet.py)
  7. held-out evaluation (eval.py): text-to-image judged by the judge, CLIP Fréchet distance, DDIM inversion PSNR
  8. ONNX export (export.py) and PyTorch-vs-onnxruntime-node checks

Presets: `gpu` is the real run (one H100, about 20 minutes with the default budget); `cpu` is the v0 run made on a
2-core machine (smaller UNet and VAE, 60 minutes); `smoke` checks the whole chain in about two minutes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import common  # noqa: E402
from common import ROOT, log, pick_device, read_json, seed_everything, setup_torch, write_json  # noqa: E402

TEXT = {"hidden_size": 128, "layers": 3, "heads": 4}

PRESETS = {
    "smoke": {
        "budget_minutes": 3, "tail_reserve_s": 40,
        "data": {"train": 256, "heldout": 128},
        "bpe_merges": 3000,
        "vae": {"channels": [32, 64, 64], "layers_per_block": 1, "norm_groups": 32, "batch_size": 8, "crop": 64,
                "lr": 4e-4, "steps": 20, "log_every": 10},
        "clip": {"image_widths": [32, 64, 96, 128], "projection_dim": 128, "text": TEXT, "batch_size": 32,
                 "lr": 1e-3, "steps": 10, "log_every": 5},
        "judge": {"widths": [32, 64, 128, 192], "batch_size": 32, "lr": 2e-3, "steps": 10, "log_every": 5},
        "ldm": {"unet": {"channels": [32, 64, 128], "attention": [False, True, True], "layers_per_block": 1,
                         "head_dim": 32, "norm_groups": 32},
                "batch_size": 8, "lr": 2e-4, "steps": 10, "ema_decay": 0.99, "text_lr_scale": 0.5,
                "cfg_dropout": 0.1, "flip": False, "log_every": 5},
        "eval": {"vae_images": 32, "judge_images": 128, "clip_images": 128, "t2i_samples": 8, "t2i_steps": 4,
                 "guidance": 5.0, "inversion_images": 4, "inversion_steps": 4, "fd_reference": 64, "eval_batch": 8},
        "weights": {"vae": 0.2, "clip": 0.1, "judge": 0.1, "ldm": 0.6},
    },
    "cpu": {
        "budget_minutes": 60, "tail_reserve_s": 240,
        "data": {"train": 6000, "heldout": 1024},
        "bpe_merges": 3000,
        "vae": {"channels": [32, 64, 64], "layers_per_block": 1, "norm_groups": 32, "batch_size": 8, "crop": 64,
                "lr": 5e-4, "steps": 100000, "log_every": 100},
        "clip": {"image_widths": [32, 64, 96, 128], "projection_dim": 128, "text": TEXT, "batch_size": 64,
                 "lr": 1e-3, "steps": 100000, "log_every": 50},
        "judge": {"widths": [32, 64, 128, 192], "batch_size": 48, "lr": 2e-3, "steps": 100000, "log_every": 50},
        "ldm": {"unet": {"channels": [32, 64, 128], "attention": [False, True, True], "layers_per_block": 1,
                         "head_dim": 32, "norm_groups": 32},
                "batch_size": 8, "lr": 2e-4, "steps": 100000, "ema_decay": 0.995, "text_lr_scale": 0.5,
                "cfg_dropout": 0.1, "flip": False, "train_subset": 3000, "log_every": 50},
        "eval": {"vae_images": 256, "judge_images": 1024, "clip_images": 512, "t2i_samples": 32, "t2i_steps": 20,
                 "guidance": 5.0, "inversion_images": 16, "inversion_steps": 20, "fd_reference": 256,
                 "eval_batch": 16, "scaling_images": 256},
        "weights": {"vae": 0.2, "clip": 0.09, "judge": 0.08, "ldm": 0.63},
    },
    "gpu": {
        "budget_minutes": 20, "tail_reserve_s": 150,
        "data": {"train": 50000, "heldout": 2048},
        "bpe_merges": 3000,
        "vae": {"channels": [64, 96, 96], "layers_per_block": 1, "norm_groups": 32, "batch_size": 32, "crop": 0,
                "lr": 4e-4, "steps": 6000, "log_every": 250},
        "clip": {"image_widths": [32, 64, 96, 128], "projection_dim": 128, "text": TEXT, "batch_size": 256,
                 "lr": 1e-3, "steps": 3000, "log_every": 250},
        "judge": {"widths": [32, 64, 128, 192], "batch_size": 256, "lr": 2e-3, "steps": 2500, "log_every": 250},
        "ldm": {"unet": {"channels": [64, 128, 128], "attention": [False, True, True], "layers_per_block": 1,
                         "head_dim": 32, "norm_groups": 32},
                "batch_size": 256, "lr": 4e-4, "steps": 12000, "ema_decay": 0.9995, "text_lr_scale": 0.5,
                "cfg_dropout": 0.1, "flip": True, "log_every": 250},
        "eval": {"vae_images": 1024, "judge_images": 2048, "clip_images": 2048, "t2i_samples": 512, "t2i_steps": 50,
                 "guidance": 5.0, "inversion_images": 128, "inversion_steps": 50, "fd_reference": 1024,
                 "eval_batch": 128},
        "weights": {"vae": 0.22, "clip": 0.08, "judge": 0.07, "ldm": 0.63},
    },
}


class Clock:
    """Splits what is left of the total budget among the training stages still to run, by weight."""

    def __init__(self, total_s: float, tail_s: float, weights: dict):
        self.start = time.time()
        self.total = total_s
        self.tail = tail_s
        self.weights = dict(weights)

    def share(self, stage: str) -> float:
        left = self.total - (time.time() - self.start) - self.tail
        w = self.weights.pop(stage)
        rest = w + sum(self.weights.values())
        return max(5.0, left * w / rest)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "models"), help="parent folder of emoji-ldm/, emoji-clip/, emoji-judge/")
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None,
                    help="model sizes and step counts (default: gpu on CUDA, else cpu)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget-minutes", type=float, default=None, help="total wall-clock budget (default: preset's)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--cache-dir", default=None, help="rendered-scene cache (default: $TMPDIR/editkit-emojiworld-cache)")
    ap.add_argument("--render-workers", type=int, default=0, help="parallel renderer processes (default: CPU count)")
    ap.add_argument("--train-scenes", type=int, default=None, help="override the preset's training-set size")
    ap.add_argument("--resume", action="store_true", help="reuse stage checkpoints found in --workdir")
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args(argv)

    device = pick_device(args.device)
    preset_name = args.preset or ("gpu" if device.type == "cuda" else "cpu")
    P = copy.deepcopy(PRESETS[preset_name])
    if args.train_scenes:
        P["data"]["train"] = args.train_scenes
    budget_min = args.budget_minutes or P["budget_minutes"]
    work = args.workdir or os.path.join(tempfile.gettempdir(), f"editkit-train-{preset_name}")
    os.makedirs(work, exist_ok=True)
    common.set_log_file(os.path.join(work, "train.log"))
    setup_torch(device, args.threads)
    seed_everything(args.seed)
    from unet import fast_attention

    fast_attention(device.type == "cuda")
    log(f"preset {preset_name}, device {device}, budget {budget_min:.1f} min, workdir {work}, torch {torch.__version__}")
    clock = Clock(budget_min * 60, P["tail_reserve_s"], P["weights"])
    report = {"preset": preset_name, "device": str(device), "torch": torch.__version__, "seed": args.seed,
              "budget_minutes": budget_min, "threads": args.threads if device.type == "cpu" else None,
              "config": P, "stages": {}, "metrics": {}}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)

    def ckpt(name):
        return os.path.join(work, f"{name}.pt")

    def have(name):
        return args.resume and os.path.exists(ckpt(name))

    # 1. data ------------------------------------------------------------------------------------------------
    from data import load_scenes, world_vocabulary

    t = time.time()
    vocab_world = world_vocabulary()
    class_names, bg_names = vocab_world["classes"], vocab_world["backgrounds"]
    train = load_scenes("train", 0, P["data"]["train"], workers=args.render_workers, cache_dir=args.cache_dir)
    held = load_scenes("heldout", 0, P["data"]["heldout"], workers=args.render_workers, cache_dir=args.cache_dir)
    report["stages"]["render"] = {"seconds": round(time.time() - t, 1), "train": len(train), "heldout": len(held),
                                  "classes": len(class_names), "backgrounds": len(bg_names)}
    log(f"data: {len(train)} training scenes, {len(held)} held-out scenes, {len(class_names)} classes, "
        f"{len(bg_names)} backgrounds ({time.time() - t:.1f}s)")
    # held-out use: [0, n_eval) evaluation, the rest as the real-image reference for the Fréchet distance
    E = P["eval"]

    # 2. tokenizer -------------------------------------------------------------------------------------------
    from text import Tokenizer, build_tokenizer

    tok_dir = os.path.join(work, "tokenizer")
    all_caps = [c for caps in train.captions for c in caps]
    if args.resume and os.path.exists(os.path.join(tok_dir, "vocab.json")):
        tok = Tokenizer(tok_dir)
    else:
        tok = build_tokenizer(all_caps, P["bpe_merges"], tok_dir)
    report["tokenizer"] = {"vocab_size": tok.vocab_size, "tokens_per_word_heldout": round(tok.coverage(held.caption[:200]), 3)}
    log(f"tokenizer: vocabulary {tok.vocab_size}, held-out tokens per word {report['tokenizer']['tokens_per_word_heldout']}")

    # 3. VAE -------------------------------------------------------------------------------------------------
    from vae import build_vae, encode_means, evaluate_vae, scaling_factor, train_vae

    seed_everything(args.seed + 1)
    vae = build_vae(P["vae"])
    if have("vae"):
        s = torch.load(ckpt("vae"))
        vae.load_state_dict(s["model"])
        report["stages"]["vae"] = s["stats"]
        clock.share("vae")
    else:
        st = train_vae(vae, train, P["vae"], device, clock.share("vae"), args.seed + 1)
        report["stages"]["vae"] = st
        torch.save({"model": vae.state_dict(), "stats": st}, ckpt("vae"))
    vae.to(device).eval()
    report["metrics"]["vae"] = evaluate_vae(vae, held.images[: E["vae_images"]], device)
    scaling = scaling_factor(vae, train.images[: P["eval"].get("scaling_images", 512)], device)
    report["metrics"]["vae"]["scaling_factor"] = scaling
    log(f"VAE held-out PSNR {report['metrics']['vae']['psnr_mean']:.2f} dB (median "
        f"{report['metrics']['vae']['psnr_median']:.2f}), scaling factor {scaling:.4f}")

    # 4. CLIP ------------------------------------------------------------------------------------------------
    from clip import SmallCLIP, evaluate_clip, train_clip

    seed_everything(args.seed + 2)
    clip = SmallCLIP(tok.vocab_size, P["clip"])
    if have("clip"):
        s = torch.load(ckpt("clip"))
        clip.load_state_dict(s["model"])
        report["stages"]["clip"] = s["stats"]
        clock.share("clip")
    else:
        st = train_clip(clip, train, tok, P["clip"], device, clock.share("clip"), args.seed + 2)
        report["stages"]["clip"] = st
        torch.save({"model": clip.state_dict(), "stats": st}, ckpt("clip"))
    clip.to(device).eval()
    report["metrics"]["clip"] = evaluate_clip(clip, tok, held.subset(np.arange(min(E["clip_images"], len(held)))), device)
    log(f"CLIP held-out retrieval: {report['metrics']['clip']}")

    # 5. judge -----------------------------------------------------------------------------------------------
    from judge import Judge, evaluate_judge, train_judge

    seed_everything(args.seed + 3)
    judge = Judge(len(class_names), len(bg_names), tuple(P["judge"]["widths"]))
    if have("judge"):
        s = torch.load(ckpt("judge"))
        judge.load_state_dict(s["model"])
        report["stages"]["judge"] = s["stats"]
        clock.share("judge")
    else:
        st = train_judge(judge, train, class_names, bg_names, P["judge"], device, clock.share("judge"), args.seed + 3)
        report["stages"]["judge"] = st
        torch.save({"model": judge.state_dict(), "stats": st}, ckpt("judge"))
    judge.to(device).eval()
    report["metrics"]["judge"] = evaluate_judge(judge, held.subset(np.arange(min(E["judge_images"], len(held)))),
                                                class_names, bg_names, device)
    log(f"judge held-out: {report['metrics']['judge']}")

    # 6. LDM -------------------------------------------------------------------------------------------------
    from unet import LDM, SCHEDULER_CONFIG, build_unet, train_ldm

    seed_everything(args.seed + 4)
    unet = build_unet(P["ldm"]["unet"], TEXT["hidden_size"])
    text_encoder = copy.deepcopy(clip.text.encoder).cpu()  # start from the contrastive text tower
    ldm = LDM(unet, text_encoder)
    if have("ldm"):
        s = torch.load(ckpt("ldm"))
        ldm.load_state_dict(s["ema"])
        report["stages"]["ldm"] = s["stats"]
        ema = ldm
        clock.share("ldm")
    else:
        t = time.time()
        ldm_set = train.subset(np.arange(min(len(train), P["ldm"].get("train_subset") or len(train))))
        post = encode_means(vae, ldm_set.images, device, bs=P["eval"].get("eval_batch", 32) * 2)
        post_f = encode_means(vae, ldm_set.images, device, flip=True) if P["ldm"].get("flip") else None
        log(f"encoded {len(ldm_set)} training latents{' (and flips)' if post_f is not None else ''} "
            f"in {time.time() - t:.1f}s; latent std after scaling {float(post[:, :4].std() * scaling):.3f}")
        st, ema = train_ldm(ldm, post, ldm_set.captions, tok, P["ldm"], device, clock.share("ldm"), args.seed + 4,
                            scaling, post_f)
        st["encode_seconds"] = round(time.time() - t - st["seconds"], 1)
        report["stages"]["ldm"] = st
        torch.save({"ema": ema.state_dict(), "stats": st}, ckpt("ldm"))
        del post, post_f
    ema.to(device).eval()

    # 7. evaluation ------------------------------------------------------------------------------------------
    from eval import invert_reconstruct, save_grid, text_to_image_eval

    t = time.time()
    n_eval = E["t2i_samples"]
    ref = held.subset(np.arange(len(held) - min(E["fd_reference"], len(held) - n_eval), len(held)))
    r, imgs = text_to_image_eval(ema.text_encoder, ema.unet, vae, tok, judge, clip, held, ref, class_names, bg_names,
                                 SCHEDULER_CONFIG, scaling, E, device, args.seed + 5)
    report["metrics"]["text_to_image"] = r
    save_grid(imgs[:64], os.path.join(work, "samples.png"), captions=held.caption[: min(64, len(imgs))])
    log(f"text-to-image (held-out captions, judge): {r}")
    k = E["inversion_images"]
    report["metrics"]["ddim_inversion"] = invert_reconstruct(
        ema.text_encoder, ema.unet, vae, tok, held.images[:k], held.caption[:k], SCHEDULER_CONFIG, scaling,
        E["inversion_steps"], device, bs=E.get("eval_batch", 16))
    log(f"DDIM inversion + reconstruction: {report['metrics']['ddim_inversion']} ({time.time() - t:.1f}s eval)")
    report["stages"]["eval"] = {"seconds": round(time.time() - t, 1)}

    # 8. export ----------------------------------------------------------------------------------------------
    if not args.no_export:
        from export import export_clip, export_judge, export_ldm, verify_all

        t = time.time()
        out = os.path.abspath(args.out)
        dirs = {"ldm": os.path.join(out, "emoji-ldm"), "clip": os.path.join(out, "emoji-clip"),
                "judge": os.path.join(out, "emoji-judge")}
        te_cpu, unet_cpu, vae_cpu = ema.text_encoder.cpu().float(), ema.unet.cpu().float(), vae.cpu().float()
        clip_cpu, judge_cpu = clip.cpu().float(), judge.cpu().float()
        files = {}
        files.update({f"emoji-ldm/{k}": v for k, v in export_ldm(
            dirs["ldm"], tok, te_cpu, unet_cpu, vae_cpu, scaling, SCHEDULER_CONFIG, {}).items()})
        files.update({f"emoji-clip/{k}": v for k, v in export_clip(dirs["clip"], tok, clip_cpu, {}).items()})
        files.update({f"emoji-judge/{k}": v for k, v in export_judge(dirs["judge"], judge_cpu, class_names, bg_names,
                                                                      {}).items()})
        report["files"] = files
        report["onnx_check"] = verify_all(dirs, tok, te_cpu, unet_cpu, vae_cpu, clip_cpu, judge_cpu, held.images[:2])
        sizes = {}
        for name, d in dirs.items():
            sizes[name] = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(d) for f in fs)
        report["sizes_bytes"] = sizes
        report["stages"]["export"] = {"seconds": round(time.time() - t, 1)}
        report["total_seconds"] = round(time.time() - clock.start, 1)
        summary = _summary(report)
        write_json(os.path.join(dirs["ldm"], "editkit_training.json"), summary)
        for name in ("clip", "judge"):
            path = os.path.join(dirs[name], "config.json")
            cfg = read_json(path)
            cfg["editkit_training"] = {"preset": preset_name, "metrics": report["metrics"][name],
                                       "stage": report["stages"][name], "seed": args.seed}
            write_json(path, cfg)
        log(f"exported: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    report["total_seconds"] = round(time.time() - clock.start, 1)
    write_json(os.path.join(work, "report.json"), report)
    log(f"done in {report['total_seconds'] / 60:.1f} min; report {os.path.join(work, 'report.json')}")
    return report


def _summary(report: dict) -> dict:
    """What goes into models/emoji-ldm/editkit_training.json (no paths of the machine)."""
    return {
        "_comment": "How this bundle was trained (training/train_all.py) and what was measured on held-out "
                    "EmojiWorld seeds; see models/README.md.",
        "preset": report["preset"], "device": report.get("gpu", report["device"]), "torch": report["torch"],
        "seed": report["seed"], "budget_minutes": report["budget_minutes"], "threads": report["threads"],
        "total_seconds": report.get("total_seconds"),
        "stages": report["stages"], "metrics": report["metrics"], "tokenizer": report["tokenizer"],
        "onnx_check": report.get("onnx_check"), "sizes_bytes": report.get("sizes_bytes"),
        "config": report["config"],
    }


if __name__ == "__main__":
    main()
