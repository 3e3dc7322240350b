"""A tiny random-weight SDXL img2img pipeline (two CLIP text encoders, pooled embeddings), built offline.

The shapes follow diffusers' own fast SDXL tests; the tokenizers are ``tiny_models``' CLIP BPE.
"""

from __future__ import annotations

from pathlib import Path

from tests.engine.tiny_models import _VOCAB_SIZE, tiny_sd_components, with_config, write_tiny_clip_vocab


def build_tiny_sdxl(
    path: Path, pipeline: str = "StableDiffusionXLImg2ImgPipeline", vae_config: dict | None = None
) -> Path:
    """Build and save a tiny SDXL pipeline folder at ``path``: ``pipeline`` is the class model_index.json
    names, ``vae_config`` changes the VAE's config (``scaling_factor``, ``force_upcast``)."""
    import diffusers
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    base = tiny_sd_components()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids and the pooled embedding
        cross_attention_dim=64,  # the two encoders' hidden states side by side
    )
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=_VOCAB_SIZE,
        max_position_embeddings=77,
        projection_dim=32,
    )
    torch.manual_seed(1)
    text_encoder = CLIPTextModel(config)
    torch.manual_seed(2)
    text_encoder_2 = CLIPTextModelWithProjection(config)
    tokenizer_dir = write_tiny_clip_vocab(path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True, model_max_length=77)
    vae = with_config(base["vae"], **vae_config) if vae_config else base["vae"]
    extra = {"requires_aesthetics_score": False} if "Img2Img" in pipeline else {}
    pipe = getattr(diffusers, pipeline)(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=base["scheduler"],
        force_zeros_for_empty_prompt=True,
        **extra,
    )
    pipe.save_pretrained(str(path))
    return path
