"""The commands: /start, /help, /models, /settings (with its keyboard), /history (thumbnails,
paging, remix again), /cancel, /info — and the command menu registered with setMyCommands."""

from __future__ import annotations

import io

from PIL import Image

from bot.jobs import Action
from tests.adapters.telegram.fake_server import BOT_USERNAME
from tests.adapters.telegram.harness import new_jobs, picture, press, remix, toast, wait_results


async def said(fake, chat, user, text: str) -> str:
    """Send ``text``; the bot's text reply to it."""
    asked = fake.send(chat, user, text=text)
    replies = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what=f"a reply to {text}")
    return replies[0].text


async def test_command_menu_start_and_help(bot, fake, alice):
    (menu,) = [call for call in fake.calls_of("setMyCommands") if "scope" not in call.params]
    assert [c["command"] for c in menu.params["commands"]] == [
        "remix",
        "help",
        "models",
        "styles",
        "loras",
        "settings",
        "history",
        "cancel",
        "info",
        "forget",
    ]
    chat = fake.private(alice)
    welcome = await said(fake, chat, alice, "/start")
    assert "/remix watercolor --strength 0.6" in welcome and "--seed 42" in welcome
    assert "📄 Original" in welcome
    assert await said(fake, chat, alice, "/help") == welcome
    assert await said(fake, fake.group(), alice, f"/help@{BOT_USERNAME}") == welcome
    assert "/help" in await said(fake, chat, alice, "/frobnicate")


async def test_models_one_line_each_with_what_is_unavailable(bot, fake, alice):
    text = await said(fake, fake.private(alice), alice, "/models")
    lines = text.splitlines()[1:]
    assert len(lines) == 3
    assert lines[0].startswith("✅ classic (default): No weights")
    assert lines[1].startswith("✅ dreamy:")
    assert lines[2].startswith("🚫 motion:") and "unavailable" in lines[2] and "no-such-kind" in lines[2]


async def test_settings_are_changed_with_buttons_and_saved_per_user(bot, fake, alice, bob):
    chat = fake.private(alice)
    asked = fake.send(chat, alice, text="/settings")
    (panel,) = await fake.wait_for(lambda: fake.replies_to(asked, "text"), what="the settings panel")
    assert "model: classic" in panel.text and "the model's default (0.6)" in panel.text
    assert "set:model:dreamy" in panel.callbacks and "set:strength:0.3" in panel.callbacks
    assert "set:n:4" in panel.callbacks and "set:n:5" not in panel.callbacks
    assert all(len(d.encode()) <= 64 for d in panel.callbacks)

    assert await toast(fake, alice, panel, "set:model:dreamy") == "Saved: model dreamy"
    assert await toast(fake, alice, panel, "set:strength:0.3") == "Saved: strength 0.3"
    assert await toast(fake, alice, panel, "set:n:2") == "Saved: n 2"
    await fake.wait_for(lambda: "images per request: 2" in panel.text, what="the panel edited")
    assert "model: dreamy" in panel.text and "strength: 0.3" in panel.text
    assert "✓ dreamy" in [b["text"] for b in panel.buttons]

    # the next request uses them (two images: an album)
    photo = fake.send(chat, alice, caption="/remix warm", photo=picture())
    (job_id,) = await new_jobs(fake, photo)
    await wait_results(fake, chat["id"], job_id, count=2)
    record = await bot.service.history.job(job_id)
    request = record.request
    assert (request.model, request.strength, request.num_images_per_prompt) == ("dreamy", 0.3, 2)

    # flags still win, and Bob's defaults are his own
    _, flagged, _ = await remix(fake, chat, alice, "/remix warm --strength 0.8 --n 1")
    assert (await bot.service.history.job(flagged)).request.strength == 0.8
    assert "model: classic" in await said(fake, fake.private(bob), bob, "/settings")

    assert await toast(fake, alice, panel, "set:strength:default") == "Saved: strength default"
    assert (await bot.service.user_settings(record.origin)).strength is None
    refused = await toast(fake, alice, panel, "set:model:nonexistent")
    assert "no model called" in refused


