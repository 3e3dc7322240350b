"""bot.text: what users and files say, made safe to parse and to echo."""

from __future__ import annotations

from bot.text import hide_paths, neutral


def test_escape_sequences_and_control_characters_go() -> None:
    hostile = "\x1b[2J\x1b[31mred\x1b[0m\x07 cat\x1b]0;pwned\x07\x9b31m\x00\x08!"
    assert neutral(hostile) == "red cat!"


def test_format_characters_go_but_line_breaks_and_tabs_stay() -> None:
    assert neutral("--n\u200b 4\u202e\ufeff") == "--n 4"
    assert neutral("line one\r\nline\ttwo") == "line one\nline\ttwo"


def test_ordinary_text_is_untouched() -> None:
    text = "a café in Kyoto, 夜景 🌃 --strength 0.6"
    assert neutral(text) is text


def test_absolute_paths_are_cut_to_their_last_part() -> None:
    reason = "weights not found at /home/op/models/sd-turbo.safetensors (see C:\\models\\x.ckpt or ~/w/y.bin)"
    assert hide_paths(reason) == "weights not found at sd-turbo.safetensors (see x.ckpt or y.bin)"


def test_what_is_not_a_path_stays() -> None:
    text = "needs 1/2 of the GPU; see https://example.org/docs and ratio 16:9"
    assert hide_paths(text) == text
