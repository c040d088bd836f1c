"""Small PyTorch models with Stable Diffusion's structure, for EditKit's test fixtures.

Written from the architecture descriptions (CLIP text transformer, diffusers' UNet2DConditionModel and
AutoencoderKL); parameter names follow diffusers/transformers loosely but nothing here loads real checkpoints.
Everything is float32 and deterministic; the weights are random (see `init_weights`).

- `CLIPTextModel`: token + position embeddings, pre-LN transformer with a causal mask, quick_gelu (SD1) or gelu (SD2) MLP, final
  LayerNorm; returns (last_hidden_state [B, L, D], pooler_output [B, D] = hidden state at argmax(input_ids)).
- `UNet2DConditionModel`: sinusoidal time embedding (flip_sin_to_cos=True, freq_shift=0) -> MLP; conv_in;
  down blocks (ResnetBlock2D + optional Transformer2DModel, Downsample2D); mid block (resnet, attn, resnet);
  up blocks with skip concatenation and nearest x2 Upsample2D; GroupNorm, SiLU, conv_out.
- `AutoencoderKL`: SD's KL VAE: `Encoder` -> quant_conv gives (mean || logvar); `Decoder` after post_quant_conv.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------------------------------------------
# Text encoder
# --------------------------------------------------------------------------------------------------------------


class CLIPAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h, hd = self.heads, self.head_dim
        q = self.q_proj(x).reshape(b, n, h, hd).transpose(1, 2)
        k = self.k_proj(x).reshape(b, n, h, hd).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, h, hd).transpose(1, 2)
        w = torch.matmul(q, k.transpose(-1, -2)) * (hd**-0.5) + mask
        w = torch.softmax(w, dim=-1)
        o = torch.matmul(w, v).transpose(1, 2).reshape(b, n, d)
        return self.out_proj(o)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class CLIPEncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, intermediate: int, eps: float, hidden_act: str = "quick_gelu"):
        super().__init__()
        self.act = quick_gelu if hidden_act == "quick_gelu" else F.gelu
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.self_attn = CLIPAttention(dim, heads)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, intermediate)
        self.fc2 = nn.Linear(intermediate, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        x = x + self.fc2(self.act(self.fc1(self.layer_norm2(x))))
        return x


class CLIPTextModel(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 64,
        max_position_embeddings: int = 77,
        layer_norm_eps: float = 1e-5,
        hidden_act: str = "quick_gelu",
    ):
        super().__init__()
        assert hidden_act in ("quick_gelu", "gelu")
        self.config = dict(
            hidden_act=hidden_act,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            layer_norm_eps=layer_norm_eps,
        )
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.position_embedding = nn.Embedding(max_position_embeddings, hidden_size)
        self.layers = nn.ModuleList(
            [
                CLIPEncoderLayer(hidden_size, num_attention_heads, intermediate_size, layer_norm_eps, hidden_act)
                for _ in range(num_hidden_layers)
            ]
        )
        self.final_layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, input_ids: torch.Tensor):
        ids = input_ids.to(torch.int64)
        n = ids.shape[1]
        pos = torch.arange(n, dtype=torch.int64, device=ids.device)
        x = self.token_embedding(ids) + self.position_embedding(pos)[None]
        # causal mask: position i may attend to j <= i
        causal = pos[None, :] > pos[:, None]
        mask = torch.zeros(n, n, dtype=x.dtype).masked_fill(causal, torch.finfo(x.dtype).min)[None, None]
        for layer in self.layers:
            x = layer(x, mask)
        x = self.final_layer_norm(x)
        # EOS has the largest id in a CLIP vocabulary; argmax over float ids (exact below 2^24)
        eos = ids.to(torch.float32).argmax(dim=-1)
        pooled = x.gather(1, eos[:, None, None].expand(-1, 1, self.config["hidden_size"])).squeeze(1)
        return x, pooled


# --------------------------------------------------------------------------------------------------------------
# UNet
# --------------------------------------------------------------------------------------------------------------


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool = True, downscale_freq_shift: float = 0.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """diffusers' get_timestep_embedding: [N] -> [N, dim]."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / (half - downscale_freq_shift)
    freqs = torch.exp(exponent)
    args = timesteps.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return emb


