"""The ``image-to-video`` model kind: a still becomes a short clip through a diffusers video pipeline.

``pipeline`` in the entry picks it: ``StableVideoDiffusionPipeline`` (the default; "svd"),
``WanImageToVideoPipeline`` ("wan") or ``LTXImageToVideoPipeline`` ("ltx"), loaded through
``engine.kinds.pretrained``. ``--motion`` is SVD's ``motion_bucket_id``, and a few words of the
prompt for the prompt-driven pipelines.

Decoding is what runs out of memory first, so it is bounded: SVD decodes ``decode_chunk_size``
frames at a time, Wan and LTX decode in tiles. Each seed gives one H.264 MP4 (``engine.clips``), or
a GIF. docs/models.md lists the options.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot import images
from bot.jobs import Progress
from bot.models import ModelEntry
from engine import clips
from engine.kinds import pretrained
from engine.kinds.outputs import BlankOutput
from engine.work import Clip, Kind, Work

log = logging.getLogger(__name__)

# short names users may write in models.toml → the diffusers class
PIPELINES = {
    "svd": "StableVideoDiffusionPipeline",
    "wan": "WanImageToVideoPipeline",
    "ltx": "LTXImageToVideoPipeline",
}
SVD = PIPELINES["svd"]
# per pipeline: (default fps, default frames, frames are k * step + 1 for this step (0: any), side multiple)
_SHAPES = {
    "StableVideoDiffusionPipeline": (7, 0, 0, 8),  # frames 0: the UNet's own (14 for svd, 25 for svd-xt)
    "WanImageToVideoPipeline": (16, 81, 4, 16),
    "LTXImageToVideoPipeline": (24, 97, 8, 32),
}
# SVD's motion_bucket_id: 127 is its default; lower is calmer, higher livelier
_MOTION_BUCKETS = {"low": 60, "high": 180}
_MOTION_WORDS = {"low": "subtle, slow, gentle motion", "high": "dynamic, lively motion"}


def pipeline_name(entry: ModelEntry) -> str:
    name = str(entry.options.get("pipeline", SVD))
    name = PIPELINES.get(name.lower(), name)
    if name not in _SHAPES:
        known = ", ".join(sorted(_SHAPES))
        raise ValueError(f"unknown image-to-video pipeline {name!r} (use one of {known})")
    return name


def check(entry: ModelEntry) -> str | None:
    try:
        name = pipeline_name(entry)
    except ValueError as error:
        return f"misconfigured: {entry.name}: {error}"
    if entry.options.get("clip_format") != "gif" and importlib.util.find_spec("imageio_ffmpeg") is None:
        return 'needs imageio-ffmpeg: pip install imageio-ffmpeg (or clip_format = "gif")'
    hint = "" if name == SVD else " (a large model: a 24 GB+ GPU, or cpu_offload = true)"
    problem = pretrained.check(entry, hint)
    if problem is None and name == "WanImageToVideoPipeline" and importlib.util.find_spec("ftfy") is None:
        return "needs ftfy: pip install ftfy (Wan's pipeline cleans every prompt with it)"
    return problem


def load(entry: ModelEntry, device: str) -> VideoModel:
    import diffusers

    name = pipeline_name(entry)
    pipe = pretrained.load(entry, device, getattr(diffusers, name))
    if name != SVD and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()  # bounded decode memory for long clips
    return VideoModel(pipe=pipe, device=device, name=name, label=f"diffusers {name}")


@dataclass
class VideoModel:
    pipe: Any
    device: str
    name: str
    label: str

    def run(self, work: Work, progress: Progress) -> list[Clip]:
        request, entry = work.request, work.entry
        default_fps, default_frames, frame_step, multiple = _SHAPES[self.name]
        fps = request.fps or int(entry.options.get("fps", default_fps))
        frames = request.num_frames or int(entry.options.get("num_frames", 0) or default_frames)
        if self.name == SVD and not frames:
            frames = int(self.pipe.unet.config.num_frames)
        if frame_step:  # Wan: 4k + 1 frames, LTX: 8k + 1
            frames = max(1, round((frames - 1) / frame_step)) * frame_step + 1
        image = images.fit(work.image, request.size or entry.size, max(multiple, entry.multiple))
        steps = request.num_inference_steps or entry.num_inference_steps
        guidance = entry.guidance_scale if request.guidance_scale is None else request.guidance_scale
        count = len(work.seeds)
        total = (steps + 1) * count
        done = 0

        def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            progress(done + min(i + 1, steps), total)  # raises JobCancelled: it propagates out of the pipe
            return kwargs

        kwargs = dict(
            image=image,
            height=image.height,
            width=image.width,
            num_frames=frames,
            num_inference_steps=steps,
            output_type="np",
            callback_on_step_end=on_step_end,
        )
        motion = request.motion
        if self.name == SVD:
            options = entry.options
            kwargs.update(
                fps=fps,
                motion_bucket_id=_MOTION_BUCKETS.get(motion or "", 127),
                noise_aug_strength=float(options.get("noise_aug_strength", 0.02)),
                decode_chunk_size=int(options.get("decode_chunk_size", 4)),
                min_guidance_scale=float(options.get("min_guidance_scale", 1.0)),
                max_guidance_scale=max(guidance, float(options.get("min_guidance_scale", 1.0))),
            )
        else:
            words = (request.prompt, _MOTION_WORDS.get(motion or "", ""))
            kwargs.update(
                prompt=", ".join(word for word in words if word),
                negative_prompt=request.negative_prompt or None,
                guidance_scale=guidance,
            )
            if self.name == "LTXImageToVideoPipeline":
                kwargs["frame_rate"] = fps
        outputs: list[Clip] = []
        for generator in pretrained.generators(self.device, work.seeds):  # a clip at a time: bounded memory
            video = np.asarray(self.pipe(generator=generator, **kwargs).frames[0])  # (frames, H, W, 3), 0..1
            if np.isnan(video).any():
                log.warning('%s produced NaNs: a float16 overflow? try dtype = "bfloat16"', self.label)
                raise BlankOutput("the model produced a blank clip; try again with another seed")
            done += steps
            frames_u8 = [np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8) for frame in video]
            if entry.options.get("clip_format") == "gif":
                outputs.append(clips.encode_gif(frames_u8, fps))
            else:
                outputs.append(clips.encode_mp4(frames_u8, fps))
            done += 1
            progress(done, total)
        return outputs


KIND = Kind(check=check, load=load)
