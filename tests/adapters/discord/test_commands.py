"""/models, /settings, /history, /info, /cancel, and how the commands are registered."""

from __future__ import annotations

from dataclasses import replace

from tests.adapters.discord.fake_server import GUILD_ID, custom_ids, rows
from tests.adapters.discord.steps import remix, result


async def test_commands_are_registered_globally(remixbot, fake_discord):
    commands = {(c["name"], c["type"]): c for c in fake_discord.global_commands}
    assert set(commands) == {
        ("remix", 1),
        ("models", 1),
        ("styles", 1),
        ("loras", 1),
        ("settings", 1),
        ("history", 1),
        ("info", 1),
        ("cancel", 1),
        ("forget", 1),
        ("Remix", 3),
        ("server", 1),
        ("help", 1),
    }, "the slash commands and the message menu"
    options = {o["name"]: o for o in commands[("remix", 1)]["options"]}
    assert list(options) == [
        "image",
        "prompt",
        "model",
        "strength",
        "negative",
        "seed",
        "count",
        "size",
        "steps",
        "cfg",
        "image_cfg",
        "scale",
        "compare",
        "show_source",
        "motion",
        "frames",
        "fps",
        "ref1",
        "ref2",
        "ref3",
        "ref_scale",
        "style",
        "background",
    ]
    assert len(options) <= 25, "Discord's limit"
    assert (options["size"]["min_value"], options["size"]["max_value"]) == (64, 4096), "up to 4k: upscaled"
    assert options["background"]["type"] == 3 and options["background"]["max_length"] == 200
    motions = [(c["name"], c["value"]) for c in options["motion"]["choices"]]
    assert motions == [("low", "low"), ("high", "high")]
    assert [c["value"] for c in options["scale"]["choices"]] == [2, 4] and options["scale"]["type"] == 4
    assert options["show_source"]["type"] == 5 and options["compare"]["autocomplete"]
    assert [options[name]["max_value"] for name in ("cfg", "image_cfg", "frames")] == [30, 10, 120]
    optional = [name for name, option in options.items() if not option.get("required")]
    assert optional == list(options)[2:], "only the image and the prompt are required"
    assert options["image"]["type"] == 11 and options["image"]["required"]
    assert options["model"]["autocomplete"] and options["strength"]["type"] == 10
    assert options["style"]["autocomplete"] and options["prompt"]["autocomplete"], "styles and <lora:…> tags"
    assert (options["strength"]["min_value"], options["strength"]["max_value"]) == (0, 1)
    assert options["count"]["max_value"] == 4, "4 images: 4 rows of buttons and the last row"
    assert all(options[f"ref{i}"]["type"] == 11 and not options[f"ref{i}"].get("required") for i in (1, 2, 3))
    assert not fake_discord.guild_commands


async def test_guild_ids_sync_commands_to_those_servers_at_once(deploy, discord_settings, fake_discord, images_dir):
    await deploy(replace(discord_settings, discord_guild_ids=(GUILD_ID,)))
    server = fake_discord
    assert not server.global_commands
    assert {c["name"] for c in server.guild_commands[GUILD_ID]} >= {"remix", "Remix", "history"}
    _, job_id = await remix(server, server.user("gail"), images_dir / "coffee.png")  # dispatched as a guild command
    assert job_id


async def test_models_lists_every_model_and_whether_it_runs_here(remixbot, fake_discord):
    interaction = await fake_discord.slash("models", fake_discord.user("hal"))
    reply = await interaction.reply(lambda m: bool(m["embeds"]))
    assert reply["flags"] & 64
    fields = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}
    assert [name.split(" ")[0] for name in fields] == remixbot.service.models.names()
    assert fields["classic (your default)"].startswith("No weights") and "✅ ready" in fields["classic (your default)"]
    assert "⛔ needs" in fields["fast"]
    assert all(len(value) <= 1024 for value in fields.values())
    assert sum(len(f) + len(v) for f, v in fields.items()) < 6000, "within Discord's embed limit"


