"""LoRAs on the tiny SD pipeline: tiny LoRAs built with peft, loaded through diffusers."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from bot.jobs import Action, Request  # noqa: E402
from bot.loras import find_loras  # noqa: E402
from bot.models import ModelEntry  # noqa: E402
from engine.kinds import img2img  # noqa: E402
from engine.kinds.loras import MAX_LOADED, LoraRefused  # noqa: E402
from engine.work import Work  # noqa: E402
from tests.engine.tiny_sdxl import build_tiny_sdxl  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build_tiny_lora(unet_folder: Path, path: Path, seed: int, text_encoder: bool = False) -> Path:
    """A random LoRA (rank 4) for the UNet (and text encoder) of the pipeline folder, saved the diffusers way."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(str(unet_folder), subfolder="unet", local_files_only=True)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    unet.add_adapter(config)
    layers = {"unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))}
    if text_encoder:
        encoder = CLIPTextModel.from_pretrained(str(unet_folder), subfolder="text_encoder", local_files_only=True)
        encoder.add_adapter(
            LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj"], init_lora_weights=False)
        )
        layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(encoder))
    StableDiffusionPipeline.save_lora_weights(str(path.parent), weight_name=path.name, **layers)
    return path


@pytest.fixture(scope="module")
def lora_files(tiny_sd, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("loras")
    build_tiny_lora(tiny_sd, folder / "ink.safetensors", seed=1)
    build_tiny_lora(tiny_sd, folder / "pixel.safetensors", seed=2, text_encoder=True)
    xl = build_tiny_sdxl(tmp_path_factory.mktemp("tiny_xl") / "sdxl")
    build_tiny_lora(xl, folder / "xl_style.safetensors", seed=3)
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    return find_loras(folder)


@pytest.fixture(scope="module")
def model(entry):
    return img2img.load(entry, "cpu")


def work_for(entry: ModelEntry, lora_files, loras=(), seed: int = 5) -> Work:
    return Work(
        action=Action.remix,
        request=Request(prompt="a cup of coffee", model=entry.name, strength=0.6, seed=seed, loras=tuple(loras)),
        entry=entry,
        image=Image.new("RGB", (64, 64), (150, 90, 60)),
        references=(),
        seeds=(seed,),
        device="cpu",
        lora_files=lora_files,
    )


def run(model, work: Work) -> np.ndarray:
    return np.asarray(model.run(work, lambda step, total: None)[0]).astype(int)


def test_weight_zero_is_no_lora_weight_one_changes_the_output_and_switching_back_restores(model, entry, lora_files):
    plain = run(model, work_for(entry, lora_files))
    zero = run(model, work_for(entry, lora_files, [("ink", 0.0)]))
    ink = run(model, work_for(entry, lora_files, [("ink", 1.0)]))
    assert np.array_equal(zero, plain)
    assert np.abs(ink - plain).max() > 2
    assert np.array_equal(run(model, work_for(entry, lora_files)), plain)  # disabled again: the base model
    loads = model.loras.count
    assert np.array_equal(run(model, work_for(entry, lora_files, [("ink", 1.0)])), ink)  # cached: no reload
    assert model.loras.count == loads


def test_several_loras_at_once_with_their_weights(model, entry, lora_files):
    ink = run(model, work_for(entry, lora_files, [("ink", 1.0)]))
    both = run(model, work_for(entry, lora_files, [("ink", 1.0), ("pixel", 0.7)]))
    pixel_only = run(model, work_for(entry, lora_files, [("ink", 0.0), ("pixel", 0.7)]))
    assert np.abs(both - ink).max() > 2 and np.abs(both - pixel_only).max() > 2
    assert np.array_equal(run(model, work_for(entry, lora_files, [("pixel", 0.7)])), pixel_only)


def test_a_lora_for_another_base_model_is_refused_and_the_model_still_works(model, entry, lora_files):
    plain = run(model, work_for(entry, lora_files))
    with pytest.raises(LoraRefused, match="the LoRA xl_style is made for a 64-wide model; this model is a 32-wide"):
        run(model, work_for(entry, lora_files, [("xl_style", 1.0)]))
    with pytest.raises(LoraRefused, match="the LoRA broken is not a readable .safetensors file"):
        run(model, work_for(entry, lora_files, [("broken", 1.0)]))
    with pytest.raises(LoraRefused, match="the LoRA gone is not on this server"):
        run(model, work_for(entry, lora_files, [("gone", 1.0)]))
    assert np.array_equal(run(model, work_for(entry, lora_files)), plain)


def test_a_batch_never_mixes_loras(model, entry, lora_files):
    keys = {
        model.batch_key(work_for(entry, lora_files, loras, seed=seed))
        for loras, seed in (((), 1), ((), 2), ((("ink", 1.0),), 1), ((("ink", 0.5),), 1))
    }
    assert len(keys) == 3  # the two plain works share one; each LoRA setting has its own


def test_least_recently_used_loras_are_unloaded(entry, lora_files, tmp_path):
    model = img2img.load(replace(entry, name="tiny-lru"), "cpu")
    files = dict(lora_files)
    for n in range(MAX_LOADED + 1):
        files[f"copy{n}"] = Path(os.path.join(tmp_path, f"copy{n}.safetensors"))
        files[f"copy{n}"].write_bytes(lora_files["ink"].read_bytes())
        model.loras.activate(model.pipe, work_for(entry, files, [(f"copy{n}", 1.0)]))
    assert len(model.loras.adapters) == MAX_LOADED
    assert len(model.pipe.get_list_adapters()["unet"]) == MAX_LOADED
