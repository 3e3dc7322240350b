"""Every button under a result — Reroll, Variations (subtle, strong), Upscale, Fix face, Animate,
Original, Before/after, Info, Cancel — on single results and albums, after a restart, and with bad
data; clips (MP4, GIF) and results too big to be photos."""

from __future__ import annotations

from dataclasses import replace

from bot import images
from bot.jobs import Action, Origin, Status
from tests.adapters.telegram.harness import (
    FAST,
    OTHER_MODELS_TOML,
    Harness,
    assert_edited_in_order,
    is_mp4,
    job_of_status,
    models_file,
    new_jobs,
    picture,
    press,
    remix,
    results,
    sheet_size,
    toast,
    wait_final,
    wait_results,
)


async def test_reroll_gives_a_new_seed_with_the_same_settings_and_lineage(bot, fake, alice):
    chat = fake.private(alice)
    _, first_id, result = await remix(fake, chat, alice, "/remix watercolor --strength 0.6")
    said, second_id = await press(fake, alice, result, result.callback("reroll:"))
    assert said.startswith("🔄 Reroll")
    (rerolled,) = await wait_results(fake, chat["id"], second_id)

    first, second = await bot.service.history.job(first_id), await bot.service.history.job(second_id)
    assert second.action is Action.reroll and second.parent_job == first_id
    assert second.request.seed != first.request.seed
    assert replace(second.request, seed=None) == replace(first.request, seed=None)
    history = bot.service.history
    assert history.source_path(second_id).read_bytes() == history.source_path(first_id).read_bytes()
    assert f"seed {second.request.seed}" in rerolled.text and "strength 0.6" in rerolled.text
    # the new job's status and result answer the message whose button was pressed
    assert rerolled.reply_to == result.message_id
    assert (await wait_final(fake, chat["id"], second_id)).reply_to == result.message_id


async def test_variations_upscale_original_and_info(bot, fake, alice, tg_settings):
    chat = fake.private(alice)
    _, job_id, result = await remix(fake, chat, alice, "/remix watercolor --strength 0.6")
    record = await bot.service.history.job(job_id)
    output = record.outputs[0]

    _, subtle_id = await press(fake, alice, result, result.callback("vary:"))
    _, strong_id = await press(fake, alice, result, result.callback("varystrong:"))
    said, upscale_id = await press(fake, alice, result, result.callback("upscale:"))
    assert said.startswith("⬆️ Upscale")
    for new_id in (subtle_id, strong_id, upscale_id):
        await wait_results(fake, chat["id"], new_id)
    subtle, strong = await bot.service.history.job(subtle_id), await bot.service.history.job(strong_id)
    assert subtle.action is Action.vary and subtle.request.strength == tg_settings.vary_strength_subtle
    assert strong.action is Action.vary and strong.request.strength == tg_settings.vary_strength_strong
    assert (subtle.parent_job, subtle.parent_output) == (job_id, 0)
    assert subtle.request.seed != record.request.seed
    (upscaled,) = results(fake, chat["id"], upscale_id)
    assert upscaled.image().size == (output.width * 2, output.height * 2)
    assert "⬆️ ×2" in upscaled.text

    said = await toast(fake, alice, result, result.callback("original:"))
    assert "original" in said.lower()
    (document,) = await fake.wait_for(lambda: fake.replies_to(result, "document"), what="the original file")
    assert document.data == output.path.read_bytes()
    assert document.filename.endswith(".png")
    assert "watercolor" in images.read_parameters(document.data)
    sent = fake.calls_of("sendDocument")[-1].params
    assert sent["disable_content_type_detection"] == "true"

    await toast(fake, alice, result, result.callback("info:"))
    info = await fake.wait_for(
        lambda: [m.text for m in fake.replies_to(result, "text") if m.text.startswith("Job ")], what="info"
    )
    assert f"Job {job_id}" in info[0] and "strength 0.6" in info[0] and "/remix watercolor" in info[0]


async def test_fix_face_and_animate_run_on_the_classic_kind(bot, fake, alice):
    chat = fake.private(alice)
    asked, job_id, result = await remix(fake, chat, alice, "/remix portrait --frames 8 --fps 8")

    said, fix_id = await press(fake, alice, result, result.callback("fixface:"))
    assert said.startswith("🙂 Fix face")
    (fixed_photo,) = await wait_results(fake, chat["id"], fix_id)
    fixed = await bot.service.history.job(fix_id)
    assert fixed.action is Action.fixface and fixed.parent_job == job_id and fixed.status is Status.done
    assert fixed_photo.reply_to == result.message_id
    assert fixed_photo.callback("source:") == f"source:{fix_id}:0"

    said, clip_id = await press(fake, alice, result, result.callback("animate:"))
    assert said.startswith("🎞 Animate")
    (clip,) = await fake.wait_for(lambda: fake.replies_to(result, "animation"), what="the clip")
    record = await bot.service.history.job(clip_id)
    assert record.status is Status.done and record.request.num_frames == 8
    assert is_mp4(clip.data) and clip.data == record.outputs[0].path.read_bytes()
    assert clip.filename.endswith(".mp4") and f"job {clip_id}" in clip.text
    assert clip.callbacks == [f"reroll:{clip_id}", f"original:{clip_id}:0", f"info:{clip_id}", f"delete:{clip_id}"]
    assert "upload_video" in [c.params["action"] for c in fake.calls_of("sendChatAction")]
    assert_edited_in_order(await wait_final(fake, chat["id"], clip_id))

    await toast(fake, alice, clip, f"original:{clip_id}:0")
    (document,) = await fake.wait_for(lambda: fake.replies_to(clip, "document"), what="the clip file")
    assert document.data == clip.data and document.filename.endswith(".mp4")
    # before/after is for pictures: a forged press on the clip is turned down
    refused = await toast(fake, alice, clip, f"source:{clip_id}:0")
    assert "images only" in refused


