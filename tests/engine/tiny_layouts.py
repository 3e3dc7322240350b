"""The real repositories behind config/models.toml, in their real layouts, with tiny random weights.

``hub_snapshot(hub, repo)`` is where ``hf download REPO`` would put a repository in the Hugging Face
cache at ``hub`` (``models--org--name/refs/main`` naming ``snapshots/<commit>/``); each builder in
``REPOS`` writes one repository there the way the real one is laid out: the same ``model_index.json``
(pipeline class and every component, ``safety_checker``/``feature_extractor`` included where the
real one names them), the same component folders and config files (schedulers' settings, the VAE's
``force_upcast`` and scaling factor, two text encoders for SDXL, the image encoder of SVD and of the
IP-Adapter, fp16 variant files where the entry asks for a ``variant``), and the single-file
checkpoints at its root where the real one has them. Only the sizes are tiny.

The component builders of ``tiny_models``, ``tiny_pipelines``, ``tiny_sdxl`` and ``tiny_safety`` make
the weights; nothing here touches the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from tests.engine.tiny_models import (
    build_tiny_sd_single_file,
    tiny_sd_components,
    with_config,
    write_tiny_clip_vocab,
)
from tests.engine.tiny_pipelines import build_tiny_ip_adapter, build_tiny_pix2pix, build_tiny_svd
from tests.engine.tiny_safety import tiny_safety_checker
from tests.engine.tiny_sdxl import build_tiny_sdxl

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_SINGLE_FILE = "v1-5-pruned-emaonly.safetensors"  # one of the A1111-style checkpoints at the repo's root
SDXL_VAE_FIX = "madebyollin/sdxl-vae-fp16-fix"


def hub_snapshot(hub: Path, repo: str) -> Path:
    """The snapshot folder of ``repo``'s main revision in the cache at ``hub`` (made, with its ref)."""
    base = Path(hub) / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode()).hexdigest()
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_tiny_clip_vocab(folder)), local_files_only=True, model_max_length=77)


def _sd_scheduler(cls_name: str, **config):
    """An SD scheduler with the settings every Stable Diffusion repo ships (scaled-linear betas, offset 1)."""
    import diffusers

    base = dict(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1
    )
    return getattr(diffusers, cls_name)(**{**base, **config})


def sd_turbo(path: Path) -> None:
    """stabilityai/sd-turbo: SD 2.1's architecture (linear projections, gelu text encoder), Euler with
    "trailing" timesteps, and no safety checker (``[null, null]`` in model_index.json)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    parts = tiny_sd_components()
    torch.manual_seed(0)
    parts["unet"] = with_config(parts["unet"], keep_weights=False, use_linear_projection=True)
    torch.manual_seed(0)
    text = dict(parts["text_encoder"].config.to_dict(), hidden_act="gelu")
    parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(**text))
    parts["scheduler"] = _sd_scheduler(
        "EulerDiscreteScheduler",
        interpolation_type="linear",
        prediction_type="epsilon",
        timestep_spacing="trailing",
        use_karras_sigmas=False,
    )
    pipe = StableDiffusionPipeline(
        **parts,
        tokenizer=_tokenizer(path / "tokenizer"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=True,  # as the real model_index.json says, with no checker
    )
    pipe.save_pretrained(str(path))


def sd15(path: Path) -> None:
    """stable-diffusion-v1-5: PNDM, and a safety checker with its feature extractor. This checker flags
    every picture (its thresholds are below any similarity), so a pipeline that keeps it returns black
    images. The A1111-style checkpoint ``v1-5-pruned-emaonly.safetensors`` sits at the root."""
    from diffusers import StableDiffusionPipeline

    checker, processor = tiny_safety_checker(flag_everything=True)
    pipe = StableDiffusionPipeline(
        **{
            **tiny_sd_components(),
            "scheduler": _sd_scheduler("PNDMScheduler", set_alpha_to_one=False, skip_prk_steps=True),
        },
        tokenizer=_tokenizer(path / "tokenizer"),
        safety_checker=checker,
        feature_extractor=processor,
        requires_safety_checker=True,
    )
    pipe.save_pretrained(str(path))
    build_tiny_sd_single_file(path / SD15_SINGLE_FILE, path)


def sdxl_base(path: Path) -> None:
    """stabilityai/stable-diffusion-xl-base-1.0: two text encoders and tokenizers, Euler ("leading"), and
    the stock VAE: scaling factor 0.13025 and ``force_upcast`` (its default), as the real config has."""
    build_tiny_sdxl(path, pipeline="StableDiffusionXLPipeline", vae_config={"scaling_factor": 0.13025})


def sdxl_vae_fp16_fix(path: Path) -> None:
    """madebyollin/sdxl-vae-fp16-fix: a VAE alone at the root (config.json with ``force_upcast`` false,
    diffusion_pytorch_model.safetensors), made to decode in float16 without overflowing."""
    with_config(tiny_sd_components()["vae"], scaling_factor=0.13025, force_upcast=False).save_pretrained(str(path))


def instruct_pix2pix(path: Path) -> None:
    """timbrooks/instruct-pix2pix: SD 1.5's components with an 8-channel UNet input, Euler ancestral, and
    SD 1.5's safety checker and feature extractor."""
    checker, processor = tiny_safety_checker(flag_everything=True)
    build_tiny_pix2pix(
        path,
        safety_checker=checker,
        feature_extractor=processor,
        scheduler=_sd_scheduler("EulerAncestralDiscreteScheduler"),
    )