class Timesteps(nn.Module):
    """Sinusoidal projection of the (int or float) timesteps; kept as its own module so the fp16 export can keep
    it in float32, as diffusers computes it in float32 before casting to the model dtype."""

    def __init__(self, dim: int, flip_sin_to_cos: bool = True, downscale_freq_shift: float = 0.0):
        super().__init__()
        self.dim = dim
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(timesteps, self.dim, self.flip_sin_to_cos, self.downscale_freq_shift)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, temb_channels: Optional[int], groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, cout) if temb_channels else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """Multi-head attention; `context_dim` set makes it cross-attention. q/k/v without bias as in SD's UNet."""

    def __init__(self, dim: int, heads: int, context_dim: Optional[int] = None, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        cdim = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(cdim, dim, bias=bias)
        self.to_v = nn.Linear(cdim, dim, bias=bias)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        ctx = x if context is None else context
        b, n, d = x.shape
        m = ctx.shape[1]
        h, hd = self.heads, self.head_dim
        q = self.to_q(x).reshape(b, n, h, hd).transpose(1, 2)
        k = self.to_k(ctx).reshape(b, m, h, hd).transpose(1, 2)
        v = self.to_v(ctx).reshape(b, m, h, hd).transpose(1, 2)
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (hd**-0.5), dim=-1)
        o = torch.matmul(w, v).transpose(1, 2).reshape(b, n, d)
        return self.to_out(o)


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_geglu = GEGLU(dim, dim * 4)
        self.ff_out = nn.Linear(dim * 4, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        x = x + self.ff_out(self.ff_geglu(self.norm3(x)))
        return x


class Transformer2DModel(nn.Module):
    def __init__(self, channels: int, heads: int, context_dim: int, groups: int, use_linear_projection: bool):
        super().__init__()
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        if use_linear_projection:
            self.proj_in = nn.Linear(channels, channels)
            self.proj_out = nn.Linear(channels, channels)
        else:
            self.proj_in = nn.Conv2d(channels, channels, 1)
            self.proj_out = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, heads, context_dim)])

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        residual = x
        h = self.norm(x)
        if self.use_linear_projection:
            h = self.proj_in(h.permute(0, 2, 3, 1).reshape(b, hh * ww, c))
        else:
            h = self.proj_in(h).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
        for blk in self.transformer_blocks:
            h = blk(h, context)
        if self.use_linear_projection:
            h = self.proj_out(h).reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        else:
            h = self.proj_out(h.reshape(b, hh, ww, c).permute(0, 3, 1, 2))
        return h + residual


