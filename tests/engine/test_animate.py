"""Animate: the classic Ken Burns clip (real photos, real ffmpeg) and the image-to-video kind on a tiny
random-weight Stable Video Diffusion pipeline built offline."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.jobs import Action, JobCancelled, Request
from bot.models import ModelEntry
from engine import clips, registry
from engine.kinds import classic
from engine.work import Clip, Work

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from tests.fixtures import IMAGES  # noqa: E402

CLASSIC = ModelEntry(name="classic", kind="classic")


def still(name: str = "astronaut.png", side: int = 768) -> Image.Image:
    with Image.open(IMAGES / name) as image:
        image = image.convert("RGB")
    scale = side / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def animate_work(image: Image.Image, entry: ModelEntry = CLASSIC, seed: int = 1, **request) -> Work:
    fields = dict(
        prompt="",
        model=entry.name,
        strength=0.6,
        seed=seed,
        num_inference_steps=entry.num_inference_steps,
        guidance_scale=entry.guidance_scale,
    )
    fields.update(request)
    return Work(
        action=Action.animate,
        request=Request(**fields),
        entry=entry,
        image=image,
        references=(),
        seeds=(seed,),
        device="cpu",
    )


def decode(clip: Clip, tmp_path: Path) -> tuple[dict, list[np.ndarray]]:
    """The clip's metadata and frames as ffmpeg reads them back."""
    path = tmp_path / f"clip-{time.perf_counter_ns()}.mp4"
    path.write_bytes(clip.data)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return meta, [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]


def run_classic(work: Work, progress=None) -> list:
    return classic.load(CLASSIC, "cpu").run(work, progress or (lambda step, total: None))


# --- classic: Ken Burns -----------------------------------------------------------------------------


def test_a_768px_still_becomes_a_3s_24fps_mp4_whose_first_frame_is_the_still(tmp_path):
    image = still()
    steps = []
    (clip,) = run_classic(animate_work(image), lambda step, total: steps.append((step, total)))
    assert clip.media_type == "video/mp4" and (clip.width, clip.height) == image.size
    assert clip.data[4:8] == b"ftyp" and b"avc1" in clip.data[:4096]  # an MP4 with H.264, index up front
    meta, frames = decode(clip, tmp_path)
    assert meta["fps"] == 24 and len(frames) == 72 and tuple(meta["size"]) == image.size
    source = np.asarray(image).astype(np.int16)
    assert np.abs(frames[0].astype(np.int16) - source).mean() < 3.5  # the still, up to H.264 loss
    assert np.abs(frames[-1].astype(np.int16) - source).mean() > 15  # the camera moved
    moves = [np.abs(b.astype(np.int16) - a).mean() for a, b in zip(frames, frames[1:], strict=False)]
    assert moves[len(moves) // 2] > moves[0] and moves[len(moves) // 2] > moves[-1]  # eased in and out
    assert steps[-1][0] == steps[-1][1] and [s for s, _ in steps] == sorted(s for s, _ in steps)


def test_motion_frames_fps_and_seed_shape_the_clip(tmp_path):
    image = still("coffee.png", 330)  # 330 x 220: even sides, so the clip is the same size
    source = np.asarray(image).astype(np.int16)

    def last(clip: Clip) -> np.ndarray:
        return decode(clip, tmp_path)[1][-1].astype(np.int16)

    low, high = (run_classic(animate_work(image, motion=m, num_frames=24))[0] for m in ("low", "high"))
    assert np.abs(last(high) - source).mean() > np.abs(last(low) - source).mean() * 1.3
    short = run_classic(animate_work(image, num_frames=30, fps=12))[0]
    meta, frames = decode(short, tmp_path)
    assert len(frames) == 30 and meta["fps"] == 12
    again = run_classic(animate_work(image, num_frames=24))[0]
    other = run_classic(animate_work(image, seed=2, num_frames=24))[0]
    assert np.array_equal(last(again), last(low))  # same seed, same move
    assert np.abs(last(other) - last(low)).mean() > 2  # another seed drifts elsewhere


def test_odd_sides_become_even_and_size_caps_the_longest_side(tmp_path):
    image = still("rocket.jpg", 401).crop((0, 0, 301, 401))
    (clip,) = run_classic(animate_work(image, num_frames=4))
    assert (clip.width, clip.height) == (300, 400)
    (small,) = run_classic(animate_work(still(), num_frames=4, size=256))
    meta, _ = decode(small, tmp_path)
    assert max(meta["size"]) == 256 and all(side % 2 == 0 for side in meta["size"])


def test_cancelling_stops_the_clip():
    def cancel(step, total):
        raise JobCancelled()

    with pytest.raises(JobCancelled):
        run_classic(animate_work(still("coffee.png", 256)), cancel)


def test_a_gif_when_the_entry_asks_for_one_stays_under_its_cap():
    entry = ModelEntry(name="classic", kind="classic", options={"clip_format": "gif"})
    (clip,) = classic.load(entry, "cpu").run(animate_work(still(side=600), entry, num_frames=24), lambda s, t: None)
    assert clip.media_type == "image/gif" and len(clip.data) <= clips.GIF_MAX_BYTES
    with Image.open(io.BytesIO(clip.data)) as gif:  # 24 fps thinned to 12: every other frame
        assert gif.n_frames == 12 and max(gif.size) == clips.GIF_MAX_SIDE and gif.info["loop"] == 0
    frames = [np.full((200, 300, 3), (i * 9) % 256, np.uint8) for i in range(40)]
    noisy = [np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8) for i in range(8)]
    capped = clips.encode_gif(noisy, 12, max_bytes=150_000)
    assert len(capped.data) <= 150_000 and capped.width < 320  # noise only fits smaller
    assert clips.encode_gif(frames, 10).width == 300  # a small clip keeps its size


