"""More tiny random-weight diffusers pipelines, built offline: image-to-video (SVD), instruct-pix2pix,
and an IP-Adapter (weights plus image encoder) for the tiny SD of ``tiny_models``.

The shapes follow diffusers' own fast tests (``get_dummy_components``); each folder is a few hundred
kilobytes and loads through ``from_pretrained`` / ``load_ip_adapter`` like the real ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.engine.tiny_models import tiny_sd_components, write_tiny_clip_vocab

IP_ADAPTER_WEIGHTS = "ip-adapter_tiny.safetensors"


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run torch on one thread meanwhile (tiny models on a busy runner: several times faster)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tiny_image_encoder():
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,  # 224 px: SVD always resizes its CLIP input to 224
        )
    )


def build_tiny_svd(path: Path, variants: tuple[str, ...] = ()) -> Path:
    """A tiny ``StableVideoDiffusionPipeline`` folder (its UNet's default is 4 frames); each of ``variants``
    ("fp16") is saved beside the float32 weights, as ``*.fp16.safetensors`` in half precision."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=8,
        out_channels=4,
        num_frames=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    pipe = StableVideoDiffusionPipeline(
        unet=unet,
        image_encoder=_tiny_image_encoder(),
        scheduler=scheduler,
        vae=vae,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    path = Path(path)
    pipe.save_pretrained(str(path))
    for variant in variants:
        pipe.to(getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}[variant])).save_pretrained(
            str(path), variant=variant
        )
    return path


def build_tiny_pix2pix(path: Path, safety_checker=None, feature_extractor=None, scheduler=None) -> Path:
    """A tiny ``StableDiffusionInstructPix2PixPipeline`` folder: the tiny SD with an 8-channel UNet input
    (the noisy latents and the source's latents side by side); with ``safety_checker`` and
    ``feature_extractor`` (``tiny_safety``) and another ``scheduler`` when given."""
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    path = Path(path)
    components = tiny_sd_components()
    torch.manual_seed(0)
    config = dict(components["unet"].config)
    config["in_channels"] = 8
    components["unet"] = UNet2DConditionModel.from_config(config)
    if scheduler is not None:
        components["scheduler"] = scheduler
    tokenizer_dir = write_tiny_clip_vocab(path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True, model_max_length=77)
    pipe = StableDiffusionInstructPix2PixPipeline(
        **components,
        tokenizer=tokenizer,
        safety_checker=safety_checker,
        feature_extractor=feature_extractor,
        requires_safety_checker=safety_checker is not None,
    )
    pipe.save_pretrained(str(path))
    return path


def build_tiny_ip_adapter(path: Path, sd_folder: Path, weight_name: str = IP_ADAPTER_WEIGHTS) -> Path:
    """An IP-Adapter for the tiny SD at ``sd_folder``: ``path/<weight_name>`` (image projection and
    the cross-attention key/value projections, in the layout ``load_ip_adapter`` reads) and
    ``path/image_encoder`` (a tiny CLIP vision model). Random weights, scaled up so that a reference
    visibly steers the result."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    path = Path(path)
    unet = UNet2DConditionModel.from_pretrained(str(sd_folder), subfolder="unet", local_files_only=True)
    encoder = _tiny_image_encoder()
    encoder.save_pretrained(str(path / "image_encoder"))
    cross = unet.config.cross_attention_dim
    clip_dim = encoder.config.projection_dim
    torch.manual_seed(1)
    state = {
        "image_proj.proj.weight": torch.randn(4 * cross, clip_dim),
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    for name in unet.attn_processors:  # the order diffusers numbers them in
        if name.endswith("attn1.processor"):
            continue  # self-attention: no image tokens
        block = name.split(".")[0]
        channels = list(unet.config.block_out_channels)
        if block == "mid_block":
            hidden = channels[-1]
        elif block == "up_blocks":
            hidden = list(reversed(channels))[int(name.split(".")[1])]
        else:
            hidden = channels[int(name.split(".")[1])]
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.5
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.5
        key_id += 2
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / weight_name))
    return path
