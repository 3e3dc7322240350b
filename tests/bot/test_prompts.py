"""Reading AUTOMATIC1111's prompt syntax (no torch)."""

from __future__ import annotations

import pytest

from bot.prompts import MAX_WEIGHTED, Fragment, check_prompt, describe_prompt, parse_prompt, uses_syntax


def weights(text: str) -> list[list[tuple[str, float]]]:
    return [[(f.text, round(f.weight, 3)) for f in segment] for segment in parse_prompt(text)]


def test_plain_text_is_one_fragment_of_weight_one():
    assert parse_prompt("a cat: on a mat, 4k") == ((Fragment("a cat: on a mat, 4k"),),)
    assert parse_prompt("") == ((Fragment(""),),)
    assert not uses_syntax(parse_prompt("a cat: on a mat"))
    assert describe_prompt("a cat on a mat") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(masterpiece:1.2), a cat", [[("masterpiece", 1.2), (", a cat", 1.0)]]),
        ("a (cat)", [[("a ", 1.0), ("cat", 1.1)]]),
        ("a ((cat))", [[("a ", 1.0), ("cat", 1.21)]]),
        ("a [cat]", [[("a ", 1.0), ("cat", 0.909)]]),
        ("a [[cat]]", [[("a ", 1.0), ("cat", 0.826)]]),
        ("((a:1.5) b)", [[("a", 1.65), (" b", 1.1)]]),  # nesting multiplies
        ("(a:0.5) (b: 1.3 )", [[("a", 0.5), (" ", 1.0), ("b", 1.3)]]),
        (r"\(a\) \[b\] c\\d", [[(r"(a) [b] c\d", 1.0)]]),  # escaped brackets are text
        ("(a) (b)", [[("a", 1.1), (" ", 1.0), ("b", 1.1)]]),
        ("(a)(b)", [[("ab", 1.1)]]),  # neighbours of equal weight merge
        ("(a:99)", [[("a", 3.0)]]),  # clamped
        ("(a:-1)", [[("a", 0.0)]]),
        ("(a:0)", [[("a", 0.0)]]),
    ],
)
def test_attention_weights(text, expected):
    assert weights(text) == expected


def test_unbalanced_and_crossing_brackets_read_like_a1111():
    assert weights("a (cat") == [[("a ", 1.0), ("cat", 1.1)]]  # unclosed: weighs to the end
    assert weights("a cat) b]") == [[("a cat) b]", 1.0)]]  # a stray closer is text
    assert weights("x:1.3) y") == [[("x:1.3) y", 1.0)]]  # a weight with no bracket open is text
    assert weights("(x:1.2.3)") == [[("x:1.2.3)", 1.1)]]  # not a number: text
    assert weights("a (b [c) d]") == [[("a ", 1.0), ("b ", 1.1), ("c d]", 1.0)]]  # crossing: closes in order


def test_break_splits_segments():
    assert weights("a cat BREAK (a dog:1.2)") == [[("a cat", 1.0)], [("a dog", 1.2)]]
    assert weights("a (cat BREAK dog)") == [[("a ", 1.0), ("cat", 1.1)], [("dog", 1.1)]]
    assert weights("BREAKFAST break") == [[("BREAKFAST break", 1.0)]]  # only the capital word
    assert uses_syntax(parse_prompt("a BREAK b"))


def test_describe_shows_the_explicit_weights():
    assert describe_prompt("((cat)), [dog] BREAK \\(x\\) (y:1.3)") == r"(cat:1.21), (dog:0.9091) BREAK \(x\) (y:1.3)"
    # What it shows reads back to the same weights.
    shown = describe_prompt("a ((cat)) on [a] mat")
    assert shown is not None and weights(shown) == weights("a ((cat)) on [a] mat")


def test_deep_nesting_and_long_prompts_are_linear_and_safe():
    deep = "(" * 50_000 + "x" + ")" * 50_000
    assert weights(deep) == [[("x", 3.0)]]
    many = "(a) " * 20_000
    assert len(parse_prompt(many)[0]) == 40_000


def test_check_prompt_caps_the_weighted_parts():
    assert check_prompt("(a) b " * MAX_WEIGHTED) is None
    reason = check_prompt("(a) b " * (MAX_WEIGHTED + 1))
    assert reason == f"The prompt has {MAX_WEIGHTED + 1} weighted parts; up to {MAX_WEIGHTED} are allowed."