async def test_before_after_is_a_picture_not_a_job(bot, fake, alice):
    chat = fake.private(alice)
    _, job_id, result = await remix(fake, chat, alice, "/remix sketch", picture(180, 120, seed=6))
    jobs_before = len(await bot.service.jobs(bot_origin(alice, chat), per_page=50))

    said = await toast(fake, alice, result, f"source:{job_id}:0")
    assert said == "↔️ Before / after"
    (sheet,) = await fake.wait_for(lambda: fake.replies_to(result, "photo"), what="the before/after sheet")
    output = (await bot.service.history.job(job_id)).outputs[0]
    assert sheet.image().size == sheet_size([(180, 120)], [(output.width, output.height)])
    assert sheet.text == "↔️ Before / after · classic" and sheet.markup is None
    query = fake.press(alice, result, f"source:{job_id}:3")
    missing = await fake.wait_for(lambda: fake.answer_to(query), what="the answer to a missing image")
    assert "no such image" in missing.params["text"] and missing.params["show_alert"] == "true"
    assert len(await bot.service.jobs(bot_origin(alice, chat), per_page=50)) == jobs_before, "no job made"
    assert len(fake.replies_to(result, "photo")) == 1


async def test_an_action_whose_model_cant_run_here_is_refused_and_gif_clips_animate(fake, tg_settings, tmp_path, alice):
    models = models_file(tmp_path, OTHER_MODELS_TOML, name="other-models.toml")
    harness = Harness(fake, replace(tg_settings, models_path=models))
    await harness.start()
    try:
        chat = fake.private(alice)
        _, job_id, result = await remix(fake, chat, alice, "/remix portrait --frames 6 --fps 6")
        jobs_before = len(await harness.service.jobs(bot_origin(alice, chat), per_page=50))
        query = fake.press(alice, result, result.callback("fixface:"))
        answer = await fake.wait_for(lambda: fake.answer_to(query), what="the fix face answer")
        assert "isn't available on this server" in answer.params["text"] and "motion" in answer.params["text"]
        assert answer.params["show_alert"] == "true"
        assert len(await harness.service.jobs(bot_origin(alice, chat), per_page=50)) == jobs_before

        _, clip_id = await press(fake, alice, result, result.callback("animate:"))
        (clip,) = await fake.wait_for(lambda: fake.replies_to(result, "animation"), what="the GIF")
        record = await harness.service.history.job(clip_id)
        assert record.request.model == "gifs" and record.outputs[0].media_type == "image/gif"
        assert clip.data.startswith(b"GIF8") and clip.filename.endswith(".gif")
        assert clip.data == record.outputs[0].path.read_bytes()
        assert clip.callbacks == [f"reroll:{clip_id}", f"original:{clip_id}:0", f"info:{clip_id}", f"delete:{clip_id}"]
    finally:
        await harness.stop()


async def test_a_result_too_big_for_a_photo_comes_as_a_preview_and_its_file(fake, tg_settings, alice, images_dir):
    """×4 of a 512 px picture is 2048 px: over this server's photo limit (lowered to 2 MB here, as
    if the upscale were over Telegram's 10 MB), so the photo is a preview and the PNG follows."""
    fake.photo_max_bytes = 2 * 1024 * 1024
    harness = Harness(fake, tg_settings, options=replace(FAST, photo_max_bytes=fake.photo_max_bytes))
    await harness.start()
    try:
        chat = fake.private(alice)
        source = (images_dir / "astronaut.png").read_bytes()
        _, job_id, result = await remix(
            fake, chat, alice, "/remix warm --scale 4", document=source, filename="astronaut.png"
        )
        _, upscale_id = await press(fake, alice, result, result.callback("upscale:"))
        (preview,) = await wait_results(fake, chat["id"], upscale_id)
        output = (await harness.service.history.job(upscale_id)).outputs[0]
        assert (output.width, output.height) == (2048, 2048)
        assert output.path.stat().st_size > fake.photo_max_bytes, "the PNG itself is over the photo limit"
        assert len(preview.data) <= fake.photo_max_bytes and preview.image().format == "JPEG"
        assert preview.callback("upscale:") == f"upscale:{upscale_id}:0", "the preview keeps its buttons"
        (document,) = await fake.wait_for(lambda: fake.replies_to(preview, "document"), what="the full file")
        assert document.data == output.path.read_bytes() and document.filename.endswith(".png")
        assert "2048×2048" in document.text
        assert not [c for c in fake.calls if c.method == "sendPhoto" and c.status != 200], "never refused"
    finally:
        await harness.stop()