def ip_adapter(path: Path, hub: Path) -> None:
    """h94/IP-Adapter: ``models/ip-adapter_sd15.safetensors`` and ``models/image_encoder/`` (for the SD 1.5
    of the same cache)."""
    build_tiny_ip_adapter(path / "models", hub_snapshot(hub, SD15), weight_name="ip-adapter_sd15.safetensors")


def svd_xt(path: Path) -> None:
    """stabilityai/stable-video-diffusion-img2vid-xt: the image encoder, the temporal VAE and UNet, each in
    float32 and as the ``fp16`` variant (``*.fp16.safetensors``) the registry entry loads."""
    build_tiny_svd(path, variants=("fp16",))


def safety_checker_repo(path: Path) -> None:
    """CompVis/stable-diffusion-safety-checker: the checker's config.json and weights and the image
    processor's preprocessor_config.json at the root. This one flags nothing."""
    checker, processor = tiny_safety_checker(flag_everything=False)
    checker.save_pretrained(str(path))
    processor.save_pretrained(str(path))


# --- T5-based pipelines: FLUX.1 Kontext, Wan 2.1, LTX-Video ----------------------------------------


def write_tiny_t5_tokenizer(folder: Path):
    """A tiny sentencepiece-style (Unigram) T5 tokenizer saved in ``folder``; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + c, -2.0) for c in letters] + [(c, -3.0) for c in letters]
    model = Tokenizer(models.Unigram(vocab, unk_id=2))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.decoder = decoders.Metaspace()
    tokenizer = T5TokenizerFast(
        tokenizer_object=model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def _t5_encoder(cls_name: str = "T5EncoderModel", d_model: int = 32):
    import torch
    import transformers

    config_cls = transformers.UMT5Config if cls_name.startswith("UMT5") else transformers.T5Config
    torch.manual_seed(0)
    config = config_cls(
        vocab_size=64, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8
    )
    return getattr(transformers, cls_name)(config)


def flux_kontext(path: Path) -> None:
    """black-forest-labs/FLUX.1-Kontext-dev: FluxKontextPipeline with CLIP and T5 text encoders, a
    16-channel VAE without quant convolutions (FLUX's shift and scaling factors), flow matching."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels, packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
        sample_size=64,
    )
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            base_image_seq_len=256,
            base_shift=0.5,
            max_image_seq_len=4096,
            max_shift=1.15,
            shift=3.0,
            use_dynamic_shifting=True,
        ),
        vae=vae,
        text_encoder=tiny_sd_components()["text_encoder"],  # CLIP: the pooled prompt
        tokenizer=_tokenizer(path / "tokenizer"),
        text_encoder_2=_t5_encoder(),
        tokenizer_2=write_tiny_t5_tokenizer(path / "tokenizer_2"),
        transformer=transformer,
    )
    pipe.save_pretrained(str(path))


def wan_i2v(path: Path) -> None:
    """Wan-AI/Wan2.1-I2V-14B-480P-Diffusers: UMT5 text encoder, CLIP vision image encoder and processor,
    the Wan transformer (36 input channels: noise, mask and the still's latents) and VAE, UniPC with
    flow sigmas."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4,
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=write_tiny_t5_tokenizer(path / "tokenizer"),
        text_encoder=_t5_encoder("UMT5EncoderModel"),
        image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
        transformer=transformer,
        vae=vae,
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000
        ),
    )
    pipe.save_pretrained(str(path))


def ltx_video(path: Path) -> None:
    """Lightricks/LTX-Video: the diffusers folders (T5 text encoder, the LTX transformer and causal video
    VAE, flow matching) under LTXPipeline's model_index.json, which LTXImageToVideoPipeline loads too."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_t5_encoder(),
        tokenizer=write_tiny_t5_tokenizer(path / "tokenizer"),
        transformer=transformer,
    )
    pipe.save_pretrained(str(path))


# repo id → its builder: (snapshot folder, the cache) → None. Order matters: the IP-Adapter is built
# for the SD 1.5 before it.
REPOS: dict[str, Callable[[Path, Path], None]] = {
    "stabilityai/sd-turbo": lambda path, hub: sd_turbo(path),
    "stabilityai/stable-diffusion-xl-base-1.0": lambda path, hub: sdxl_base(path),
    SDXL_VAE_FIX: lambda path, hub: sdxl_vae_fp16_fix(path),
    SD15: lambda path, hub: sd15(path),
    "h94/IP-Adapter": ip_adapter,
    "timbrooks/instruct-pix2pix": lambda path, hub: instruct_pix2pix(path),
    "black-forest-labs/FLUX.1-Kontext-dev": lambda path, hub: flux_kontext(path),
    "stabilityai/stable-video-diffusion-img2vid-xt": lambda path, hub: svd_xt(path),
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": lambda path, hub: wan_i2v(path),
    "Lightricks/LTX-Video": lambda path, hub: ltx_video(path),
    "CompVis/stable-diffusion-safety-checker": lambda path, hub: safety_checker_repo(path),
}


def build_hub(hub: Path, repos: tuple[str, ...] | None = None) -> Path:
    """Write ``repos`` (all of ``REPOS`` by default) into a Hugging Face cache at ``hub``."""
    for repo, build in REPOS.items():
        if repos is None or repo in repos:
            build(hub_snapshot(hub, repo), hub)
    return hub
