"""The ways in — /remix, "Apps → Remix", a mention — all end in the same kind of result message."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from PIL import Image

from bot.jobs import Origin, Status
from bot.requests import parse_request
from tests.adapters.discord.conftest import TOKEN
from tests.adapters.discord.fake_server import GUILD_ID, custom_ids, rows
from tests.adapters.discord.steps import eventually, job_ids, remix, result

PER_IMAGE = ("upscale", "fixface", "animate", "vary", "varystrong")


async def test_remix_posts_status_then_result_with_persistent_buttons(
    remixbot, fake_discord, images_dir, no_token_in_logs
):
    server, service = fake_discord, remixbot.service
    alice = server.user("alice")
    interaction, job_id = await remix(server, alice, images_dir / "chelsea.png", prompt="a watercolor cat")

    ack = interaction.callbacks[0]
    assert ack["type"] == 5 and ack["data"]["flags"] & 64, "deferred, ephemerally"
    assert interaction.ack_delay < 3
    assert "the result will appear in this channel" in interaction.texts()[0]

    message = await result(server, service, job_id)
    assert message["author"]["id"] == str(server.bot.id)
    assert "interaction_token" not in message, "a channel message posted with the bot token, not the webhook"
    assert len(message["attachments"]) == 1 and message["attachments"][0]["filename"].endswith(".png")
    record = await service.history.job(job_id)
    assert record.status is Status.done and record.origin.user_id == str(alice.id)
    content = message["content"]
    for part in (
        "a watercolor cat",
        "classic",
        "strength 0.6",
        f"seed {record.outputs[0].seed}",
        f"requested by <@{alice.id}>",
    ):
        assert part in content
    assert rows(message) == [
        [f"{b}:{job_id}:0" for b in PER_IMAGE],
        [f"reroll:{job_id}", f"info:{job_id}", f"delete:{job_id}", f"source:{job_id}:0", f"more:{job_id}:0"],
    ]
    uploaded = server.files[int(message["attachments"][0]["id"])]
    assert uploaded == record.outputs[0].path.read_bytes(), "the lossless PNG as the engine made it"
    edits = [c for c in server.calls if c.method == "PATCH" and c.path.startswith("/channels/")]
    assert edits and all(c.authorized for c in edits)
    assert all(TOKEN not in m["content"] for m in server.messages.values())


async def test_remix_options_reach_the_request(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    bob = server.user("bob")
    refs = [server.upload(images_dir / name) for name in ("coffee.png", "rocket.jpg", "astronaut.png")]
    _, job_id = await remix(
        server,
        bob,
        images_dir / "chelsea.png",
        prompt="noir detective",
        model="classic",
        strength=0.35,
        negative="blurry, text",
        seed=42,
        count=4,
        size=256,
        ref1=refs[0],
        ref2=refs[1],
        ref3=refs[2],
    )
    message = await result(server, service, job_id)
    record = await service.history.job(job_id)
    request = record.request
    assert (
        request.prompt,
        request.model,
        request.strength,
        request.negative_prompt,
        request.seed,
        request.num_images_per_prompt,
        request.size,
    ) == ("noir detective", "classic", 0.35, "blurry, text", 42, 4, 256)
    assert len((await service.history.load_job(job_id)).references) == 3, "the references reach the engine"
    assert len(message["attachments"]) == 4
    assert "seeds 42–45" in message["content"]
    layout = rows(message)
    assert len(layout) == 5 and all(len(row) <= 5 for row in layout), "at most 5 rows of 5"
    assert layout[3] == [f"{b}:{job_id}:3" for b in PER_IMAGE]
    assert layout[4] == [
        f"reroll:{job_id}",
        f"info:{job_id}",
        f"delete:{job_id}",
        f"source:{job_id}:0",
        f"more:{job_id}:0",
    ]


async def test_typed_options_and_flags_in_the_prompt_make_the_request_the_text_would(
    remixbot, fake_discord, images_dir
):
    server, service = fake_discord, remixbot.service
    erin = server.user("erin")
    interaction, job_id = await remix(
        server,
        erin,
        images_dir / "coffee.png",
        prompt="a lighthouse --seed 7 --no fog",  # pasted from /info: the grammar still reads it
        steps=3,
        cfg=2.5,
        image_cfg=1.5,
        scale=4,
        show_source=True,
        motion="low",
        frames=12,
        fps=6,
        ref_scale=0.5,
    )
    await result(server, service, job_id)
    text = (
        "a lighthouse --seed 7 --no fog --steps 3 --cfg 2.5 --image-cfg 1.5 --scale 4 --show-source"
        " --motion low --frames 12 --fps 6 --ref-scale 0.5"
    )
    defaults = await service.user_settings(_origin(interaction))
    expected = parse_request(text, defaults=defaults, limits=remixbot.settings.limits, models=service.models)
    assert (await service.history.job(job_id)).request == expected

    clash = await server.slash(
        "remix", erin, image=server.upload(images_dir / "coffee.png"), prompt="a cat --seed 1", seed=2
    )
    assert "--seed is given twice" in await clash.text()


async def test_model_autocomplete_lists_the_registry_with_descriptions(remixbot, fake_discord):
    server = fake_discord
    interaction = await server.autocomplete("remix", server.user("carol"), focused="model", model="")
    await interaction.acknowledged()
    choices = {c["value"]: c["name"] for c in interaction.choices}
    assert set(choices) == set(remixbot.service.models.names())
    assert choices["classic"].startswith("classic — No weights")
    assert "(not available here)" in choices["fast"], "no weights for fast in the tests"
    assert all(len(name) <= 100 for name in choices.values())
    narrowed = await server.autocomplete("remix", server.user("carol"), focused="model", model="sdxl")
    await narrowed.acknowledged()
    assert [c["value"] for c in narrowed.choices] == ["realism"]


async def test_a_model_that_cannot_run_here_is_refused_before_queueing(remixbot, fake_discord, images_dir):
    server = fake_discord
    interaction = await server.slash(
        "remix",
        server.user("dave"),
        image=server.upload(images_dir / "coffee.png"),
        prompt="a cup",
        model="fast",
    )
    text = await interaction.text()
    assert "fast isn't available on this server" in text and "needs" in text
    assert interaction.replies()[0]["flags"] & 64
    assert not server.bot_messages(), "nothing was posted in the channel"
    assert not await remixbot.service.jobs(_origin(interaction)), "no job was made"


BAD = {
    "empty.png": "empty",
    "not_an_image.png": "isn't an image I can read",
    "truncated.jpg": "damaged or cut off",
    "bomb_20000x20000.png": "too large to open safely",
    "tiny_4x4.png": "too small",
}
ODD_BUT_FINE = ("animated.gif", "cmyk.jpg", "gray16.png", "rgba.png")


@pytest.mark.parametrize("name", sorted(BAD))
async def test_bad_images_get_one_clear_private_line(remixbot, fake_discord, bad_images_dir, name):
    server = fake_discord
    interaction = await server.slash(
        "remix", server.user("eve"), image=server.upload(bad_images_dir / name), prompt="anything"
    )
    text = await interaction.text()
    assert BAD[name] in text, text
    assert "\n" not in text and "Traceback" not in text
    assert all(m["flags"] & 64 for m in interaction.replies()), "ephemeral"
    assert not server.bot_messages()
    assert not await remixbot.service.jobs(_origin(interaction))


@pytest.mark.parametrize("name", ODD_BUT_FINE)
async def test_odd_but_valid_images_are_remixed(remixbot, fake_discord, bad_images_dir, name):
    _, job_id = await remix(fake_discord, fake_discord.user("frank"), bad_images_dir / name)
    message = await result(fake_discord, remixbot.service, job_id)
    assert len(message["attachments"]) == 1


async def test_non_images_and_oversize_files_are_refused_at_once_without_downloading(
    deploy, discord_settings, fake_discord, images_dir
):
    settings = replace(discord_settings, limits=replace(discord_settings.limits, max_image_bytes=100_000))
    await deploy(settings)
    server = fake_discord
    pdf = server.upload(b"%PDF-1.4 not a picture", "notes.pdf")
    interaction = await server.slash("remix", server.user("gina"), image=pdf, prompt="anything")
    answer = await interaction.acknowledged()
    assert answer["type"] == 4 and answer["data"]["flags"] & 64, "answered at once, privately"
    assert "notes.pdf isn't an image" in answer["data"]["content"]

    big = server.upload(images_dir / "coffee.png")  # 466 KB
    interaction = await server.slash("remix", server.user("gina"), image=big, prompt="anything")
    answer = await interaction.acknowledged()
    assert answer["type"] == 4 and "coffee.png is too big" in answer["data"]["content"]
    assert "the limit is 97 KB" in answer["data"]["content"]
    assert not [c for c in server.calls if c.path.startswith("/cdn")], "nothing was downloaded"


async def test_apps_remix_opens_a_modal_and_remixes_the_target(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    hana, ivan = server.user("hana"), server.user("ivan")
    posted = await server.say(
        server.general, hana, "look at my cat", attachments=[server.upload(images_dir / "chelsea.png")]
    )
    menu = await server.context_menu("Remix", ivan, posted)
    await menu.acknowledged()
    assert menu.modal is not None and menu.ack_delay < 3
    labels = [row["components"][0]["custom_id"] for row in menu.modal["components"]]
    assert labels == ["prompt", "strength"]

    submitted = await server.submit_modal(menu, ivan, {"prompt": "make it winter", "strength": "0,4"})
    job_id = job_ids(await submitted.text())[0]
    message = await result(server, service, job_id)
    assert message["message_reference"]["message_id"] == posted["id"], "the result answers the image"
    record = await service.history.job(job_id)
    assert record.origin.user_id == str(ivan.id) and record.request.strength == 0.4
    assert record.request.prompt == "make it winter" and record.parent_job is None

    # on a result: the new job records which result (and which image) it came from
    again = await server.context_menu("Remix", hana, message)
    await again.acknowledged()
    second = await server.submit_modal(again, hana, {"prompt": "now as a sketch"})
    child = job_ids(await second.text())[0]
    await result(server, service, child)
    child_record = await service.history.job(child)
    assert (child_record.parent_job, child_record.parent_output) == (job_id, 0)


async def test_apps_remix_on_a_message_without_an_image(remixbot, fake_discord):
    server = fake_discord
    posted = await server.say(server.general, server.user("jon"), "just words")
    menu = await server.context_menu("Remix", server.user("kim"), posted)
    answer = await menu.acknowledged()
    assert answer["type"] == 4 and answer["data"]["flags"] & 64
    assert "no image" in answer["data"]["content"]


async def test_apps_remix_with_a_bad_strength_explains(remixbot, fake_discord, images_dir):
    server = fake_discord
    posted = await server.say(
        server.general, server.user("lea"), "", attachments=[server.upload(images_dir / "coffee.png")]
    )
    menu = await server.context_menu("Remix", server.user("lea"), posted)
    await menu.acknowledged()
    submitted = await server.submit_modal(menu, server.user("lea"), {"prompt": "warm", "strength": "lots"})
    text = await submitted.text()
    assert "strength must be a number" in text
    assert submitted.replies()[0]["flags"] & 64


async def test_mentioning_the_bot_in_a_reply_remixes_the_image(deploy, discord_settings, fake_discord, images_dir):
    deployment = await deploy(replace(discord_settings, discord_message_content=True))
    server, service = fake_discord, deployment.service
    assert server.identifies[-1]["intents"] & (1 << 15), "the Message Content intent is asked for"
    mia, ned = server.user("mia"), server.user("ned")
    photo = await server.say(server.general, mia, "", attachments=[server.upload(images_dir / "rocket.jpg")])
    request = await server.say(server.general, ned, f"{server.bot.mention} make it winter --seed 7", reply_to=photo)
    status = await server.message(
        lambda m: m.get("message_reference", {}).get("message_id") == request["id"],
        what="the status message answering the mention",
    )
    job_id = next(c.split(":")[1] for c in custom_ids(status))
    message = await result(server, service, job_id)
    record = await service.history.job(job_id)
    assert record.request.prompt == "make it winter" and record.request.seed == 7
    assert record.origin.user_id == str(ned.id) and len(message["attachments"]) == 1

    refused = await server.say(server.general, ned, f"{server.bot.mention} make it winter")
    reply = await server.message(
        lambda m: m.get("message_reference", {}).get("message_id") == refused["id"],
        what="the bot's answer to a mention without an image",
    )
    assert "Reply to an image" in reply["content"]


async def test_mentions_are_ignored_without_the_message_content_setting(remixbot, fake_discord, images_dir):
    server = fake_discord
    assert not server.identifies[-1]["intents"] & (1 << 15), "the privileged intent is off by default"
    photo = await server.say(
        server.general, server.user("oli"), "", attachments=[server.upload(images_dir / "rocket.jpg")]
    )
    await server.say(server.general, server.user("pam"), f"{server.bot.mention} make it winter", reply_to=photo)
    probe = await server.slash("models", server.user("pam"))  # the gateway delivers in order: a barrier
    await probe.reply(lambda m: bool(m["embeds"]))
    assert not server.bot_messages()
    assert not [c for c in server.calls if c.path.startswith("/cdn")]


async def test_remix_in_a_dm(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    quinn = server.user("quinn")
    dm = server.dm(quinn)
    interaction, job_id = await remix(server, quinn, images_dir / "coffee.png", channel=dm)
    assert "guild_id" not in interaction.payload
    message = await result(server, service, job_id)
    assert message["channel_id"] == str(dm.id) and len(message["attachments"]) == 1
    record = await service.history.job(job_id)
    assert record.origin.guild_id == "" and record.origin.chat_id == str(dm.id)


async def test_allowed_channels_per_server(deploy, discord_settings, fake_discord, images_dir, caplog):
    server = fake_discord
    art = server.channel("art")
    elsewhere = server.channel("lobby", server.guild("Another Server"))
    await deploy(replace(discord_settings, discord_allowed_channels=((GUILD_ID, art.id), (GUILD_ID, 424242))))
    assert "channels I can't see: 424242" in caplog.text
    rosa = server.user("rosa")
    refused = await server.slash("remix", rosa, image=server.upload(images_dir / "coffee.png"), prompt="x")
    answer = await refused.acknowledged()
    assert answer["type"] == 4 and answer["data"]["flags"] & 64 and "this channel" in answer["data"]["content"]
    for channel in (art, elsewhere, server.dm(rosa)):  # the listed channel, a server with none listed, DMs
        _, job_id = await remix(server, rosa, images_dir / "coffee.png", channel=channel)
        assert job_id


async def test_an_allow_list_of_unseen_channels_fails_closed(deploy, discord_settings, fake_discord, images_dir):
    """The old list opened every channel of a server when its listed channel wasn't visible."""
    server = fake_discord
    await deploy(replace(discord_settings, discord_allowed_channels=((GUILD_ID, 424242),)))
    refused = await server.slash(
        "remix", server.user("vic"), image=server.upload(images_dir / "coffee.png"), prompt="x"
    )
    assert "this channel" in (await refused.acknowledged())["data"]["content"]


