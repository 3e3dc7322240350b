"""Tiny random-weight diffusers pipelines, built offline for the engine tests.

``build_tiny_sd`` writes a Stable Diffusion img2img pipeline folder (model_index.json, unet/, vae/,
text_encoder/, tokenizer/, scheduler/) that is a few hundred kilobytes and loads like a real one.
Nothing here touches the Hugging Face hub: the CLIP tokenizer is built from a vocab.json and
merges.txt written by this module, every model is constructed from a config.

``build_tiny_sd_single_file`` writes the same weights as one original-layout (LDM / A1111-style)
``.safetensors`` checkpoint, so that ``from_single_file`` can be exercised offline when it is given
the tiny folder as its ``config``.
"""

from __future__ import annotations

import json
from pathlib import Path

# Keep in step with the text encoder's vocab_size below.
_VOCAB_SIZE = 1000
# A few merges so that the BPE does some real work on ordinary prompts.
_MERGES = [
    ("t", "h"),
    ("th", "e</w>"),
    ("a", "n"),
    ("i", "n"),
    ("o", "n</w>"),
    ("e", "r"),
    ("c", "o"),
    ("co", "f"),
    ("cof", "f"),
    ("coff", "e"),
    ("coffe", "e</w>"),
    ("a", "t</w>"),
    ("s", "t"),
]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tiny_clip_vocab(folder: Path) -> Path:
    """Write a tiny CLIP BPE vocabulary (vocab.json, merges.txt) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in _bytes_to_unicode().values():
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    for left, right in _MERGES:
        vocab.setdefault(left + right, len(vocab))
    assert len(vocab) <= _VOCAB_SIZE, len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in _MERGES)
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    return folder


def tiny_sd_components() -> dict:
    """The components of a tiny SD 1.x-shaped pipeline (random weights, seeded)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=64,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=_VOCAB_SIZE,
            max_position_embeddings=77,
        )
    )
    # SD 1.5's scheduler settings, with Euler: one denoising step per timestep (order 1).
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}


def with_config(model, keep_weights: bool = True, **changes):
    """A diffusers model like ``model`` with its config changed (``force_upcast=False`` …): the same
    weights, or new random ones when the shapes change (``keep_weights=False``).

    The config's private keys are left out: ``_use_default_values`` would put the defaults back."""
    config = {key: value for key, value in model.config.items() if not key.startswith("_")}
    changed = type(model).from_config({**config, **changes})
    if keep_weights:
        changed.load_state_dict(model.state_dict())
    return changed


def build_tiny_sd(path: Path) -> Path:
    """Build and save a tiny random-weight ``StableDiffusionImg2ImgPipeline`` folder at ``path``."""
    from diffusers import StableDiffusionImg2ImgPipeline
    from transformers import CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = write_tiny_clip_vocab(path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True, model_max_length=77)
    pipe = StableDiffusionImg2ImgPipeline(
        **tiny_sd_components(),
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(path))
    return path


# --- the original (LDM) checkpoint layout --------------------------------------------------------
# The inverse of diffusers.loaders.single_file_utils.convert_ldm_{unet,vae,clip}_checkpoint for the
# SD 1.x layout, parametrised by the folder's configs (the tiny model has 2 blocks, 1 layer each).

_RESNET_TO_LDM = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
]
_UNET_TOP_TO_LDM = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTN_TO_LDM = [
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
]


def _replace_prefix(key: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old) :]
    return None


def _resnet_to_ldm(rest: str) -> str:
    for old, new in _RESNET_TO_LDM:
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    raise KeyError(rest)


def _unet_to_ldm(state: dict, config: dict) -> dict:
    layers = config["layers_per_block"]
    blocks = len(config["block_out_channels"])
    out: dict = {}
    for key, value in state.items():
        top = _replace_prefix(key, _UNET_TOP_TO_LDM)
        if top is not None:
            out[top] = value
            continue
        parts = key.split(".")
        if parts[0] == "down_blocks":
            b, kind = int(parts[1]), parts[2]
            if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.X
                index = 1 + b * (layers + 1) + layers
                out[f"input_blocks.{index}.0.op.{parts[-1]}"] = value
                continue
            j = int(parts[3])
            index = 1 + b * (layers + 1) + j
            rest = ".".join(parts[4:])
            if kind == "resnets":
                out[f"input_blocks.{index}.0.{_resnet_to_ldm(rest)}"] = value
            else:
                out[f"input_blocks.{index}.1.{rest}"] = value
        elif parts[0] == "mid_block":
            kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                out[f"middle_block.{2 * j}.{_resnet_to_ldm(rest)}"] = value
            else:
                out[f"middle_block.1.{rest}"] = value
        elif parts[0] == "up_blocks":
            b, kind = int(parts[1]), parts[2]
            has_attention = "CrossAttn" in config["up_block_types"][b]
            if kind == "upsamplers":  # on the block's last layer, after its attention if any
                index = b * (layers + 1) + layers
                out[f"output_blocks.{index}.{2 if has_attention else 1}.conv.{parts[-1]}"] = value
                continue
            j = int(parts[3])
            index = b * (layers + 1) + j
            rest = ".".join(parts[4:])
            if kind == "resnets":
                out[f"output_blocks.{index}.0.{_resnet_to_ldm(rest)}"] = value
            else:
                out[f"output_blocks.{index}.1.{rest}"] = value
        else:
            raise KeyError(f"unexpected UNet key {key}")
    assert blocks == len(config["up_block_types"])
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def _vae_attention_to_ldm(rest: str, value):
    for old, new in _VAE_ATTN_TO_LDM:
        if rest.startswith(old):
            rest = new + rest[len(old) :]
            break
    if rest.endswith("weight") and not rest.startswith("norm.") and value.ndim == 2:
        value = value[:, :, None, None]  # the original attention uses 1x1 convolutions
    return rest, value