class Downsample2D(nn.Module):
    """UNet downsampler: conv 3x3 stride 2, padding 1."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2 followed by conv 3x3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetDownBlock(nn.Module):
    def __init__(self, cin, cout, temb, layers, groups, cross_attn, heads, context_dim, linear_proj, add_down):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, temb, groups, 1e-5) for i in range(layers)]
        )
        self.attentions = (
            nn.ModuleList(
                [Transformer2DModel(cout, heads, context_dim, groups, linear_proj) for _ in range(layers)]
            )
            if cross_attn
            else None
        )
        self.downsampler = Downsample2D(cout) if add_down else None

    def forward(self, x, temb, context):
        skips = []
        for i, res in enumerate(self.resnets):
            x = res(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
            skips.append(x)
        if self.downsampler is not None:
            x = self.downsampler(x)
            skips.append(x)
        return x, skips


class UNetUpBlock(nn.Module):
    def __init__(
        self, cin, prev, cout, temb, layers, groups, cross_attn, heads, context_dim, linear_proj, add_up
    ):
        super().__init__()
        resnets = []
        for i in range(layers + 1):
            skip_ch = cin if i == layers else cout
            res_in = prev if i == 0 else cout
            resnets.append(ResnetBlock2D(res_in + skip_ch, cout, temb, groups, 1e-5))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = (
            nn.ModuleList(
                [Transformer2DModel(cout, heads, context_dim, groups, linear_proj) for _ in range(layers + 1)]
            )
            if cross_attn
            else None
        )
        self.upsampler = Upsample2D(cout) if add_up else None

    def forward(self, x, skips, temb, context):
        for i, res in enumerate(self.resnets):
            x = torch.cat([x, skips.pop()], dim=1)
            x = res(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
        if self.upsampler is not None:
            x = self.upsampler(x)
        return x


class UNet2DConditionModel(nn.Module):
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        block_out_channels: Sequence[int] = (16, 32),
        down_block_types: Sequence[str] = ("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types: Sequence[str] = ("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        attention_head_dim: int = 8,  # channels per head (heads = channels / 8)
        cross_attention_dim: int = 32,
        use_linear_projection: bool = False,
        sample_size: int = 8,
    ):
        super().__init__()
        boc = list(block_out_channels)
        self.block_out_channels = boc
        temb = boc[0] * 4
        self.config = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=boc,
            down_block_types=list(down_block_types),
            up_block_types=list(up_block_types),
            mid_block_type="UNetMidBlock2DCrossAttn",
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            # diffusers reads `attention_head_dim` as the number of heads; ours are channels / 8
            attention_head_dim=[c // attention_head_dim for c in boc],
            cross_attention_dim=cross_attention_dim,
            use_linear_projection=use_linear_projection,
            sample_size=sample_size,
        )
        heads = [c // attention_head_dim for c in boc]
        self.conv_in = nn.Conv2d(in_channels, boc[0], 3, padding=1)
        self.time_proj = Timesteps(boc[0], True, 0.0)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, kind in enumerate(down_block_types):
            cin, cout = cout, boc[i]
            self.down_blocks.append(
                UNetDownBlock(
                    cin, cout, temb, layers_per_block, norm_num_groups, kind.startswith("CrossAttn"), heads[i],
                    cross_attention_dim, use_linear_projection, i < len(boc) - 1,
                )
            )
        self.mid_resnet1 = ResnetBlock2D(boc[-1], boc[-1], temb, norm_num_groups, 1e-5)
        self.mid_attn = Transformer2DModel(
            boc[-1], heads[-1], cross_attention_dim, norm_num_groups, use_linear_projection
        )
        self.mid_resnet2 = ResnetBlock2D(boc[-1], boc[-1], temb, norm_num_groups, 1e-5)
        self.up_blocks = nn.ModuleList()
        rev = boc[::-1]
        rheads = heads[::-1]
        prev = rev[0]
        for i, kind in enumerate(up_block_types):
            cout = rev[i]
            cin = rev[min(i + 1, len(boc) - 1)]
            self.up_blocks.append(
                UNetUpBlock(
                    cin, prev, cout, temb, layers_per_block, norm_num_groups, kind.startswith("CrossAttn"),
                    rheads[i], cross_attention_dim, use_linear_projection, i < len(boc) - 1,
                )
            )
            prev = cout
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, boc[0], eps=1e-5)
        self.conv_out = nn.Conv2d(boc[0], out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor):
        # timestep may be a scalar, [1] or [batch], int or float
        t = timestep.reshape(-1).expand(sample.shape[0])
        temb = self.time_embedding(self.time_proj(t))
        x = self.conv_in(sample)
        skips = [x]
        for blk in self.down_blocks:
            x, s = blk(x, temb, encoder_hidden_states)
            skips.extend(s)
        x = self.mid_resnet1(x, temb)
        x = self.mid_attn(x, encoder_hidden_states)
        x = self.mid_resnet2(x, temb)
        for blk in self.up_blocks:
            n = len(blk.resnets)
            x = blk(x, skips[-n:], temb, encoder_hidden_states)
            del skips[-n:]
        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        return x


# --------------------------------------------------------------------------------------------------------------
# KL autoencoder
# --------------------------------------------------------------------------------------------------------------


class VAEAttention(nn.Module):
    """Single-head spatial self-attention with GroupNorm and residual, as in SD's VAE mid block."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.group_norm(x).reshape(b, c, hh * ww).transpose(1, 2)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (c**-0.5), dim=-1)
        o = self.to_out(torch.matmul(w, v))
        return o.transpose(1, 2).reshape(b, c, hh, ww) + x