async def test_rate_limit_explains_privately(deploy, discord_settings, fake_discord, images_dir):
    settings = replace(discord_settings, limits=replace(discord_settings.limits, rate_per_minute=2))
    await deploy(settings)
    server = fake_discord
    sam = server.user("sam")
    for _ in range(2):
        await remix(server, sam, images_dir / "chelsea.png")
    third = await server.slash("remix", sam, image=server.upload(images_dir / "chelsea.png"), prompt="again")
    text = await third.text()
    assert "2 requests a minute at most" in text and third.replies()[0]["flags"] & 64


async def test_discord_429s_are_retried(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    server.rate_limit("POST", r"^/channels/\d+/messages$", times=1, retry_after=0.05)
    server.rate_limit("PATCH", r"^/channels/\d+/messages/\d+$", times=1, retry_after=0.05)
    _, job_id = await remix(server, server.user("tia"), images_dir / "chelsea.png")
    message = await result(server, service, job_id)
    assert message["attachments"]
    assert len(server.rate_limited) == 2


async def test_results_are_reencoded_to_fit_the_upload_limit(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    server.attachment_size_limit = 120_000
    _, job_id = await remix(server, server.user("uma"), images_dir / "astronaut.png", prompt="oil painting")
    message = await result(server, service, job_id)
    record = await service.history.job(job_id)
    assert record.outputs[0].path.stat().st_size > 120_000, "the PNG itself would not fit"
    attachment = message["attachments"][0]
    assert attachment["filename"].endswith(".jpg") and attachment["size"] <= 120_000
    assert Image.open(io.BytesIO(server.files[int(attachment["id"])])).format == "JPEG"
    assert "Re-encoded as JPEG" in message["content"]


async def test_a_channel_the_bot_cannot_post_in(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    locked = server.channel("locked")
    server.forbidden_channels.add(locked.id)
    vic = server.user("vic")
    interaction = await server.slash("remix", vic, locked, image=server.upload(images_dir / "coffee.png"), prompt="x")
    text = await interaction.text()
    assert "can't post in this channel" in text and interaction.replies()[0]["flags"] & 64
    [record] = await service.jobs(_origin(interaction))
    await status_of(service, record.id, Status.cancelled)


def _origin(interaction) -> Origin:
    user = (interaction.payload.get("member") or {}).get("user") or interaction.payload["user"]
    return Origin(platform="discord", user_id=user["id"])


async def status_of(service, job_id: str, status: Status) -> None:
    async def reached() -> bool:
        return (await service.history.job(job_id)).status is status

    await eventually(reached, 10, f"job {job_id} {status.value}")


async def test_an_expired_attachment_link_is_explained(remixbot, fake_discord, images_dir):
    server = fake_discord
    photo = server.upload(images_dir / "coffee.png")
    del server.files[int(photo["id"])]  # the signed CDN link ran out
    interaction = await server.slash("remix", server.user("wes"), image=photo, prompt="warm")
    assert "couldn't download that image" in await interaction.text()
    assert not server.bot_messages()


async def test_an_interaction_answered_too_late_starts_nothing(remixbot, fake_discord, images_dir, caplog):
    server = fake_discord
    server.response_deadline = 0.0  # as if the bot had been stuck for 3 s
    xena = server.user("xena")
    late = await server.slash("remix", xena, image=server.upload(images_dir / "coffee.png"), prompt="warm")
    await server.until(lambda: late.refused_calls, what="the late answer refused with 10062")
    server.response_deadline = 3.0
    probe = await server.slash("models", xena)  # the bot carries on
    answer = await probe.reply(lambda m: bool(m["embeds"]))
    assert answer["embeds"][0]["fields"][0]["name"].startswith("classic")
    assert not await remixbot.service.jobs(_origin(late)), "no job for an unacknowledged interaction"
    assert not server.bot_messages()
