"""Train EditKit's default models on EmojiWorld and export them, in one command.

    /usr/bin/python3 training/train_all.py --out models/ [--preset cpu|gpu|smoke] [--device auto|cpu|cuda]
                                           [--budget-minutes N] [--threads N] [--seed 0] [--resume]

writes models/emoji-ldm/ (VAE + text encoder + UNet + tokenizer + DDIM scheduler, the bundle `editkit generate`
loads by default), models/emoji-clip/ and models/emoji-judge/, each with its measured figures; the working
folder (--workdir, default $TMPDIR/editkit-train-<preset>) keeps checkpoints, the log and sample grids.

Stages (each seeded from --seed; each trains for its step count or its share of the wall-clock budget, whichever
ends first; see common.Budget):
  1. render training scenes (train split) and evaluation scenes (heldout split) with the Node renderer, from the
     preset's world subset (`core` for the default models)
  2. learn the CLIP BPE tokenizer on the training captions (model_max_length = the preset's max_length)
  3. VAE (vae.py)              -> held-out reconstruction PSNR, latent scaling factor
  4. judge (judge.py)          -> held-out accuracy on renders and on VAE reconstructions (the judged ceiling);
                                  trained before anything it judges, with VAE-reconstruction and blur augmentation
  5. small CLIP (clip.py)      -> held-out retrieval accuracy
  6. encode training latents; LDM = UNet + text encoder (initialised from the CLIP text tower) (unet.py)
  7. held-out evaluation (eval.py): text-to-image judged by the judge, CLIP Fréchet distance, DDIM inversion PSNR
  8. ONNX export (export.py), PyTorch-vs-onnxruntime-node checks, model card (model_card.py)

--resume reuses finished stages' checkpoints and continues an interrupted VAE or LDM stage from its last
mid-stage checkpoint (every `checkpoint_every_s`), with the stage's own clock and schedule.

Presets: `cpu` is the default models' recipe on a 2-core CPU (training/README.md says why it looks as it does);
`gpu` is for a CUDA machine when one is lent; `smoke` checks the whole chain in about half a minute.
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
        "world": "core", "max_length": 24,
        "data": {"train": 256, "heldout": 128},
        "bpe_merges": 3000,
        "vae": {"channels": [32, 64, 64], "latent_channels": 8, "image_size": 64, "layers_per_block": 1,
                "norm_groups": 32, "batch_size": 8, "crop": 32, "crop_until": 0.75, "lr": 4e-4, "steps": 20,
                "log_every": 10},
        "clip": {"image_widths": [32, 64, 96, 128], "projection_dim": 128, "text": TEXT, "batch_size": 32,
                 "lr": 1e-3, "steps": 10, "log_every": 5},
        "judge": {"widths": [32, 64, 128, 192], "batch_size": 32, "lr": 2e-3, "steps": 10, "log_every": 5,
                  "recon_images": 64, "recon_p": 0.4, "blur_p": 0.3, "blur_max": 1.2},
        "ldm": {"unet": {"channels": [32, 64, 128], "attention": [False, True, True], "layers_per_block": 1,
                         "head_dim": 32, "norm_groups": 32},
                "batch_size": 8, "lr": 2e-4, "steps": 10, "ema_decay": 0.99, "text_lr_scale": 0.5,
                "cfg_dropout": 0.1, "flip": False, "flip_latents": True, "min_snr_gamma": 5.0, "log_every": 5},
        "eval": {"vae_images": 32, "judge_images": 128, "clip_images": 128, "t2i_samples": 8, "t2i_steps": 4,
                 "guidance": 5.0, "inversion_images": 4, "inversion_steps": 4, "fd_reference": 64, "eval_batch": 8},
        "weights": {"vae": 0.2, "judge": 0.1, "clip": 0.1, "ldm": 0.6},
        "checkpoint_every_s": 20,
    },
    "cpu": {
        # The default models' recipe on a 2-core CPU (training/README.md, "Designed for the CPU"): the `core` world
        # subset at 64 px, a factor-4 VAE with 8 latent channels (16×16×8 latents), 24-token captions.
        "budget_minutes": 90, "tail_reserve_s": 420,
        "world": "core", "max_length": 24,
        "data": {"train": 30000, "heldout": 2048},
        "bpe_merges": 3000,
        "vae": {"channels": [32, 64, 64], "latent_channels": 8, "image_size": 64, "layers_per_block": 1,
                "norm_groups": 32, "batch_size": 8, "crop": 32, "crop_until": 0.75, "full_batch_size": 8,
                "lr": 8e-4, "steps": 10**6, "log_every": 250},
        "judge": {"widths": [32, 64, 128, 192], "batch_size": 64, "lr": 2e-3, "steps": 10**6, "log_every": 100,
                  "recon_images": 8000, "recon_p": 0.4, "blur_p": 0.3, "blur_max": 1.2},
        "clip": {"image_widths": [32, 64, 96, 128], "projection_dim": 128, "text": TEXT, "batch_size": 64,
                 "lr": 1e-3, "steps": 10**6, "log_every": 100},
        "ldm": {"unet": {"channels": [64, 128, 128], "attention": [False, True, True], "layers_per_block": 1,
                         "head_dim": 32, "norm_groups": 32},
                "batch_size": 32, "lr": 4e-4, "steps": 10**6, "ema_decay": 0.999, "text_lr_scale": 0.5,
                "cfg_dropout": 0.1, "flip": False, "flip_latents": True, "min_snr_gamma": 5.0, "log_every": 200},
        "eval": {"vae_images": 512, "judge_images": 2048, "clip_images": 1024, "t2i_samples": 256, "t2i_steps": 25,
                 "guidance": 5.0, "inversion_images": 64, "inversion_steps": 50, "fd_reference": 512,
                 "eval_batch": 64, "scaling_images": 1024},
        "weights": {"vae": 0.24, "judge": 0.06, "clip": 0.04, "ldm": 0.66},
        "checkpoint_every_s": 300,
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

    def restore(name, module) -> bool:
        """With --resume and a finished stage's checkpoint: load it, record its stats, skip the stage's time."""
        if not have(name):
            return False
        s = torch.load(ckpt(name))
        module.load_state_dict(s["model"])
        report["stages"][name] = s["stats"]
        clock.share(name)
        return True

    def partial(name):
        """Mid-stage checkpoints (every `checkpoint_every_s`), read back only with --resume."""
        path = os.path.join(work, f"{name}.partial.pt")
        if not args.resume and os.path.exists(path):
            os.remove(path)
        return common.StageCheckpoint(path, P.get("checkpoint_every_s", 300))

    # 1. data ------------------------------------------------------------------------------------------------
    from data import load_scenes, world_vocabulary

    t = time.time()
    subset = P.get("world")
    vocab_world = world_vocabulary(subset)
    class_names, bg_names = vocab_world["classes"], vocab_world["backgrounds"]
    image_size = int(vocab_world["scene"].get("width") or 128)
    report["world"] = {"subset": subset, "description": vocab_world["description"], "scene": vocab_world["scene"],
                       "classes": class_names, "backgrounds": bg_names, "image_size": image_size}
    load = dict(workers=args.render_workers, cache_dir=args.cache_dir, subset=subset)
    train = load_scenes("train", 0, P["data"]["train"], **load)
    held = load_scenes("heldout", 0, P["data"]["heldout"], **load)
    report["stages"]["render"] = {"seconds": round(time.time() - t, 1), "train": len(train), "heldout": len(held),
                                  "classes": len(class_names), "backgrounds": len(bg_names)}
    log(f"data: {len(train)} training scenes, {len(held)} held-out scenes ({image_size} px), {len(class_names)} "
        f"classes, {len(bg_names)} backgrounds, world subset {subset or 'full'} ({time.time() - t:.1f}s)")
    # held-out use: [0, n_eval) evaluation, the rest as the real-image reference for the Fréchet distance
    E = P["eval"]

    # 2. tokenizer -------------------------------------------------------------------------------------------
    from text import Tokenizer, build_tokenizer

    max_length = P.get("max_length", 77)
    tok_dir = os.path.join(work, "tokenizer")
    all_caps = [c for caps in train.captions for c in caps]
    if args.resume and os.path.exists(os.path.join(tok_dir, "vocab.json")):
        tok = Tokenizer(tok_dir)
    else:
        tok = build_tokenizer(all_caps, P["bpe_merges"], tok_dir, max_length)
    report["tokenizer"] = {"vocab_size": tok.vocab_size, "model_max_length": tok.max_length,
                           "tokens_per_word_heldout": round(tok.coverage(held.caption[:200]), 3)}
    log(f"tokenizer: vocabulary {tok.vocab_size}, {tok.max_length} tokens, held-out tokens per word "
        f"{report['tokenizer']['tokens_per_word_heldout']}")

    # 3. VAE -------------------------------------------------------------------------------------------------
    from vae import build_vae, encode_means, evaluate_vae, reconstruct, scaling_factor, train_vae

    seed_everything(args.seed + 1)
    vae = build_vae(P["vae"])
    if not restore("vae", vae):
        st = train_vae(vae, train, P["vae"], device, clock.share("vae"), args.seed + 1, partial("vae"))
        report["stages"]["vae"] = st
        torch.save({"model": vae.state_dict(), "stats": st}, ckpt("vae"))
    vae.to(device).eval()
    report["metrics"]["vae"] = evaluate_vae(vae, held.images[: E["vae_images"]], device)
    scaling = scaling_factor(vae, train.images[: P["eval"].get("scaling_images", 512)], device)
    report["metrics"]["vae"]["scaling_factor"] = scaling
    log(f"VAE held-out PSNR {report['metrics']['vae']['psnr_mean']:.2f} dB (median "
        f"{report['metrics']['vae']['psnr_median']:.2f}), scaling factor {scaling:.4f}")

    # 4. judge (before everything that is judged; trained on renders, their VAE reconstructions, and blur) ------
    from judge import Judge, evaluate_judge, train_judge

    seed_everything(args.seed + 3)
    judge = Judge(len(class_names), len(bg_names), tuple(P["judge"]["widths"]))
    if not restore("judge", judge):
        seconds = clock.share("judge")
        t = time.time()
        n_rec = min(len(train), P["judge"].get("recon_images", 0))
        recon = reconstruct(vae, train.images[:n_rec], device) if n_rec else None
        log(f"judge augmentation: {n_rec} VAE reconstructions in {time.time() - t:.1f}s")
        st = train_judge(judge, train, class_names, bg_names, P["judge"], device, seconds - (time.time() - t),
                         args.seed + 3, recon)
        st["reconstruction_seconds"] = round(time.time() - t - st["seconds"], 1)
        report["stages"]["judge"] = st
        torch.save({"model": judge.state_dict(), "stats": st}, ckpt("judge"))
        del recon
    judge.to(device).eval()
    judged = held.subset(np.arange(min(E["judge_images"], len(held))))
    report["metrics"]["judge"] = evaluate_judge(judge, judged, class_names, bg_names, device)
    # the ceiling of every judged figure: the judge on VAE reconstructions of the same held-out scenes
    report["metrics"]["judge_on_vae_reconstructions"] = evaluate_judge(
        judge, judged, class_names, bg_names, device, reconstruct(vae, judged.images, device))
    log(f"judge held-out renders: {report['metrics']['judge']}")
    log(f"judge held-out VAE reconstructions: {report['metrics']['judge_on_vae_reconstructions']}")

    # 5. CLIP ------------------------------------------------------------------------------------------------
    from clip import SmallCLIP, evaluate_clip, train_clip

    seed_everything(args.seed + 2)
    clip = SmallCLIP(tok.vocab_size, {**P["clip"], "max_length": max_length})
    if not restore("clip", clip):
        st = train_clip(clip, train, tok, P["clip"], device, clock.share("clip"), args.seed + 2)
        report["stages"]["clip"] = st
        torch.save({"model": clip.state_dict(), "stats": st}, ckpt("clip"))
    clip.to(device).eval()
    report["metrics"]["clip"] = evaluate_clip(clip, tok, held.subset(np.arange(min(E["clip_images"], len(held)))), device)
    log(f"CLIP held-out retrieval: {report['metrics']['clip']}")

    # 6. LDM -------------------------------------------------------------------------------------------------
    from unet import LDM, SCHEDULER_CONFIG, build_unet, train_ldm

    seed_everything(args.seed + 4)
    latent_channels = P["vae"].get("latent_channels", 4)
    unet = build_unet(P["ldm"]["unet"], TEXT["hidden_size"], latent_channels, image_size // 4)
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
            f"in {time.time() - t:.1f}s; latent std after scaling "
            f"{float(post[:, :latent_channels].std() * scaling):.3f}")
        st, ema = train_ldm(ldm, post, ldm_set.captions, tok, P["ldm"], device,
                            clock.share("ldm") - (time.time() - t), args.seed + 4, scaling, post_f, partial("ldm"))
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
        files.update({f"emoji-clip/{k}": v for k, v in export_clip(dirs["clip"], tok, clip_cpu, {},
                                                                    image_size).items()})
        files.update({f"emoji-judge/{k}": v for k, v in export_judge(dirs["judge"], judge_cpu, class_names, bg_names,
                                                                      {}, image_size).items()})
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
        from model_card import render as render_card

        with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
            f.write(render_card(out, world=report["world"]))
        log(f"model card {os.path.join(out, 'README.md')} (add the bench rows with training/emoji/model_card.py)")
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
        "world": report.get("world"),
        "total_seconds": report.get("total_seconds"),
        "stages": report["stages"], "metrics": report["metrics"], "tokenizer": report["tokenizer"],
        "onnx_check": report.get("onnx_check"), "sizes_bytes": report.get("sizes_bytes"),
        "config": report["config"],
    }


if __name__ == "__main__":
    main()
