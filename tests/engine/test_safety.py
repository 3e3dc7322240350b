"""The content classifiers: NudeNet's real 320n weights (the nsfw extra) and diffusers' safety checker."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from bot.jobs import Action, Job, Origin, Request, Status, Verdict
from bot.models import ModelEntry, load_models, parse_models
from bot.settings import ROOT
from engine import clips, registry
from engine.safety import Safety, frames, worst
from tests.fixtures import IMAGES

PHOTOS = sorted(IMAGES.glob("*.*"))
NUDENET = ModelEntry(name="nudenet", kind="nudenet", options={"threshold": 0.5})


def _photo(path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def nudenet():
    pytest.importorskip("nudenet")
    pytest.importorskip("onnxruntime")
    from engine.kinds import nudenet

    return nudenet.load(NUDENET, "cpu")


def _variants(photo: Image.Image) -> list[Image.Image]:
    """The photo and shapes that move the padding: mirrored, a tall crop, a wide crop, an odd size."""
    w, h = photo.size
    return [
        photo,
        ImageOps.mirror(photo),
        photo.crop((0, 0, w // 2, h)),
        photo.crop((0, 0, w, h // 2)),
        photo.resize((w * 3 // 4 + 1, h * 2 // 3 + 1)),
    ]


def test_our_runner_gives_nudenets_own_detections(nudenet):
    """Same labels, scores and boxes as nudenet's NudeDetector.detect (its reader decodes BGR PNG bytes)."""
    import cv2
    from nudenet import NudeDetector

    theirs = NudeDetector()
    compared = 0
    for path in PHOTOS:
        for picture in _variants(_photo(path)):
            bgr = cv2.cvtColor(np.asarray(picture), cv2.COLOR_RGB2BGR)
            expected = theirs.detect(bgr)
            ours = nudenet.detect(picture)
            assert [d.label for d in ours] == [e["class"] for e in expected], path.name
            for d, e in zip(ours, expected, strict=True):
                assert d.score == pytest.approx(e["score"], abs=1e-4)
                assert np.abs(np.subtract(d.box, e["box"])).max() <= 1
            compared += len(expected)
    assert compared > 0  # the photos do hold detections (faces): the comparison is not of empty lists


def test_every_fixture_photo_passes_as_safe(nudenet):
    verdicts = nudenet.classify([_photo(path) for path in PHOTOS])
    assert len(verdicts) == len(PHOTOS) >= 4
    assert not any(v.flagged for v in verdicts), verdicts


def test_an_exposed_label_over_the_threshold_flags_and_a_face_does_not(nudenet):
    from engine.kinds.nudenet import Detection

    face = Detection("FACE_FEMALE", 0.95, (0, 0, 10, 10))
    weak = Detection("BUTTOCKS_EXPOSED", 0.3, (0, 0, 10, 10))
    strong = Detection("FEMALE_BREAST_EXPOSED", 0.81, (0, 0, 10, 10))
    assert nudenet.verdict([face]) == Verdict(flagged=False, score=0.0, label="")
    assert nudenet.verdict([face, weak]) == Verdict(flagged=False, score=0.3, label="BUTTOCKS_EXPOSED")
    assert nudenet.verdict([weak, strong, face]) == Verdict(flagged=True, score=0.81, label="FEMALE_BREAST_EXPOSED")


def test_the_shipped_registry_names_nudenet_and_it_runs_here():
    pytest.importorskip("nudenet")
    models = load_models(ROOT / "config" / "models.toml")
    assert models.classifier is not None and models.classifier.kind == "nudenet"
    assert "nudenet" not in models.names()  # a classifier is never a model users pick
    assert registry.check(models.classifier) is None
    safety = Safety.of(models)
    assert safety is not None
    assert not safety.item(_photo(PHOTOS[0])).flagged


def test_a_default_safety_must_be_a_safety_entry():
    with pytest.raises(ValueError, match="safety"):
        parse_models('[defaults]\nsafety = "classic"\n')
    assert parse_models("").classifier is None
    with pytest.raises(ValueError, match="name of a model"):
        parse_models('[models.x]\nkind = "classic"\n[safety.x]\nkind = "nudenet"\n')


def test_a_missing_onnx_file_is_a_clear_reason(tmp_path):
    entry = ModelEntry(name="nn", kind="nudenet", source=str(tmp_path / "gone.onnx"))
    assert registry.check(entry) == "needs weights: gone.onnx not found"


