from bot.actions import BUTTON_PATTERN, Button, Press, button_id, derive_request, parse_button
from bot.jobs import Action, Request

JOB = "3f9a0c1b2d4e"


def test_every_button_id_round_trips_and_fits_telegram_callback_data():
    for button in Button:
        index = 3 if button.takes_output else None
        text = button_id(button, JOB, index)
        assert len(text.encode()) <= 64  # Telegram's callback_data limit (Discord allows 100)
        press = parse_button(text)
        assert press == Press(button, JOB, index or 0)
        assert press.id == text


def test_foreign_or_malformed_ids_are_not_ours():
    for text in [
        "",
        "reroll",
        "reroll:XYZ",
        f"explode:{JOB}",
        f"reroll:{JOB}:1:2",
        f"set:model:{JOB}",
        f"reroll:{JOB}x",
        f"upscale:{JOB}:123",
    ]:
        assert parse_button(text) is None, text
        assert BUTTON_PATTERN.match(text) is None


def test_buttons_that_make_jobs_map_to_actions():
    assert Button.reroll.action is Action.reroll
    assert Button.vary.action is Button.varystrong.action is Action.vary
    assert Button.upscale.action is Action.upscale
    assert Button.info.action is None and Button.delete.action is None


def test_derive_request_keeps_settings_and_changes_only_what_the_button_means():
    parent = Request(
        prompt="harbor",
        model="fast",
        strength=0.5,
        negative_prompt="blurry",
        seed=1,
        num_images_per_prompt=4,
        compare=("realism",),
        show_source=True,
    )
    reroll = derive_request(Press(Button.reroll, JOB), parent, seed=99, model=None, vary_subtle=0.3, vary_strong=0.7)
    assert reroll.seed == 99 and reroll.strength == 0.5 and reroll.prompt == "harbor"
    assert reroll.negative_prompt == "blurry" and reroll.num_images_per_prompt == 4
    assert reroll.compare == () and reroll.show_source is False  # a reroll is one job, not a comparison

    subtle = derive_request(Press(Button.vary, JOB, 1), parent, seed=5, model=None, vary_subtle=0.3, vary_strong=0.7)
    strong = derive_request(
        Press(Button.varystrong, JOB, 1), parent, seed=5, model=None, vary_subtle=0.3, vary_strong=0.7
    )
    assert (subtle.strength, strong.strength) == (0.3, 0.7)

    upscale = derive_request(
        Press(Button.upscale, JOB, 2), parent, seed=7, model="classic", vary_subtle=0.3, vary_strong=0.7
    )
    assert upscale.model == "classic" and upscale.num_images_per_prompt == 1 and upscale.seed == 7


def test_cut_out_and_more_in_the_vocabulary():
    from bot.actions import MORE_ROWS

    assert Button.cutout.action is Action.cutout and Button.cutout.takes_output
    assert Button.more.action is None and Button.more.takes_output  # it shows buttons, it makes no job
    behind_more = {button for row in MORE_ROWS for button in row}
    outpaint = {button for button in Button if button.action is Action.outpaint}
    assert behind_more == outpaint | {Button.cutout} and all(len(row) <= 5 for row in MORE_ROWS)


def test_derived_requests_of_cut_out_and_the_output_cap():
    parent = Request(
        prompt="a cat", model="fast", strength=0.6, num_images_per_prompt=3, size=4096, background="a beach"
    )
    press = Press(Button.cutout, JOB, 1)
    kwargs = {"seed": 9, "vary_subtle": 0.3, "vary_strong": 0.7}
    cut = derive_request(press, parent, model="cutout", **kwargs)
    assert (cut.model, cut.num_images_per_prompt, cut.background, cut.size) == ("cutout", 1, "a beach", 4096)
    capped = derive_request(Press(Button.vary, JOB, 0), parent, model=None, max_output_size=2048, **kwargs)
    assert capped.size == 2048 and capped.num_images_per_prompt == 3
    within = derive_request(Press(Button.vary, JOB, 0), parent, model=None, max_output_size=8192, **kwargs)
    assert within.size == 4096


def test_cut_out_is_served_only_by_a_registry_with_a_cutout_entry():
    from bot.models import parse_models

    assert not parse_models("").serves(Action.cutout) and parse_models("").serves(Action.upscale)
    with_entry = parse_models('[models.cutout]\nkind = "cutout"\n')
    assert with_entry.serves(Action.cutout) and with_entry.for_action(Action.cutout).name == "cutout"
    other = parse_models('[defaults]\ncutout = "mine"\n[models.mine]\nkind = "cutout"\n')
    assert other.for_action(Action.cutout).name == "mine"
