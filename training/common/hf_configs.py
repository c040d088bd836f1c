"""The config.json contents diffusers/transformers write for the components of an SD pipeline, built from
training/reference/models.py modules. Shared by the tiny test bundles (training/fixtures/make_tiny_sd.py) and
the bundled EmojiWorld models (training/emoji/export.py), which add their own keys after these.
"""

DIFFUSERS_VERSION = "0.29.2"
TRANSFORMERS_VERSION = "4.41.2"


def clip_text_config(te, name: str, bos_id: int, eos_id: int, pad_id: int) -> dict:
    """transformers' CLIPTextConfig for a models.CLIPTextModel."""
    c = te.config
    return {
        "_name_or_path": name,
        "architectures": ["CLIPTextModel"],
        "attention_dropout": 0.0,
        "bos_token_id": bos_id,
        "dropout": 0.0,
        "eos_token_id": eos_id,
        "hidden_act": c["hidden_act"],
        "hidden_size": c["hidden_size"],
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": c["intermediate_size"],
        "layer_norm_eps": c["layer_norm_eps"],
        "max_position_embeddings": c["max_position_embeddings"],
        "model_type": "clip_text_model",
        "num_attention_heads": c["num_attention_heads"],
        "num_hidden_layers": c["num_hidden_layers"],
        "pad_token_id": pad_id,
        "projection_dim": c["hidden_size"],
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "vocab_size": c["vocab_size"],
    }


def unet_config(unet) -> dict:
    """diffusers' UNet2DConditionModel config for a models.UNet2DConditionModel (no torch_dtype: callers add it)."""
    c = unet.config
    return {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "attention_head_dim": c["attention_head_dim"],
        "block_out_channels": c["block_out_channels"],
        "center_input_sample": False,
        "cross_attention_dim": c["cross_attention_dim"],
        "down_block_types": c["down_block_types"],
        "downsample_padding": 1,
        "dual_cross_attention": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": c["in_channels"],
        "layers_per_block": c["layers_per_block"],
        "mid_block_scale_factor": 1,
        "mid_block_type": c["mid_block_type"],
        "norm_eps": 1e-05,
        "norm_num_groups": c["norm_num_groups"],
        "out_channels": c["out_channels"],
        "sample_size": c["sample_size"],
        "up_block_types": c["up_block_types"],
        "upcast_attention": False,
        "use_linear_projection": c["use_linear_projection"],
    }


def vae_config(vae) -> dict:
    """diffusers' AutoencoderKL config for a models.AutoencoderKL."""
    return {"_class_name": "AutoencoderKL", "_diffusers_version": DIFFUSERS_VERSION, **vae.config}
