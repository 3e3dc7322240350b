"""A tiny random-weight ``StableDiffusionSafetyChecker`` and its image processor, built offline."""

from __future__ import annotations

from pathlib import Path


def build_tiny_safety_checker(path: Path, *, flag_everything: bool) -> Path:
    """Save ``safety_checker/`` and ``feature_extractor/`` under ``path`` (see ``tiny_safety_checker``)."""
    checker, processor = tiny_safety_checker(flag_everything=flag_everything)
    checker.save_pretrained(path / "safety_checker")
    processor.save_pretrained(path / "feature_extractor")
    return path


def tiny_safety_checker(*, flag_everything: bool):
    """A tiny ``StableDiffusionSafetyChecker`` and its ``CLIPImageProcessor`` (224 px, as SD 1.5's).

    Its concept thresholds are set so that every picture is flagged (``flag_everything``) or none is:
    a cosine similarity is within [-1, 1], so a threshold of -10 is always passed and 10 never.
    """
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 224,  # what SD 1.5's feature extractor makes (the IP-Adapter's encoder takes it too)
            "patch_size": 32,
        },
        projection_dim=8,
    )
    checker = StableDiffusionSafetyChecker(config)
    threshold = -10.0 if flag_everything else 10.0
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    return checker, CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