async def test_settings_change_by_options_and_buttons_and_apply_to_remix(remixbot, fake_discord, images_dir):
    server = fake_discord
    ida = server.user("ida")
    shown = await server.slash("settings", ida, strength=0.45)
    page = await shown.reply(lambda m: bool(m["content"]))
    assert page["flags"] & 64 and "strength **0.45**" in page["content"]
    assert "set:n:2" in custom_ids(page) and "set:model:classic" in custom_ids(page)

    await remixbot.restart()  # the settings buttons are persistent too
    pressed = await server.press(page, "set:n:2", ida)
    assert (await pressed.acknowledged())["type"] == 6
    await server.until(lambda: "images **2**" in page["content"], what="the settings page updated")
    assert "strength **0.45**" in page["content"]

    _, job_id = await remix(server, ida, images_dir / "chelsea.png")
    message = await result(server, remixbot.service, job_id)
    record = await remixbot.service.history.job(job_id)
    assert (record.request.num_images_per_prompt, record.request.strength) == (2, 0.45)
    assert len(message["attachments"]) == 2 and len(rows(message)) == 3

    auto = await server.press(page, "set:strength:auto", ida)
    await auto.acknowledged()
    await server.until(lambda: "strength **the model's default**" in page["content"], what="strength reset")

    bad = await server.slash("settings", ida, model="nonexistent")
    assert "no model called 'nonexistent'" in await bad.text()


async def test_history_pages_and_remix_again(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    jo = server.user("jo")
    made = []
    for i in range(6):
        _, job_id = await remix(server, jo, images_dir / "chelsea.png", prompt=f"cat number {i}")
        await result(server, service, job_id)
        made.append(job_id)
    other = server.user("kai")
    await remix(server, other, images_dir / "coffee.png", prompt="not jo's")

    shown = await server.slash("history", jo)
    page = await shown.reply(lambda m: bool(m["content"]))
    assert page["flags"] & 64
    assert [f"`{job_id}`" in page["content"] for job_id in reversed(made)] == [True] * 5 + [False]
    assert "not jo's" not in page["content"], "private: only the user's own jobs"
    assert custom_ids(page) == [f"reroll:{job_id}" for job_id in reversed(made[1:])] + ["hist:1"]

    await remixbot.restart()
    service = remixbot.service
    older = await server.press(page, "hist:1", jo)
    await older.acknowledged()
    await server.until(lambda: "page 2" in page["content"], what="page 2")
    assert f"`{made[0]}`" in page["content"] and custom_ids(page) == [f"reroll:{made[0]}", "hist:0"]

    again = await server.press(page, f"reroll:{made[0]}", jo)
    await again.acknowledged()
    newest = await server.until(
        lambda: (
            (
                jobs := [
                    m
                    for m in server.bot_messages()
                    if f"cancel:{made[0]}" not in custom_ids(m) and m["content"].startswith("🔄")
                ]
            )
            and jobs[-1]
        ),
        what="the status message of the remix-again job",
    )
    child = custom_ids(newest)[-1].split(":")[1]
    await result(server, service, child)
    assert (await service.history.job(child)).parent_job == made[0]


async def test_info_and_its_privacy(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    lou = server.user("lou")
    dm = server.dm(lou)
    _, job_id = await remix(server, lou, images_dir / "coffee.png", prompt="secret plans", channel=dm)
    await result(server, service, job_id)

    own = await server.slash("info", lou, dm, job=job_id)
    text = await own.text()
    assert "secret plans" in text and "model classic" in text and own.replies()[0]["flags"] & 64
    in_public = await server.slash("info", lou, job=job_id)  # a DM job stays in the DM, even for its owner
    assert await in_public.text() == "That result isn't available here."

    stranger = await server.slash("info", server.user("max"), job=job_id)
    assert "isn't available here" in await stranger.text()
    assert "secret plans" not in " ".join(stranger.texts())

    typed = await server.autocomplete("info", lou, focused="job", job=job_id[:4])
    await typed.acknowledged()
    assert [c["value"] for c in typed.choices] == [job_id]


async def test_cancel_with_nothing_to_cancel(remixbot, fake_discord):
    interaction = await fake_discord.slash("cancel", fake_discord.user("ned"))
    assert await interaction.text() == "Nothing to cancel."
    other = await fake_discord.slash("cancel", fake_discord.user("ned"), job="0123456789ab")
    assert "isn't available here" in await other.text()


async def test_an_unexpected_failure_is_one_private_line_and_a_logged_traceback(remixbot, fake_discord, caplog):
    await remixbot.service.history.close()  # the database goes away under the bot
    interaction = await fake_discord.slash("history", fake_discord.user("ora"))
    text = await interaction.text()
    assert text == "Something went wrong on my side; it has been logged. Please try again."
    assert interaction.replies()[0]["flags"] & 64
    logged = [r for r in caplog.records if "failed" in r.getMessage() and r.exc_info]
    assert logged and "history" in logged[0].getMessage()