def _vae_resnet_to_ldm(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def _vae_to_ldm(state: dict, config: dict) -> dict:
    blocks = len(config["up_block_types"])
    top = {
        "encoder.conv_norm_out": "encoder.norm_out",
        "decoder.conv_norm_out": "decoder.norm_out",
        "encoder.conv_in": "encoder.conv_in",
        "encoder.conv_out": "encoder.conv_out",
        "decoder.conv_in": "decoder.conv_in",
        "decoder.conv_out": "decoder.conv_out",
        "quant_conv": "quant_conv",
        "post_quant_conv": "post_quant_conv",
    }
    out: dict = {}
    for key, value in state.items():
        mapped = _replace_prefix(key, top)
        if mapped is not None:
            out[mapped] = value
            continue
        parts = key.split(".")
        coder, kind = parts[0], parts[1]
        if kind == "down_blocks":  # encoder.down_blocks.i.{resnets.j|downsamplers.0}.X
            i = int(parts[2])
            if parts[3] == "downsamplers":
                out[f"encoder.down.{i}.downsample.conv.{parts[-1]}"] = value
            else:
                out[f"encoder.down.{i}.block.{parts[4]}.{_vae_resnet_to_ldm('.'.join(parts[5:]))}"] = value
        elif kind == "up_blocks":  # decoder.up_blocks.i -> decoder.up.(blocks-1-i)
            i = blocks - 1 - int(parts[2])
            if parts[3] == "upsamplers":
                out[f"decoder.up.{i}.upsample.conv.{parts[-1]}"] = value
            else:
                out[f"decoder.up.{i}.block.{parts[4]}.{_vae_resnet_to_ldm('.'.join(parts[5:]))}"] = value
        elif kind == "mid_block":
            if parts[2] == "resnets":
                rest = _vae_resnet_to_ldm(".".join(parts[4:]))
                out[f"{coder}.mid.block_{int(parts[3]) + 1}.{rest}"] = value
            else:  # attentions.0
                rest, value = _vae_attention_to_ldm(".".join(parts[4:]), value)
                out[f"{coder}.mid.attn_1.{rest}"] = value
        else:
            raise KeyError(f"unexpected VAE key {key}")
    return {"first_stage_model." + k: v for k, v in out.items()}


def build_tiny_sd_single_file(path: Path, folder: Path | None = None) -> Path:
    """Write the tiny pipeline's weights as one original-layout SD 1.x ``.safetensors`` checkpoint.

    ``path`` is the file to write; ``folder`` a tiny pipeline folder from ``build_tiny_sd`` (built next
    to ``path`` when omitted). Loading it offline needs that folder as ``from_single_file``'s
    ``config``: without one, diffusers looks up the real SD 1.5 configs on the hub.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    path = Path(path)
    if folder is None:
        folder = build_tiny_sd(path.with_suffix(""))
    unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(str(folder), subfolder="vae", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder", local_files_only=True)

    checkpoint = {}
    checkpoint.update(_unet_to_ldm(unet.state_dict(), dict(unet.config)))
    checkpoint.update(_vae_to_ldm(vae.state_dict(), dict(vae.config)))
    for key, value in text_encoder.state_dict().items():
        if not key.startswith("text_model."):  # transformers >= 5.6 flattened CLIPTextModel
            key = "text_model." + key
        checkpoint["cond_stage_model.transformer." + key] = value
    checkpoint = {k: v.detach().to(torch.float32).contiguous() for k, v in checkpoint.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(checkpoint, str(path))
    return path


# TAESD (madebyollin/taesd): diffusers' AutoencoderTiny defaults are its config; TAESDXL has the same.
TAESD = dict(
    encoder_block_out_channels=(64, 64, 64, 64),
    decoder_block_out_channels=(64, 64, 64, 64),
    num_encoder_blocks=(1, 3, 3, 3),
    num_decoder_blocks=(3, 3, 3, 1),
    latent_channels=4,
    latent_magnitude=3,
    latent_shift=0.5,
    scaling_factor=1.0,
)


def build_taesd(folder: Path, *, seed: int = 0) -> Path:
    """An ``AutoencoderTiny`` with TAESD's real architecture (2.4 M parameters) and random weights, saved
    as a diffusers model folder (kept if already there): what ``tiny_vae`` points at, without the hub."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(**TAESD).save_pretrained(str(folder))
    return folder
