"""Random-weight Stable Diffusion pipelines at real sizes, built offline for the engine benchmarks.

The architectures are the published ones (SD 1.5, SD 2.1 / SD-Turbo, SDXL base) written out as
configs here: no hub access, no weights to download. Random weights cost exactly what trained ones
cost to run. The tokenizers are the tests' tiny BPE vocabulary (token ids < 1000; the text encoders
keep their real 49408-token embedding tables), which changes nothing measurable.

``build(name, folder, dtype, device)`` writes a diffusers pipeline folder that the engine loads
like any other (``source = folder`` in a registry entry).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.engine.tiny_models import build_taesd, write_tiny_clip_vocab

CLIP_VOCAB = 49408

# UNet, text encoder(s) and VAE configs of each architecture ("tiny-*": the same shapes, scaled down,
# for dry runs on a CPU).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "sd15": {
        "pipeline": "StableDiffusionImg2ImgPipeline",
        "unet": dict(
            sample_size=64,
            cross_attention_dim=768,
            attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        ),
        "text": [
            dict(
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                num_hidden_layers=12,
                hidden_act="quick_gelu",
                projection_dim=768,
            )
        ],
        "vae": dict(sample_size=512, block_out_channels=(128, 256, 512, 512), layers_per_block=2),
        "scheduler": dict(timestep_spacing="leading"),
    },
    "sd21": {  # SD 2.1 base, the architecture of SD-Turbo
        "pipeline": "StableDiffusionImg2ImgPipeline",
        "unet": dict(
            sample_size=64,
            cross_attention_dim=1024,
            attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        ),
        "text": [
            dict(
                hidden_size=1024,
                intermediate_size=4096,
                num_attention_heads=16,
                num_hidden_layers=23,
                hidden_act="gelu",
                projection_dim=512,
            )
        ],
        "vae": dict(sample_size=512, block_out_channels=(128, 256, 512, 512), layers_per_block=2),
        "scheduler": dict(timestep_spacing="trailing"),  # SD-Turbo's
    },
    "sdxl": {
        "pipeline": "StableDiffusionXLImg2ImgPipeline",
        "unet": dict(
            sample_size=128,
            cross_attention_dim=2048,
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            transformer_layers_per_block=(1, 2, 10),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        ),
        "text": [
            dict(
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                num_hidden_layers=12,
                hidden_act="quick_gelu",
                projection_dim=768,
            ),
            dict(
                hidden_size=1280,
                intermediate_size=5120,
                num_attention_heads=20,
                num_hidden_layers=32,
                hidden_act="gelu",
                projection_dim=1280,
            ),
        ],
        # the fp16-safe SDXL VAE (madebyollin/sdxl-vae-fp16-fix): no float32 upcast for decoding
        "vae": dict(
            sample_size=1024,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            scaling_factor=0.13025,
            force_upcast=False,
        ),
        "scheduler": dict(timestep_spacing="leading"),
    },
    "tiny-sd15": {
        "pipeline": "StableDiffusionImg2ImgPipeline",
        "unet": dict(
            sample_size=16,
            cross_attention_dim=32,
            attention_head_dim=2,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        ),
        "text": [
            dict(
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                hidden_act="quick_gelu",
                projection_dim=32,
            )
        ],
        "vae": dict(sample_size=128, block_out_channels=(32, 64), layers_per_block=1),
        "scheduler": dict(timestep_spacing="leading"),
    },
    "tiny-sdxl": {
        "pipeline": "StableDiffusionXLImg2ImgPipeline",
        "unet": dict(
            sample_size=16,
            cross_attention_dim=64,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            block_out_channels=(32, 64),
            layers_per_block=1,
            transformer_layers_per_block=(1, 2),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=80,
        ),  # 6 * 8 + 32 (text_encoder_2's projection)
        "text": [
            dict(
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                hidden_act="quick_gelu",
                projection_dim=32,
            ),
            dict(
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                hidden_act="gelu",
                projection_dim=32,
            ),
        ],
        "vae": dict(sample_size=128, block_out_channels=(32, 64), layers_per_block=1, force_upcast=False),
        "scheduler": dict(timestep_spacing="leading"),
    },
}


def build(name: str, folder: Path, *, dtype: str = "float32", device: str = "cpu", seed: int = 0) -> Path:
    """Write the ``name`` architecture with random weights as a diffusers folder (kept if already there)."""
    folder = Path(folder)
    marker = folder / "remixbot-benchmark.json"
    wanted = {"architecture": name, "dtype": dtype, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return folder
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    spec = ARCHITECTURES[name]
    started = time.perf_counter()
    torch.manual_seed(seed)
    with torch.device(device):
        unet = diffusers.UNet2DConditionModel(in_channels=4, out_channels=4, **spec["unet"])
        blocks = len(spec["vae"]["block_out_channels"])
        vae = diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * blocks,
            up_block_types=("UpDecoderBlock2D",) * blocks,
            **spec["vae"],
        )
        encoders = []
        for i, text in enumerate(spec["text"]):
            config = CLIPTextConfig(
                vocab_size=CLIP_VOCAB if text["hidden_size"] >= 256 else 1000,
                max_position_embeddings=77,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
                layer_norm_eps=1e-5,
                **text,
            )
            encoders.append((CLIPTextModelWithProjection if i == 1 else CLIPTextModel)(config))
    tokenizer = CLIPTokenizer.from_pretrained(
        str(write_tiny_clip_vocab(folder / "tokenizer")), local_files_only=True, model_max_length=77
    )
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        **spec["scheduler"],
    )
    parts: dict[str, Any] = dict(unet=unet, vae=vae, scheduler=scheduler, text_encoder=encoders[0], tokenizer=tokenizer)
    if len(encoders) == 2:
        parts.update(text_encoder_2=encoders[1], tokenizer_2=tokenizer)
    else:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = getattr(diffusers, spec["pipeline"])(**parts)
    if dtype != "float32":
        pipe.to(getattr(torch, dtype))
    pipe.save_pretrained(str(folder))
    marker.write_text(json.dumps(wanted))
    params = sum(p.numel() for module in (unet, vae, *encoders) for p in module.parameters())
    seconds = time.perf_counter() - started
    print(f"built {name}: {params / 1e9:.2f} B parameters in {seconds:.0f} s -> {folder}", flush=True)
    return folder


def registry_entry(name: str, folder: Path, **fields: Any):
    """A registry entry for a built folder (what models.toml would say)."""
    from bot.models import ModelEntry

    return ModelEntry(name=name, kind="diffusers-img2img", source=str(folder), **fields)


def build_tiny_vae(folder: Path, *, seed: int = 0) -> Path:
    """Write an ``AutoencoderTiny`` with TAESD's architecture and random weights (kept if already there)."""
    return build_taesd(folder, seed=seed)