def test_mp4_needs_even_sides_and_frames():
    with pytest.raises(ValueError, match="even"):
        clips.encode_mp4([np.zeros((31, 32, 3), np.uint8)], 24)
    with pytest.raises(ValueError, match="at least one frame"):
        clips.encode_mp4([], 24)


# --- image-to-video: a tiny Stable Video Diffusion --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_svd(tmp_path_factory, one_torch_thread) -> Path:
    pytest.importorskip("diffusers")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tests.engine.tiny_pipelines import build_tiny_svd

    return build_tiny_svd(tmp_path_factory.mktemp("tiny") / "svd")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core runner: one thread is several times faster than contended ones."""
    pytest.importorskip("torch")
    from tests.engine.tiny_pipelines import single_torch_thread

    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def svd(tiny_svd):
    entry = ModelEntry(
        name="svd",
        kind="image-to-video",
        source=str(tiny_svd),
        size=32,
        multiple=8,
        num_inference_steps=2,
        guidance_scale=2.5,
    )
    return entry, registry.kind_of(entry).load(entry, "cpu")


def test_svd_through_the_registry_makes_an_mp4_and_a_seed_repeats_it(svd, tmp_path):
    entry, model = svd
    assert registry.check(entry) is None and model.label == "diffusers StableVideoDiffusionPipeline"
    image = still("coffee.png", 300)
    steps = []
    (clip,) = model.run(animate_work(image, entry, fps=8), lambda step, total: steps.append((step, total)))
    meta, frames = decode(clip, tmp_path)
    assert len(frames) == 4 and meta["fps"] == 8  # the tiny UNet's 4 frames by default
    assert (clip.width, clip.height) == (32, 24) == tuple(meta["size"])  # fitted: longest side, 8s
    assert steps == [(1, 3), (2, 3), (3, 3)]  # two denoising steps, then the encode
    (again,) = model.run(animate_work(image, entry, fps=8), lambda step, total: None)
    assert again.data == clip.data
    (livelier,) = model.run(animate_work(image, entry, fps=8, motion="high", num_frames=3), lambda s, t: None)
    _, more = decode(livelier, tmp_path)
    assert len(more) == 3 and not np.array_equal(more[0], frames[0])  # motion_bucket_id conditions the UNet


def test_svd_cancels_at_the_next_step(svd):
    entry, model = svd

    def cancel(step, total):
        raise JobCancelled()

    with pytest.raises(JobCancelled):
        model.run(animate_work(still("coffee.png", 64), entry), cancel)


def test_video_entries_say_what_they_need(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repo = "stabilityai/stable-video-diffusion-img2vid-xt"
    svd_hub = ModelEntry(name="svd", kind="image-to-video", source=repo)
    assert registry.check(svd_hub) == f"needs weights: download {repo} first (hf download {repo})"
    wan = ModelEntry(
        name="wan",
        kind="image-to-video",
        source="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        options={"pipeline": "WanImageToVideoPipeline"},
    )
    reason = registry.check(wan)
    assert reason.startswith("needs weights: download Wan-AI/") and "24 GB" in reason
    odd = ModelEntry(name="odd", kind="image-to-video", source=str(tmp_path), options={"pipeline": "sora"})
    assert registry.check(odd).startswith("misconfigured: odd: unknown image-to-video pipeline 'sora'")
    missing = ModelEntry(name="gone", kind="image-to-video", source=str(tmp_path / "nowhere"))
    assert registry.check(missing).startswith("needs weights:")
