"""The ``face-restore`` model kind: Fix face with a model, on the faces ``engine.kinds.faces`` finds.

Each face is restored by, in this order of preference,

* ``source``: a face-restoration model file that spandrel loads (GFPGAN 1.3/1.4, RestoreFormer;
  CodeFormer with ``pip install 'remixbot[extra-arches]'``, opt-in for its non-commercial licence),
  run at ``FACE_SIZE`` px, seeded (GFPGAN adds noise);
* ``inpaint_model``: a ``diffusers-img2img`` entry that redraws each face crop at low strength (the
  ADetailer approach), on this entry's thread (``Work.load_model`` hands it over).

With neither usable (an engine that cannot hand over another model), the faces get the classic
retouch. docs/models.md lists the options: ``fidelity``, ``denoise``, ``face_size``, ``prompt``,
``yunet``, ``dtype``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from bot import images
from bot.jobs import Action, Progress
from bot.models import ModelEntry
from engine.kinds import faces, sources, weights
from engine.work import Kind, Work

log = logging.getLogger(__name__)

FACE_SIZE = 512  # the side a face crop is restored at
DENOISE = 0.4  # the inpaint model's strength on a face crop


@dataclass
class FaceModel:
    entry: ModelEntry
    label: str
    descriptor: Any = None  # a spandrel ImageModelDescriptor when ``source`` is set

    def run(self, work: Work, progress: Progress) -> list[Image.Image]:
        if self.descriptor is not None:
            return faces.fix(work, progress, self._restore)
        return self._redraw(work, progress)

    def _restore(self, crop: np.ndarray, seed: int, progress: Progress) -> np.ndarray:
        """The spandrel model on the crop at 512 px, seeded (GFPGAN adds noise), back to the crop's size."""
        import torch

        descriptor = self.descriptor
        square = faces.resized(crop, FACE_SIZE, FACE_SIZE)
        tensor = weights.to_tensor(square, descriptor)
        devices = [descriptor.device] if descriptor.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            # GFPGAN and CodeFormer work on [-1, 1] images, and spandrel hands them [0, 1] as it is
            architecture = str(descriptor.architecture.id)
            if architecture == "GFPGAN":
                result = descriptor.model(tensor * 2.0 - 1.0, return_rgb=False)[0].add(1.0).div(2.0)
            elif architecture == "CodeFormer":
                fidelity = float(self.entry.options.get("fidelity", 0.5))
                result = descriptor.model(tensor * 2.0 - 1.0, weight=fidelity)[0].add(1.0).div(2.0)
            else:
                result = descriptor(tensor)
        progress(1, 1)
        return faces.resized(weights.to_pixels(result), crop.shape[1], crop.shape[0])

    def _redraw(self, work: Work, progress: Progress) -> list[Image.Image]:
        """The ADetailer approach: each face crop redrawn by the inpaint model's img2img."""
        name = str(self.entry.options["inpaint_model"])
        if work.load_model is None:  # an engine that cannot hand over another model
            log.warning(
                "%s: the engine passed no model loader; %s cannot be used, retouching instead", self.entry.name, name
            )
            return faces.fix(work, progress, faces.retouch_face, f"classic retouch: {name} is not available here")
        entry, model = work.load_model(name)
        size = int(self.entry.options.get("face_size", FACE_SIZE))
        denoise = float(self.entry.options.get("denoise", DENOISE))
        request = work.request
        prompt = str(
            self.entry.options.get("prompt")
            or (f"{request.prompt}, detailed face" if request.prompt.strip() else "a detailed face")
        )

        def redraw(crop: np.ndarray, seed: int, step: Progress) -> np.ndarray:
            small = images.fit(Image.fromarray(crop), size, entry.multiple)
            face_request = replace(
                request,
                prompt=prompt,
                model=entry.name,
                strength=denoise,
                seed=seed,
                size=None,
                num_images_per_prompt=1,
                num_inference_steps=None,
                guidance_scale=None,
            )
            face_work = Work(
                action=Action.remix,
                request=face_request,
                entry=entry,
                image=small,
                references=(),
                seeds=(seed,),
                device=work.device,
            )
            [image] = model.run(face_work, step)
            if not isinstance(image, Image.Image):
                raise TypeError(f"{name} made a clip, not an image: it cannot redraw faces")
            return faces.resized(np.asarray(image.convert("RGB")), crop.shape[1], crop.shape[0])

        return faces.fix(work, progress, redraw, f"redrawn with {name}")


def _options_problem(entry: ModelEntry) -> str | None:
    problem = faces.detector_problem(entry)
    if problem:
        return problem
    for key, low, high in (("fidelity", 0.0, 1.0), ("denoise", 0.01, 1.0)):
        value = entry.options.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high
        ):
            return f"misconfigured: {key} = {value!r} for {entry.name} (a number from {low:g} to {high:g})"
    try:
        weights.int_option(entry, "face_size", FACE_SIZE, 64, 2048)
    except ValueError as error:
        return str(error)
    return None


def check(entry: ModelEntry) -> str | None:
    """None when the entry can run here; never imports torch."""
    problem = _options_problem(entry)
    if problem:
        return problem
    if entry.source.strip():
        return sources.dtype_problem(entry) or weights.weights_problem(entry)
    if not str(entry.options.get("inpaint_model") or "").strip():
        return (
            f'misconfigured: {entry.name} needs source = "<a face model .pth>" or '
            'inpaint_model = "<a diffusers-img2img model name>" in models.toml'
        )
    return None


def load(entry: ModelEntry, device: str) -> FaceModel:
    if not entry.source.strip():
        return FaceModel(entry=entry, label=f"faces redrawn by {entry.options['inpaint_model']}")
    descriptor = weights.load_descriptor(entry, device)
    return FaceModel(entry=entry, label=f"spandrel {weights.architecture(descriptor)}", descriptor=descriptor)


KIND = Kind(check=check, load=load)
