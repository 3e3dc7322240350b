"""Every way into a remix: captioned photo, image file, /remix@Bot in a group, replies (to a
user's picture, to the bot's result), plain captions in private, albums, and the refusals."""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageStat

from bot.actions import BUTTON_PATTERN
from bot.jobs import Status
from tests.adapters.telegram.fake_server import BOT_USERNAME
from tests.adapters.telegram.harness import (
    assert_edited_in_order,
    new_jobs,
    picture,
    remix,
    sheet_size,
    status_message,
    wait_final,
    wait_results,
)

RESULT_BUTTONS = (
    "reroll:{j}",
    "vary:{j}:0",
    "varystrong:{j}:0",
    "upscale:{j}:0",
    "fixface:{j}:0",
    "animate:{j}:0",
    "original:{j}:0",
    "source:{j}:0",
    "info:{j}",
    "more:{j}:0",
    "delete:{j}",
)


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def test_captioned_photo_comes_back_remixed_with_keyboard(bot, fake, alice, images_dir):
    chat = fake.private(alice)
    source = (images_dir / "chelsea.png").read_bytes()
    asked, job_id, result = await remix(fake, chat, alice, "/remix watercolor --strength 0.6", source)

    record = await bot.service.history.job(job_id)
    assert record.status is Status.done
    request = record.request
    assert (request.prompt, request.strength, request.model) == ("watercolor", 0.6, "classic")
    assert record.origin.user_id == str(alice["id"]) and record.origin.chat_id == str(chat["id"])
    # the largest photo size was used, not Telegram's thumbnail
    assert size_of(bot.service.history.source_path(job_id).read_bytes()) == (451, 300)

    # the result: a real picture of the output's size, answering the user's message
    output = record.outputs[0]
    shown = result.image()
    assert shown.format in ("PNG", "JPEG") and shown.size == (output.width, output.height)
    before = Image.open(io.BytesIO(source)).convert("RGB").resize(shown.size)
    assert ImageStat.Stat(ImageChops.difference(shown.convert("RGB"), before)).mean[0] > 2  # remixed
    assert result.reply_to == asked.message_id
    assert "watercolor" in result.text and "strength 0.6" in result.text
    assert f"seed {output.seed}" in result.text
    assert "classic" in result.text and f"job {job_id}" in result.text
    assert result.callbacks == [b.format(j=job_id) for b in RESULT_BUTTONS]
    assert all(BUTTON_PATTERN.match(d) and len(d.encode()) <= 64 for d in result.callbacks)

    # the status message answered at once, was edited in place to done, and lost its Cancel button
    status = await wait_final(fake, chat["id"], job_id)
    assert status.reply_to == asked.message_id
    assert status.sent_text == "⏳ Queued — position 1"
    assert status.text.startswith("✅ Done") and status.markup is None
    assert any(text.startswith("🎨 Rendering") for text in status.edits)
    assert_edited_in_order(status)
    assert record.status_message == f"{chat['id']}:{status.message_id}"
    actions = [c.params for c in fake.calls_of("sendChatAction")]
    assert {"chat_id": str(chat["id"]), "action": "upload_photo"}.items() <= actions[0].items()


async def test_image_sent_as_a_file_is_used_at_full_quality(bot, fake, alice, images_dir):
    chat = fake.private(alice)
    data = (images_dir / "rocket.jpg").read_bytes()
    asked, job_id, result = await remix(
        fake, chat, alice, "/remix warm", document=data, filename="rocket.jpg", mime_type="image/jpeg"
    )
    assert size_of(bot.service.history.source_path(job_id).read_bytes()) == (640, 427)
    assert result.reply_to == asked.message_id