def test_every_frame_of_a_clip_is_looked_at(nudenet):
    photo = _photo(IMAGES / "coffee.png").resize((128, 96))
    stills = [np.asarray(photo)] * 3 + [np.asarray(ImageOps.invert(photo))] * 2
    clip = clips.encode_mp4(stills, fps=5)
    seen = frames(clip)
    assert len(seen) == 5 and seen[0].size == (128, 96)
    assert np.asarray(seen[4]).mean() != pytest.approx(np.asarray(seen[0]).mean(), abs=5)  # the inverted ones
    gif = clips.encode_gif(stills, fps=5)
    looks = frames(gif)  # Pillow merges identical neighbouring frames: the two looks remain
    assert len(looks) == 2 and np.asarray(looks[1]).mean() != pytest.approx(np.asarray(looks[0]).mean(), abs=5)
    assert not Safety(NUDENET).item(clip).flagged


def test_the_worst_frame_stands_for_the_clip():
    calm, unsure, bad = Verdict(False, 0.1), Verdict(False, 0.4, "BUTTOCKS_EXPOSED"), Verdict(True, 0.6, "X")
    assert worst([calm, bad, unsure]) == bad
    assert worst([calm, unsure]) == unsure
    assert worst([]) == Verdict(False)


def _run(safety: Safety | None, action: Action, request: Request, photo: str):
    """One classic job through a real engine with ``safety``, alone on this thread."""
    from engine.runner import Engine

    engine = Engine(parse_models(""), "cpu", safety=safety)
    try:
        data = (IMAGES / photo).read_bytes()
        job = Job(id="safe0000001", action=action, request=request, image=data, origin=Origin("cli", "me"))
        return engine.run_sync(job, lambda step, total: None)
    finally:
        engine.close()


def test_the_engine_writes_a_verdict_on_every_output(nudenet):
    models = parse_models('[defaults]\nsafety = "nudenet"\n[safety.nudenet]\nkind = "nudenet"\n')
    request = Request(prompt="warm film", model="classic", strength=0.5, seed=1, num_images_per_prompt=2)
    result = _run(Safety.of(models), Action.remix, request, "astronaut.png")
    assert result.status is Status.done, result.error
    assert [o.verdict for o in result.outputs] == [Verdict(False, 0.0, "")] * 2


@pytest.mark.parametrize("flag_everything", [True, False])
def test_the_safety_checker_kind_on_tiny_weights(tmp_path, flag_everything):
    pytest.importorskip("diffusers")
    from tests.engine.tiny_safety import build_tiny_safety_checker

    folder = build_tiny_safety_checker(tmp_path / "checker", flag_everything=flag_everything)
    entry = ModelEntry(name="checker", kind="safety-checker", source=str(folder))
    assert registry.check(entry) is None
    verdicts = Safety(entry).pictures([_photo(path) for path in PHOTOS[:2]])
    score = 1.0 if flag_everything else 0.0
    assert verdicts == [Verdict(flag_everything, score, "nsfw concept")] * 2


def test_the_safety_checker_kind_says_what_it_misses(tmp_path):
    pytest.importorskip("diffusers")
    assert "no source" in registry.check(ModelEntry(name="c", kind="safety-checker"))
    (tmp_path / "empty").mkdir()
    entry = ModelEntry(name="c", kind="safety-checker", source=str(tmp_path / "empty"))
    assert registry.check(entry).startswith("needs weights:")


def test_an_animation_is_judged_by_its_worst_frame():
    """The classic Animate's MP4: every frame goes through the scorer; one flagged frame flags the clip."""

    class FlagTheThird:
        label = "flag the third frame"

        def __init__(self):
            self.frames = 0

        def classify(self, pictures):
            verdicts = []
            for _ in pictures:
                self.frames += 1
                verdicts.append(Verdict(self.frames == 3, 0.7 if self.frames == 3 else 0.1, "X"))
            return verdicts

    scorer = FlagTheThird()
    request = Request(prompt="", model="classic", strength=1.0, seed=1, num_frames=6, fps=6)
    result = _run(Safety(NUDENET, scorer=scorer), Action.animate, request, "coffee.png")
    assert result.status is Status.done, result.error
    (clip,) = result.outputs
    assert clip.media_type == "video/mp4"
    assert scorer.frames == len(frames(clips_of(clip))) >= 6
    assert clip.verdict == Verdict(True, 0.7, "X")


def clips_of(output):
    from engine.work import Clip

    return Clip(output.data, output.media_type, output.width, output.height)
