"""The instruction-edit kinds: the prompt says what to change ("make the jacket red").

``instruct-pix2pix``: ``StableDiffusionInstructPix2PixPipeline``; ``--image-cfg``
(``image_guidance_scale``) says how closely to keep the picture, ``--cfg`` how closely to follow the
instruction. ``flux-kontext``: ``FluxKontextPipeline``, for large GPUs; it picks its own working
resolution near the source's aspect. Both load through ``engine.kinds.pretrained``. Neither takes
``strength``: the whole schedule runs, so progress counts every step. docs/models.md lists the options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from bot.jobs import Progress
from bot.models import ModelEntry
from engine.kinds import outputs, pretrained
from engine.work import Kind, Work

# kind (models.toml) → diffusers pipeline class
PIPELINES = {
    "instruct-pix2pix": "StableDiffusionInstructPix2PixPipeline",
    "flux-kontext": "FluxKontextPipeline",
}
DEFAULT_IMAGE_GUIDANCE = 1.5
_KONTEXT_HINT = (
    " (a gated repo: accept its licence on huggingface.co first; about 24 GB in bfloat16: "
    "a 24 GB+ GPU, or cpu_offload = true)"
)


def check(entry: ModelEntry) -> str | None:
    return pretrained.check(entry, _KONTEXT_HINT if entry.kind == "flux-kontext" else "")


def load(entry: ModelEntry, device: str) -> EditModel:
    import diffusers

    name = PIPELINES[entry.kind]
    pipe = pretrained.load(entry, device, getattr(diffusers, name))  # without a safety checker unless asked
    return EditModel(pipe=pipe, device=device, kind=entry.kind, label=f"diffusers {name}")


@dataclass
class EditModel:
    pipe: Any
    device: str
    kind: str
    label: str

    def run(self, work: Work, progress: Progress) -> list[Image.Image]:
        request, entry = work.request, work.entry
        count = len(work.seeds)
        if count == 0:
            return []
        steps = request.num_inference_steps or entry.num_inference_steps
        guidance = entry.guidance_scale if request.guidance_scale is None else request.guidance_scale

        def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            total = getattr(pipe, "num_timesteps", None) or steps
            progress(min(i + 1, total), total)  # raises JobCancelled: it propagates out of the pipeline
            return kwargs

        kwargs: dict[str, Any] = dict(
            prompt=[request.prompt] * count,
            image=[work.image] * count,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=pretrained.generators(self.device, work.seeds),
            output_type="np",
            callback_on_step_end=on_step_end,
        )
        if self.kind == "instruct-pix2pix":
            image_guidance = request.image_guidance_scale
            if image_guidance is None:
                image_guidance = float(entry.options.get("image_guidance_scale", DEFAULT_IMAGE_GUIDANCE))
            negative = [request.negative_prompt] * count if request.negative_prompt else None
            kwargs.update(image_guidance_scale=image_guidance, negative_prompt=negative)
        result = self.pipe(**kwargs)
        found = outputs.images(result.images, getattr(result, "nsfw_content_detected", None), self.label)
        if isinstance(found, Exception):
            raise found
        return found


KIND = Kind(check=check, load=load)