async def test_group_command_addressed_to_this_bot_only(bot, fake, alice):
    group = fake.group()
    other = fake.send(group, alice, caption="/remix@SomeOtherBot noir", photo=picture(seed=1))
    asked, job_id, result = await remix(fake, group, alice, f"/remix@{BOT_USERNAME} noir", picture(seed=2))
    assert result.chat_id == group["id"] and result.reply_to == asked.message_id
    assert fake.replies_to(other) == []
    downloaded = {c.params["file_id"] for c in fake.calls_of("getFile")}
    assert other.raw["photo"][-1]["file_id"] not in downloaded


async def test_reply_remix_to_a_picture_in_a_group(bot, fake, alice, bob):
    group = fake.group()
    # privacy mode: the bot never sees a plain photo in a group…
    photo = fake.send(group, bob, photo=picture(200, 150, seed=3), push=False)
    # …but it sees the command that replies to it
    asked = fake.send(group, alice, text="/remix vintage --seed 5", reply_to=photo)
    (job_id,) = await new_jobs(fake, asked)
    (result,) = await wait_results(fake, group["id"], job_id)
    record = await bot.service.history.job(job_id)
    assert record.request.seed == 5 and record.parent_job is None
    assert record.origin.user_id == str(alice["id"])
    assert size_of(bot.service.history.source_path(job_id).read_bytes()) == (200, 150)
    assert result.reply_to == asked.message_id


async def test_replies_to_a_result_continue_its_lineage_from_the_lossless_file(bot, fake, alice):
    group = fake.group()
    _, first_id, result = await remix(fake, group, alice, "/remix watercolor", picture(seed=4))
    first = await bot.service.history.job(first_id)
    result_file = result.raw["photo"][-1]["file_id"]

    command = fake.send(group, alice, text="/remix sketch --strength 0.3", reply_to=result)
    (second_id,) = await new_jobs(fake, command)
    await wait_results(fake, group["id"], second_id)
    second = await bot.service.history.job(second_id)
    assert (second.parent_job, second.parent_output) == (first_id, 0)
    assert second.request.prompt == "sketch" and second.request.strength == 0.3
    source = Image.open(bot.service.history.source_path(second_id))
    assert source.tobytes() == Image.open(first.outputs[0].path).convert("RGB").tobytes()

    # a plain text reply to the bot's result works too (groups deliver replies to the bot)
    words = fake.send(group, alice, text="make it cinematic", reply_to=result)
    (third_id,) = await new_jobs(fake, words)
    await wait_results(fake, group["id"], third_id)
    third = await bot.service.history.job(third_id)
    assert third.parent_job == first_id and third.request.prompt == "make it cinematic"
    # never fetched from Telegram: the history has the original
    assert result_file not in {c.params["file_id"] for c in fake.calls_of("getFile")}


async def test_plain_captions_in_private_chats(bot, fake, alice):
    chat = fake.private(alice)
    asked, job_id, _ = await remix(fake, chat, alice, "oil painting --seed 7", picture(seed=5))
    record = await bot.service.history.job(job_id)
    assert record.request.prompt == "oil painting" and record.request.seed == 7

    bare = fake.send(chat, alice, photo=picture(seed=6))
    (hint,) = await fake.wait_for(lambda: fake.replies_to(bare), what="a hint for a photo without caption")
    assert "caption" in hint.text
    text = fake.send(chat, alice, text="hello there")
    (howto,) = await fake.wait_for(lambda: fake.replies_to(text), what="a how-to")
    assert "/remix" in howto.text


async def test_plain_caption_in_a_group_is_not_a_request(bot, fake, alice):
    group = fake.group()
    ignored = fake.send(group, alice, caption="oil painting", photo=picture(seed=7))
    asked, _, _ = await remix(fake, group, alice, "/remix oil painting", picture(seed=8))
    assert fake.replies_to(ignored) == []