async def test_several_images_come_as_an_album_then_one_keyboard(bot, fake, alice):
    chat = fake.private(alice)
    asked = fake.send(chat, alice, caption="/remix warm --n 3", photo=picture(128, 96, seed=2))
    (job_id,) = await new_jobs(fake, asked)
    album = await wait_results(fake, chat["id"], job_id, count=3)
    assert [m.media_group_id for m in album] == [album[0].media_group_id] * 3
    assert all(m.markup is None for m in album)  # albums cannot carry keyboards
    assert_edited_in_order(await wait_final(fake, chat["id"], job_id))
    assert [f"#{i}" in m.text for i, m in enumerate(album, 1)] == [True] * 3
    keyboard = await fake.wait_for(
        lambda: [m for m in fake.replies_to(album[0], "text") if m.markup], what="the keyboard message"
    )
    data = keyboard[0].callbacks
    assert data[:2] == [f"reroll:{job_id}", f"info:{job_id}"]
    for index in range(3):
        for action in ("vary", "varystrong", "upscale", "fixface", "animate", "original", "source"):
            assert f"{action}:{job_id}:{index}" in data

    record = await bot.service.history.job(job_id)
    _, upscale_id = await press(fake, alice, keyboard[0], f"upscale:{job_id}:2")
    (upscaled,) = await wait_results(fake, chat["id"], upscale_id)
    child = await bot.service.history.job(upscale_id)
    assert child.parent_output == 2
    third = record.outputs[2]
    assert upscaled.image().size == (third.width * 2, third.height * 2)


async def test_buttons_keep_working_after_a_restart(bot, fake, alice):
    chat = fake.private(alice)
    _, job_id, result = await remix(fake, chat, alice, "/remix noir --strength 0.7")
    await bot.restart()  # a new Application and a new Service over the same data dir
    assert bot.starts == 2

    said, reroll_id = await press(fake, alice, result, result.callback("reroll:"))
    assert said.startswith("🔄")
    (rerolled,) = await wait_results(fake, chat["id"], reroll_id)
    child = await bot.service.history.job(reroll_id)
    assert child.parent_job == job_id and child.request.strength == 0.7
    await toast(fake, alice, result, result.callback("original:"))
    (document,) = await fake.wait_for(lambda: fake.replies_to(result, "document"), what="the original")
    assert document.data == (await bot.service.history.job(job_id)).outputs[0].path.read_bytes()


async def test_every_press_is_answered_even_bad_ones(bot, fake, alice, bob):
    alice_chat, bob_chat = fake.private(alice), fake.private(bob)
    _, bob_job, bob_result = await remix(fake, bob_chat, bob, "/remix a secret")
    _, alice_job, alice_result = await remix(fake, alice_chat, alice, "/remix warm")

    expired = await toast(fake, alice, alice_result, "bogus:data")
    assert "expired" in expired
    gone = await toast(fake, alice, alice_result, "reroll:000000000000")
    assert "isn't available here" in gone
    # a forged press on Bob's private job, from Alice's chat, reaches nothing of Bob's
    forged = await toast(fake, alice, alice_result, f"original:{bob_job}:0")
    assert "isn't available here" in forged
    assert fake.replies_to(alice_result, "document") == []
    no_index = await toast(fake, alice, alice_result, f"upscale:{alice_job}:7")
    assert "isn't ready" in no_index or "no such image" in no_index

    queries = [c.params["callback_query_id"] for c in fake.calls_of("answerCallbackQuery")]
    assert len(queries) == len(set(queries)) == 4


async def test_other_people_can_reroll_in_a_group_but_not_cancel(bot, fake, alice, bob):
    group = fake.group()
    asked, job_id, result = await remix(fake, group, alice, "/remix vivid")
    _, bobs_id = await press(fake, bob, result, result.callback("reroll:"))
    await wait_results(fake, group["id"], bobs_id)
    bobs = await bot.service.history.job(bobs_id)
    assert bobs.origin.user_id == str(bob["id"]) and bobs.parent_job == job_id

    status = next(m for m in fake.replies_to(asked, "text") if job_of_status(m) == job_id)
    refused = await toast(fake, bob, status, f"cancel:{job_id}")
    assert "Only the person who asked for that job can cancel it" in refused


def bot_origin(user: dict, chat: dict) -> Origin:
    return Origin(platform="telegram", user_id=str(user["id"]), chat_id=str(chat["id"]))