class VAEDownsample(nn.Module):
    """SD VAE downsampler: asymmetric pad (0, 1, 0, 1) then conv 3x3 stride 2 without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class VAEMidBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.resnet1 = ResnetBlock2D(channels, channels, None, groups, 1e-6)
        self.attention = VAEAttention(channels, groups)
        self.resnet2 = ResnetBlock2D(channels, channels, None, groups, 1e-6)

    def forward(self, x):
        return self.resnet2(self.attention(self.resnet1(x)))


class Encoder(nn.Module):
    def __init__(self, in_channels, latent_channels, block_out_channels, layers_per_block, groups):
        super().__init__()
        boc = list(block_out_channels)
        self.conv_in = nn.Conv2d(in_channels, boc[0], 3, padding=1)
        blocks = []
        cout = boc[0]
        for i, c in enumerate(boc):
            cin, cout = cout, c
            layers = nn.ModuleList(
                [ResnetBlock2D(cin if j == 0 else cout, cout, None, groups, 1e-6) for j in range(layers_per_block)]
            )
            down = VAEDownsample(cout) if i < len(boc) - 1 else None
            blocks.append(nn.ModuleDict({"resnets": layers, **({"downsampler": down} if down else {})}))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = VAEMidBlock(boc[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, boc[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(boc[-1], 2 * latent_channels, 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for blk in self.down_blocks:
            for res in blk["resnets"]:
                x = res(x)
            if "downsampler" in blk:
                x = blk["downsampler"](x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, latent_channels, out_channels, block_out_channels, layers_per_block, groups):
        super().__init__()
        rev = list(block_out_channels)[::-1]
        self.conv_in = nn.Conv2d(latent_channels, rev[0], 3, padding=1)
        self.mid_block = VAEMidBlock(rev[0], groups)
        blocks = []
        cout = rev[0]
        for i, c in enumerate(rev):
            cin, cout = cout, c
            layers = nn.ModuleList(
                [
                    ResnetBlock2D(cin if j == 0 else cout, cout, None, groups, 1e-6)
                    for j in range(layers_per_block + 1)
                ]
            )
            up = Upsample2D(cout) if i < len(rev) - 1 else None
            blocks.append(nn.ModuleDict({"resnets": layers, **({"upsampler": up} if up else {})}))
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(groups, rev[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(rev[-1], out_channels, 3, padding=1)

    def forward(self, z):
        x = self.conv_in(z)
        x = self.mid_block(x)
        for blk in self.up_blocks:
            for res in blk["resnets"]:
                x = res(x)
            if "upsampler" in blk:
                x = blk["upsampler"](x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        block_out_channels: Sequence[int] = (16, 32, 32),
        layers_per_block: int = 1,
        latent_channels: int = 4,
        norm_num_groups: int = 8,
        sample_size: int = 32,
        scaling_factor: Optional[float] = None,
    ):
        super().__init__()
        boc = list(block_out_channels)
        self.latent_channels = latent_channels
        self.config = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=["DownEncoderBlock2D"] * len(boc),
            up_block_types=["UpDecoderBlock2D"] * len(boc),
            block_out_channels=boc,
            layers_per_block=layers_per_block,
            act_fn="silu",
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            sample_size=sample_size,
        )
        if scaling_factor is not None:
            self.config["scaling_factor"] = scaling_factor
        self.scaling_factor = 0.18215 if scaling_factor is None else scaling_factor
        self.encoder = Encoder(in_channels, latent_channels, boc, layers_per_block, norm_num_groups)
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.decoder = Decoder(latent_channels, out_channels, boc, layers_per_block, norm_num_groups)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    def encode_parameters(self, x: torch.Tensor) -> torch.Tensor:
        """mean || logvar on channels (diffusers' `latent_dist.parameters`)."""
        return self.quant_conv(self.encoder(x))

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_parameters(x)[:, : self.latent_channels]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


# --------------------------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------------------------


def init_weights(module: nn.Module, generator: torch.Generator, gain: float = 1.0, bias_std: float = 0.02):
    """Seeded random init keeping activations O(1): weights N(0, gain^2 / fan_in), small random biases,
    norms with weight ~ 1 + N(0, 0.1^2) and bias ~ N(0, 0.1^2), embeddings N(0, 1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * (gain / math.sqrt(fan_in)))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * bias_std)
        elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator))
        elif isinstance(m, nn.Embedding):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