async def test_album_first_picture_is_the_source_and_the_rest_references(bot, fake, alice):
    chat = fake.private(alice)
    pictures = [picture(160, 120, seed=1), picture(120, 160, seed=2), picture(100, 100, seed=3)]
    messages = fake.album(chat, alice, pictures, "/remix cartoon --strength 0.5")
    (job_id,) = await new_jobs(fake, messages[0])
    await wait_results(fake, chat["id"], job_id)
    job = await bot.service.history.load_job(job_id)
    assert len(job.references) == 2
    assert size_of(job.image) == (160, 120)
    assert [size_of(r) for r in job.references] == [(120, 160), (100, 100)]
    assert job.request.prompt == "cartoon"


async def test_album_of_image_files_with_the_command_on_a_later_item(bot, fake, alice):
    group = fake.group()
    pictures = [picture(150, 100, seed=4), picture(100, 150, seed=5)]
    first, second = fake.album(group, alice, pictures, "/remix noir", caption_on=1, as_documents=True)
    (job_id,) = await new_jobs(fake, second)
    job = await bot.service.history.load_job(job_id)
    assert size_of(job.image) == (150, 100) and [size_of(r) for r in job.references] == [(100, 150)]


async def test_too_many_pictures_in_an_album_is_refused_kindly(bot, fake, alice):
    chat = fake.private(alice)
    messages = fake.album(chat, alice, [picture(seed=i) for i in range(5)], "/remix warm")
    (reply,) = await fake.wait_for(lambda: fake.replies_to(messages[0]), what="a refusal")
    assert reply.text.startswith("⚠️") and "reference" in reply.text
    assert await bot.service.jobs(bot_origin(alice, chat)) == []


async def test_remix_without_a_picture_explains_how(bot, fake, alice):
    chat = fake.private(alice)
    bare = fake.send(chat, alice, text="/remix")
    (howto,) = await fake.wait_for(lambda: fake.replies_to(bare), what="the how-to")
    assert "caption" in howto.text and "/remix watercolor --strength 0.6" in howto.text

    note = fake.send(chat, alice, text="just words")
    await fake.wait_for(lambda: fake.replies_to(note), what="the nudge")
    reply = fake.send(chat, alice, text="/remix watercolor", reply_to=note)
    (answer,) = await fake.wait_for(lambda: fake.replies_to(reply), what="no picture")
    assert "no picture" in answer.text


async def test_files_over_the_download_limit_are_refused_before_downloading(bot, fake, alice):
    chat = fake.private(alice)
    big_file = fake.send(chat, alice, caption="/remix warm", document=picture(), file_size=25 * 1024 * 1024)
    big_photo = fake.send(chat, alice, caption="/remix warm", photo=picture(), file_size=21 * 1024 * 1024)
    for asked, size in ((big_file, "25 MB"), (big_photo, "21 MB")):
        (reply,) = await fake.wait_for(lambda a=asked: fake.replies_to(a), what="a refusal")
        assert reply.text.startswith("⚠️") and size in reply.text and "20 MB" in reply.text
    assert fake.calls_of("getFile") == []


async def test_edited_messages_are_not_acted_on(bot, fake, alice):
    chat = fake.private(alice)
    edited = fake.send(chat, alice, caption="/remix warm", photo=picture(), push=False)
    fake.push({"edited_message": dict(edited.raw, edit_date=edited.raw["date"] + 1)})
    asked, _, _ = await remix(fake, chat, alice, "/remix cool", picture(seed=9))
    assert fake.replies_to(edited) == []
    assert edited.raw["photo"][-1]["file_id"] not in {c.params["file_id"] for c in fake.calls_of("getFile")}


def bot_origin(user: dict, chat: dict):
    from bot.jobs import Origin

    return Origin(platform="telegram", user_id=str(user["id"]), chat_id=str(chat["id"]))


