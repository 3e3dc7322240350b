"""A1111 prompt syntax through compel on the tiny SD and SDXL pipelines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("compel")

from bot.jobs import Action, Request  # noqa: E402
from bot.models import ModelEntry  # noqa: E402
from engine.kinds import img2img, prompts  # noqa: E402
from engine.work import UserFacingError, Work  # noqa: E402
from tests.engine.tiny_sdxl import build_tiny_sdxl  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG = ", ".join(f"detail number {n}" for n in range(14))  # over 200 tokens with the tiny BPE


def entry_for(path: Path, name: str = "tiny") -> ModelEntry:
    return ModelEntry(
        name=name,
        kind="diffusers-img2img",
        source=str(path),
        strength=0.6,
        num_inference_steps=5,
        guidance_scale=7.0,
        size=64,
        multiple=8,
    )


@pytest.fixture(scope="module")
def sd(tiny_sd):
    return img2img.load(entry_for(tiny_sd), "cpu")


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    folder = build_tiny_sdxl(tmp_path_factory.mktemp("tiny_xl") / "sdxl")
    return img2img.load(entry_for(folder, "tiny-xl"), "cpu")


def embeds(pipe, prompt: str, negative: str = "") -> dict:
    return prompts.call_kwargs(pipe, [prompt], [negative])


def token_count(pipe, text: str) -> int:
    return len(pipe.tokenizer(text)["input_ids"])


def test_a_prompt_without_syntax_gives_diffusers_own_embeddings(sd):
    for prompt, negative in (("a watercolor cup of coffee", ""), ("the harbor at dawn", "blurry, text")):
        ours = embeds(sd.pipe, prompt, negative)
        theirs, negative_theirs = sd.pipe.encode_prompt(prompt, "cpu", 1, True, negative or None)
        assert ours["prompt_embeds"].shape == theirs.shape == (1, 77, 32)
        torch.testing.assert_close(ours["prompt_embeds"], theirs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours["negative_prompt_embeds"], negative_theirs, atol=1e-5, rtol=1e-5)


def test_sdxl_without_syntax_gives_diffusers_own_embeddings(sdxl):
    for prompt, negative in (("a watercolor cup of coffee", ""), ("the harbor at dawn", "blurry, text")):
        ours = embeds(sdxl.pipe, prompt, negative)
        theirs = sdxl.pipe.encode_prompt(prompt, device="cpu", negative_prompt=negative or None)
        names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
        for name, tensor in zip(names, theirs, strict=True):
            assert ours[name].shape == tensor.shape, name
            torch.testing.assert_close(ours[name], tensor, atol=1e-5, rtol=1e-5)
    assert ours["prompt_embeds"].shape == (1, 77, 64)  # both encoders side by side


def test_an_upweighted_word_moves_away_from_the_empty_prompt_and_nothing_else_moves(sd):
    plain = embeds(sd.pipe, "a cat on a mat")["prompt_embeds"][0]
    strong = embeds(sd.pipe, "a (cat:1.5) on a mat")["prompt_embeds"][0]
    nested = embeds(sd.pipe, "a ((cat)) on a mat")["prompt_embeds"][0]
    empty = embeds(sd.pipe, "")["prompt_embeds"][0]
    changed = (plain - strong).abs().amax(dim=-1) > 1e-6
    cat = int(changed.nonzero()[0])
    assert changed.sum() == token_count(sd.pipe, "cat") - 2  # only the word's own tokens
    distance = float((plain[cat] - empty[cat]).norm())
    assert float((strong[cat] - empty[cat]).norm()) == pytest.approx(1.5 * distance, rel=1e-4)
    assert float((nested[cat] - empty[cat]).norm()) == pytest.approx(1.21 * distance, rel=1e-4)


def test_a_downweighted_word_moves_towards_the_prompt_without_it(sd):
    plain = embeds(sd.pipe, "a cat on a mat")["prompt_embeds"]
    half = embeds(sd.pipe, "a (cat:0.5) on a mat")["prompt_embeds"]
    gone = embeds(sd.pipe, "a (cat:0) on a mat")["prompt_embeds"]
    square = embeds(sd.pipe, "a [cat] on a mat")["prompt_embeds"]
    assert 0 < (half - gone).norm() < (plain - gone).norm()
    assert 0 < (square - plain).norm() < (half - plain).norm()  # ÷1.1 is a gentler push than ×0.5


def test_escaped_brackets_are_words_not_weights(sd):
    escaped = embeds(sd.pipe, r"a \(cat\) on a mat")["prompt_embeds"]
    literal = sd.pipe.encode_prompt("a (cat) on a mat", "cpu", 1, False)[0]
    torch.testing.assert_close(escaped, literal, atol=1e-5, rtol=1e-5)


def test_a_200_token_prompt_is_chunked_not_truncated(sd):
    assert token_count(sd.pipe, LONG) > 200
    long = embeds(sd.pipe, LONG, "blurry")
    assert long["prompt_embeds"].shape[1] % 77 == 0 and long["prompt_embeds"].shape[1] >= 77 * 3
    assert long["negative_prompt_embeds"].shape == long["prompt_embeds"].shape  # padded to the same length
    # The words past the first 77 tokens are read: changing the last one changes the embeddings.
    other = embeds(sd.pipe, LONG.replace("number 13", "number 12"), "blurry")
    assert not torch.allclose(long["prompt_embeds"][:, 77:], other["prompt_embeds"][:, 77:])
    torch.testing.assert_close(long["prompt_embeds"][:, :77], other["prompt_embeds"][:, :77])


def test_break_starts_a_new_chunk(sd):
    both = embeds(sd.pipe, "a cat BREAK a dog")["prompt_embeds"]
    assert both.shape[1] == 154
    torch.testing.assert_close(both[:, :77], embeds(sd.pipe, "a cat")["prompt_embeds"])
    torch.testing.assert_close(both[:, 77:], embeds(sd.pipe, "a dog")["prompt_embeds"])


def test_sdxl_weights_long_prompts_and_pooled(sdxl):
    plain = embeds(sdxl.pipe, "a cat on a mat")
    weighted = embeds(sdxl.pipe, "a (cat:1.4) on a mat")
    assert not torch.allclose(plain["prompt_embeds"], weighted["prompt_embeds"])
    # The pooled embedding is of the words: the weight syntax does not leak into it.
    torch.testing.assert_close(plain["pooled_prompt_embeds"], weighted["pooled_prompt_embeds"])
    long = embeds(sdxl.pipe, LONG)
    assert long["prompt_embeds"].shape[1] >= 77 * 3 and long["prompt_embeds"].shape[2] == 64
    assert not long["negative_prompt_embeds"].any()  # an empty negative is zeros, as in diffusers


def work_for(model_entry: ModelEntry, prompt: str, negative: str = "", seeds=(3,)) -> Work:
    return Work(
        action=Action.remix,
        request=Request(prompt=prompt, model=model_entry.name, strength=0.6, negative_prompt=negative, seed=seeds[0]),
        entry=model_entry,
        image=Image.new("RGB", (64, 64), (150, 90, 60)),
        references=(),
        seeds=tuple(seeds),
        device="cpu",
    )


def test_runs_a_plain_prompt_as_diffusers_would(sd, tiny_sd):
    work = work_for(entry_for(tiny_sd), "a watercolor cup of coffee")
    ours = np.asarray(sd.run(work, lambda s, t: None)[0])
    direct = sd.pipe(
        prompt="a watercolor cup of coffee",
        image=work.image,
        strength=0.6,
        num_inference_steps=5,
        guidance_scale=7.0,
        generator=torch.Generator().manual_seed(3),
        output_type="pil",
    ).images[0]
    assert np.abs(ours.astype(int) - np.asarray(direct).astype(int)).max() <= 1


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_runs_weighted_long_and_break_prompts_in_one_batch(which, request, tiny_sd):
    model = request.getfixturevalue(which)
    model_entry = entry_for(tiny_sd, "tiny")
    works = [
        work_for(model_entry, "(masterpiece:1.2), a [cat] BREAK on a mat", seeds=(1,)),
        work_for(model_entry, LONG, negative="blurry, (text:1.3)", seeds=(2,)),
        work_for(model_entry, "a cat", seeds=(1,)),
    ]
    outcomes = model.run_batch(works, lambda s, t: None)
    for outcome in outcomes:
        assert isinstance(outcome, list) and outcome[0].size == (64, 64)
    assert not np.array_equal(np.asarray(outcomes[0][0]), np.asarray(outcomes[2][0]))  # weights mattered


def test_too_many_weighted_parts_is_a_user_facing_error(sd):
    with pytest.raises(UserFacingError, match="weighted parts"):
        embeds(sd.pipe, " ".join(f"(w{n}:1.2) x" for n in range(30)))


def test_a_weighted_fragment_with_no_tokens_is_harmless(sd):
    torch.testing.assert_close(
        embeds(sd.pipe, "a cat [ ] on a mat")["prompt_embeds"], embeds(sd.pipe, "a cat   on a mat")["prompt_embeds"]
    )
