"""Frames → a playable clip: H.264 MP4 through the ffmpeg that ships with ``imageio-ffmpeg``, or a GIF.

The MP4 is what every platform plays (Telegram's sendAnimation/sendVideo, Discord's inline player, a
browser): H.264, yuv420p (the one pixel format every decoder takes, which needs even sides), the
index at the front (``+faststart``) so a player can start before the download ends. The GIF, for a
platform or an operator that wants one, is encoded with Pillow and kept under a byte cap by lowering
its frame rate and size until it fits.
"""

from __future__ import annotations

import io
import itertools
import os
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from engine.work import Clip, UserFacingError

MP4 = "video/mp4"
GIF = "image/gif"
CRF = 20  # x264 constant quality: 18 is visually lossless, 23 the default; 20 keeps clips small and clean
GIF_MAX_BYTES = 8 * 1024 * 1024  # under Discord's default 10 MiB attachment limit
GIF_MAX_SIDE = 480
GIF_MAX_FPS = 12


def even_size(width: int, height: int) -> tuple[int, int]:
    """The largest even sides not above ``width`` × ``height`` (yuv420p needs even sides)."""
    return max(2, width - width % 2), max(2, height - height % 2)


def encode_mp4(frames: Iterable[np.ndarray], fps: float) -> Clip:
    """H.264/yuv420p MP4 of uint8 RGB frames (H, W, 3), all the same even size."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserFacingError("animations need imageio-ffmpeg: pip install imageio-ffmpeg") from None
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("a clip needs at least one frame")
    height, width = first.shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs even sides, got {width}x{height}")
    handle, path = tempfile.mkstemp(suffix=".mp4", prefix="remixbot-")
    os.close(handle)
    try:
        writer = imageio_ffmpeg.write_frames(
            path,
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=2,
            ffmpeg_log_level="error",
            output_params=["-crf", str(CRF), "-preset", "veryfast", "-movflags", "+faststart"],
        )
        writer.send(None)  # start ffmpeg
        for frame in itertools.chain([first], frames):
            if frame.shape[:2] != (height, width):
                raise ValueError(f"a frame of {frame.shape[1]}x{frame.shape[0]} in a {width}x{height} clip")
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
        writer.close()  # waits for ffmpeg to write the file
        with open(path, "rb") as file:
            data = file.read()
    finally:
        os.unlink(path)
    return Clip(data=data, media_type=MP4, width=width, height=height)


def encode_gif(frames: Sequence[np.ndarray], fps: float, max_bytes: int = GIF_MAX_BYTES) -> Clip:
    """A looping GIF of uint8 RGB frames, at most ``max_bytes``: fewer frames a second, then smaller,
    until it fits (at most 480 px and 12 frames a second to start with)."""
    if not frames:
        raise ValueError("a clip needs at least one frame")
    height, width = frames[0].shape[:2]
    step = max(1, round(fps / GIF_MAX_FPS))
    side = min(GIF_MAX_SIDE, max(width, height))
    while True:
        picked = frames[::step]
        scale = side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        data = _gif(picked, size, duration_ms=round(1000 * step / fps))
        if len(data) <= max_bytes or side <= 64:
            return Clip(data=data, media_type=GIF, width=size[0], height=size[1])
        if step < 4:
            step += 1
        else:
            side = int(side * 0.75)


def _gif(frames: Sequence[np.ndarray], size: tuple[int, int], duration_ms: int) -> bytes:
    images = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB")
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        images.append(image)
    # One palette for the whole clip (from the first frame): no flicker between frames' palettes.
    palette = images[0].quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    paletted = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    out = io.BytesIO()
    paletted[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=paletted[1:],
        duration=max(20, duration_ms),
        loop=0,
        optimize=False,
        disposal=1,
    )
    return out.getvalue()
