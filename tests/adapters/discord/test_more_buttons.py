"""➕ More on Discord (the result's rows are full): Zoom out, Pan and Cut out answered to the presser
alone, each a real job in the channel; with the real discord.py client against the fake Discord."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
from PIL import Image

from bot.jobs import Action, Status
from bot.service import CUTOUT_MISSING
from engine.kinds import outpaint
from tests.adapters.discord.fake_server import rows
from tests.adapters.discord.steps import eventually, remix, result
from tests.adapters.discord.test_trust import NOT_HERE, forged

CUTOUT_TOML = """
[models.classic]
kind = "classic"
size = 512
[models.cutout]
kind = "cutout"
source = "{source}"
size = 1536
multiple = 1
"""


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


async def test_more_answers_the_presser_with_zoom_pan_and_cut_out(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    alice, bob = server.user("alice"), server.user("bob")
    _, first = await remix(server, alice, images_dir / "coffee.png", prompt="warm", size=256, seed=3)
    parent = await result(server, service, first)
    assert all(len(row) <= 5 for row in rows(parent)) and len(rows(parent)) <= 5
    assert rows(parent)[-1][-1] == f"more:{first}:0"

    pressed = await server.press(parent, f"more:{first}:0", bob)
    shown = await pressed.reply(lambda m: bool(m.get("components")))
    assert shown["flags"] & 64, "only the presser sees it"
    assert rows(shown) == [
        [f"zoom15:{first}:0", f"zoom2:{first}:0", f"cutout:{first}:0"],
        [f"panleft:{first}:0", f"panright:{first}:0", f"panup:{first}:0", f"pandown:{first}:0"],
    ]
    labels = [c["label"] for row in shown["components"] for c in row["components"]]
    assert labels[:3] == ["Zoom out 1.5×", "Zoom out 2×", "Cut out"]

    zoom = await server.press(dict(shown, channel_id=parent["channel_id"]), f"zoom2:{first}:0", bob)
    assert (await zoom.acknowledged())["type"] == 6
    zoom_id = await _newest_job(server, service, first)
    zoomed_message = await result(server, service, zoom_id)
    zoomed = await service.history.job(zoom_id)
    assert zoomed.status is Status.done and zoomed.action is Action.outpaint, zoomed.error
    assert zoomed.parent_job == first and zoomed.origin.user_id == str(bob.id)
    inner = pixels((await service.history.job(first)).outputs[0].path)
    plan = outpaint.layout((inner.shape[1], inner.shape[0]), zoom=2.0, pan=None, max_side=1536)
    out = pixels(zoomed.outputs[0].path)
    left, top, right, bottom = plan.box
    assert out.shape[:2] == (plan.canvas[1], plan.canvas[0]) and np.array_equal(out[top:bottom, left:right], inner)

    # a pan of the zoom out: the chain goes on from the new result's own More
    again = await server.press(zoomed_message, f"more:{zoom_id}:0", alice)
    more = await again.reply(lambda m: bool(m.get("components")))
    await server.press(dict(more, channel_id=parent["channel_id"]), f"panright:{zoom_id}:0", alice)
    pan_id = await _newest_job(server, service, zoom_id)
    await result(server, service, pan_id)
    panned = await service.history.job(pan_id)
    assert panned.status is Status.done and panned.parent_job == zoom_id and panned.request.pan == "right"
    plan = outpaint.layout((out.shape[1], out.shape[0]), zoom=None, pan="right", max_side=1536)
    left, top, right, bottom = plan.box
    assert np.array_equal(pixels(panned.outputs[0].path)[top:bottom, left:right], out)


async def _newest_job(server, service, parent_id: str) -> str:
    async def made() -> str | None:
        found = await _made_from(service, parent_id)
        return found[0] if found else None

    return await eventually(made, 20, f"a job made from {parent_id}")


async def test_another_channel_cannot_press_more_zoom_pan_or_cut_out(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    alice, mallory = server.user("alice"), server.user("mallory")
    _, secret = await remix(server, alice, images_dir / "coffee.png", prompt="secret", size=128, seed=3)
    await result(server, service, secret)
    other = server.channel("other")
    _, hers = await remix(server, mallory, images_dir / "chelsea.png", channel=other, prompt="mine", size=128, seed=3)
    own = await result(server, service, hers)
    ids = (f"more:{secret}:0", f"zoom15:{secret}:0", f"pandown:{secret}:0", f"cutout:{secret}:0")
    bait = forged(own, *ids)
    for custom_id in ids:
        pressed = await server.press(bait, custom_id, mallory)
        assert await pressed.text() == NOT_HERE, custom_id
    assert await _made_from(service, secret) == []


async def _made_from(service, parent_id: str) -> list[str]:
    return [
        record.id
        for user in await service.history.users()
        for record in await service.history.jobs_of(user.id, limit=50)
        if record.parent_job == parent_id
    ]


async def test_cut_out_on_discord_is_a_transparent_png(
    deploy, discord_settings, fake_discord, images_dir, tmp_path, real_weights
):
    server = fake_discord
    models = tmp_path / "cut.toml"
    models.write_text(CUTOUT_TOML.format(source=real_weights("cutout")))
    bot = await deploy(replace(discord_settings, models_path=models))
    service = bot.service
    alice = server.user("alice")
    _, first = await remix(server, alice, images_dir / "astronaut.png", prompt="warm", size=256, seed=3)
    parent = await result(server, service, first)
    pressed = await server.press(parent, f"more:{first}:0", alice)
    more = await pressed.reply(lambda m: bool(m.get("components")))
    await server.press(dict(more, channel_id=parent["channel_id"]), f"cutout:{first}:0", alice)
    cut_id = await _newest_job(server, service, first)
    message = await result(server, service, cut_id)
    record = await service.history.job(cut_id)
    assert record.status is Status.done and record.action is Action.cutout, record.error
    (attachment,) = message["attachments"]
    data = server.files[int(attachment["id"])]
    assert attachment["filename"].endswith(".png") and data == record.outputs[0].path.read_bytes()
    png = Image.open(io.BytesIO(data))
    assert png.mode == "RGBA" and np.asarray(png)[..., 3].min() < 20


async def test_cut_out_without_weights_tells_how_to_install(
    deploy, discord_settings, fake_discord, images_dir, tmp_path
):
    server = fake_discord
    models = tmp_path / "cut.toml"
    models.write_text(CUTOUT_TOML.format(source=tmp_path / "nothing-here"))
    bot = await deploy(replace(discord_settings, models_path=models))
    alice = server.user("alice")
    _, first = await remix(server, alice, images_dir / "coffee.png", prompt="warm", size=128, seed=3)
    parent = await result(server, bot.service, first)
    pressed = await server.press(parent, f"more:{first}:0", alice)
    more = await pressed.reply(lambda m: bool(m.get("components")))
    refused = await server.press(dict(more, channel_id=parent["channel_id"]), f"cutout:{first}:0", alice)
    assert await refused.text() == CUTOUT_MISSING


async def test_more_on_several_images_offers_each_one(remixbot, fake_discord, images_dir):
    server, service = fake_discord, remixbot.service
    alice = server.user("alice")
    _, first = await remix(server, alice, images_dir / "coffee.png", prompt="warm", count=2, size=128, seed=3)
    parent = await result(server, service, first)
    assert len(rows(parent)) == 3 and rows(parent)[-1][-1] == f"more:{first}:0"
    pressed = await server.press(parent, f"more:{first}:0", alice)
    shown = await pressed.reply(lambda m: bool(m.get("components")))
    assert "image 1 of" in shown["content"] and rows(shown)[-1] == [f"more:{first}:1"]
    second = await server.press(dict(shown, channel_id=parent["channel_id"]), f"more:{first}:1", alice)
    other = await second.reply(lambda m: bool(m.get("components")))
    assert "image 2 of" in other["content"]
    assert rows(other)[0] == [f"zoom15:{first}:1", f"zoom2:{first}:1", f"cutout:{first}:1"]
    assert rows(other)[-1] == [f"more:{first}:0"]
    refused = await server.press(forged(parent, f"more:{first}:7"), f"more:{first}:7", alice)
    assert await refused.text() == "That result isn't ready (or has no such image)."