async def test_compare_posts_each_result_then_one_sheet_of_them_all(bot, fake, alice):
    chat = fake.private(alice)
    refused = fake.send(chat, alice, caption="/remix warm --compare dreamy,motion", photo=picture(seed=3))
    (answer,) = await fake.wait_for(lambda: fake.replies_to(refused, "text"), what="the refusal")
    assert "motion isn't available" in answer.text and "no-such-kind" in answer.text  # all or none
    asked = fake.send(chat, alice, caption="/remix warm --compare dreamy", photo=picture(seed=3))
    classic_id, dreamy_id = await new_jobs(fake, asked, count=2)
    for job_id, model in ((classic_id, "classic"), (dreamy_id, "dreamy")):
        (result,) = await wait_results(fake, chat["id"], job_id)
        assert model in result.text and result.callback("source:") == f"source:{job_id}:0"
    assert (await wait_final(fake, chat["id"], dreamy_id)).sent_text == "dreamy · ⏳ Queued"

    def sheets_sent():
        return [m for m in fake.bot_messages(chat["id"], "photo") if m.text.startswith("Compare:")]

    (sheet,) = await fake.wait_for(sheets_sent, what="the compare sheet")
    for job_id in (classic_id, dreamy_id):
        await wait_final(fake, chat["id"], job_id)
    assert sheets_sent() == [sheet], "one sheet for the set, whichever job finished last"
    assert sheet.text == "Compare: classic · dreamy"
    assert sheet.reply_to == status_message(fake, chat["id"], classic_id).message_id
    classic, dreamy = [await bot.service.history.job(job_id) for job_id in (classic_id, dreamy_id)]
    sizes = [[(o.width, o.height) for o in record.outputs] for record in (classic, dreamy)]
    assert sheet.image().size == sheet_size(*sizes)
    assert sheet.markup is None and f"job {classic_id}" not in sheet.text


async def test_show_source_adds_a_before_after_sheet_per_image(bot, fake, alice):
    chat = fake.private(alice)
    asked = fake.send(chat, alice, caption="/remix noir --show-source --n 2", photo=picture(200, 120, seed=4))
    (job_id,) = await new_jobs(fake, asked)
    album = await wait_results(fake, chat["id"], job_id, count=2)
    assert album[0].media_group_id == album[1].media_group_id and len(album) == 2, "no source in the album"

    def before_afters():
        found = [m for m in fake.replies_to(asked, "photo") if m.text.startswith("↔️ Before / after")]
        return found if len(found) == 2 else None

    first, second = await fake.wait_for(before_afters, what="two before/after sheets")
    assert (first.text, second.text) == ("↔️ Before / after #1 · classic", "↔️ Before / after #2 · classic")
    record = await bot.service.history.job(job_id)
    for sheet, output in zip((first, second), record.outputs, strict=True):
        assert sheet.image().size == sheet_size([(200, 120)], [(output.width, output.height)])
        assert sheet.media_group_id is None and sheet.markup is None


async def test_a_model_that_cannot_run_here_is_refused_before_it_is_queued(bot, fake, alice):
    chat = fake.private(alice)
    broken = fake.send(chat, alice, caption="/remix warm --model motion", photo=picture(seed=5))
    (answer,) = await fake.wait_for(lambda: fake.replies_to(broken, "text"), what="the refusal")
    assert answer.text.startswith("⚠️ The model motion isn't available") and "no-such-kind" in answer.text
    assert fake.replies_to(broken, "photo") == [] and await bot.service.jobs(_origin(alice)) == []


def _origin(user: dict):
    from bot.jobs import Origin

    return Origin("telegram", str(user["id"]))


async def test_a_picture_with_settings_offers_to_reuse_them(bot, fake, alice):
    chat = fake.private(alice)
    _, job_id, _ = await remix(fake, chat, alice, "/remix watercolor --strength 0.45 --seed 11")
    original = (await bot.service.history.job(job_id)).outputs[0].path.read_bytes()
    asked = fake.send(chat, alice, caption="/remix cool", document=original, filename="remix.png")
    offer = await fake.wait_for(
        lambda: [m.text for m in fake.replies_to(asked, "text") if m.text.startswith("💡")], what="the offer"
    )
    assert "/remix watercolor --model classic --strength 0.45 --seed 11" in offer[0]