async def test_history_pages_thumbnails_and_remix_again(bot, fake, alice, bob):
    chat = fake.private(alice)
    jobs = [(await remix(fake, chat, alice, f"/remix warm take {i}", picture(seed=i)))[1] for i in range(6)]
    await remix(fake, fake.private(bob), bob, "/remix bob's own")

    asked = fake.send(chat, alice, text="/history")
    listing = await fake.wait_for(
        lambda: [m for m in fake.replies_to(asked, "text") if m.markup], what="the history list"
    )
    thumbs = [m for m in fake.replies_to(asked, "photo")]
    assert len(thumbs) == 5 and len({m.media_group_id for m in thumbs}) == 1
    assert all(max(Image.open(io.BytesIO(m.data)).size) <= 320 for m in thumbs)
    text = listing[0].text
    assert "take 5" in text and "take 1" in text and "take 0" not in text and "bob" not in text
    assert [b["callback_data"] for b in listing[0].buttons] == (
        [f"reroll:{j}" for j in reversed(jobs[1:])] + ["hist:1"]
    )

    query = fake.press(alice, listing[0], "hist:1")
    older = await fake.wait_for(lambda: [m for m in fake.replies_to(listing[0], "text") if m.markup], what="page 2")
    assert fake.answer_to(query) is not None
    assert "take 0" in older[0].text and "(page 2)" in older[0].text
    assert [b["callback_data"] for b in older[0].buttons] == [f"reroll:{jobs[0]}", "hist:0"]
    assert len(fake.replies_to(listing[0], "photo")) == 1

    _, again = await press(fake, alice, older[0], f"reroll:{jobs[0]}")
    await wait_results(fake, chat["id"], again)
    record = await bot.service.history.job(again)
    assert record.action is Action.reroll and record.parent_job == jobs[0]
    assert record.request.prompt == "warm take 0"


async def test_history_stays_private_in_groups(bot, fake, alice):
    group = fake.group()
    await remix(fake, group, alice, "/remix warm")
    asked = fake.send(group, alice, text="/history")
    (reply,) = await fake.wait_for(lambda: fake.replies_to(asked), what="the pointer to a private chat")
    assert "private" in reply.text
    assert reply.buttons[0]["url"] == f"https://t.me/{BOT_USERNAME}?start=history"
    assert fake.replies_to(asked, "photo") == []

    # the deep link opens the history in the private chat
    chat = fake.private(alice)
    start = fake.send(chat, alice, text="/start history")
    listing = await fake.wait_for(
        lambda: [m for m in fake.replies_to(start, "text") if m.markup], what="the history from the deep link"
    )
    assert "warm" in listing[0].text


async def test_cancel_and_info(bot, fake, alice, bob):
    chat = fake.private(alice)
    assert "Nothing to cancel" in await said(fake, chat, alice, "/cancel")
    _, job_id, _ = await remix(fake, chat, alice, "/remix cinematic --seed 9 --no blurry")
    _, bobs_job, _ = await remix(fake, fake.private(bob), bob, "/remix bob's secret")

    info = await said(fake, chat, alice, f"/info {job_id}")
    assert f"Job {job_id} · remix · ✅ done" in info
    assert "Prompt: cinematic" in info and "Negative: blurry" in info and "seed 9" in info
    assert "Repeat: /remix cinematic --model classic --strength 0.6 --seed 9" in info
    assert await said(fake, chat, alice, "/info") == info  # no id: the latest job
    assert "isn't available here" in await said(fake, chat, alice, f"/info {bobs_job}")
    assert "isn't a job id" in await said(fake, chat, alice, "/info nonsense")
    assert "isn't available here" in await said(fake, chat, alice, f"/cancel {bobs_job}")
