"""The rules themselves (bot/policy.py): matching, limits, pace, scopes, stored data."""

from bot.jobs import Origin, Request
from bot.policy import Nsfw, Operator, Rules, banned_phrase, check_pace, check_request, normalise, scope

GUILD = Origin(platform="discord", user_id="7", chat_id="100", guild_id="1")


def test_banned_phrases_match_whole_words_in_any_case_or_accent():
    assert normalise("Ｃafé—au LAIT!") == "cafe au lait"
    assert banned_phrase(["a CAFE au lait"], ["café"]) == "café"
    assert banned_phrase(["un Café"], ["cafe"]) == "cafe"
    assert banned_phrase(["the cafeteria"], ["cafe"]) is None
    assert banned_phrase(["red hot chili"], ["hot chili"]) == "hot chili"
    assert banned_phrase(["hot red chili"], ["hot chili"]) is None
    assert banned_phrase(["", "blurry, GORE"], ["gore"]) == "gore"
    assert banned_phrase(["anything"], ["", "  "]) is None


def test_check_request_order_and_messages():
    request = Request(prompt="a cat", model="fast", strength=0.5, negative_prompt="Gore", num_images_per_prompt=3)
    operator = Operator(banned=("gore",), blocked=("discord:9",))
    assert check_request(Rules(), operator, GUILD, request).reason == "banned"
    clean = Request(prompt="a cat", model="fast", strength=0.5, num_images_per_prompt=3, size=1024)
    assert check_request(Rules(), operator, GUILD, clean) is None
    assert check_request(Rules(blocked=("7",)), operator, GUILD, clean).reason == "blocked"
    assert check_request(Rules(), operator, Origin("discord", "9", guild_id="1"), clean).reason == "blocked"
    breach = check_request(Rules(models=("classic",)), operator, GUILD, clean)
    assert breach.reason == "model" and "Allowed: classic" in breach.message
    assert (
        check_request(Rules(max_num_images=2), operator, GUILD, clean).message
        == "--n is at most 2 here (you asked for 3)."
    )
    assert check_request(Rules(max_size=512), operator, GUILD, clean).detail == "size=1024"
    assert check_request(Rules(max_steps=10), operator, GUILD, clean) is None  # steps unset: the model's own


def test_pace_cooldown_then_quota():
    now = 100_000.0
    assert check_pace(Rules(cooldown=60), [now - 30], now).message == "One moment — a new job here in 31 s."
    assert check_pace(Rules(cooldown=60), [now - 61], now) is None
    breach = check_pace(Rules(daily_quota=2), [now - 3600 * 20, now - 10], now)
    assert breach.reason == "quota" and "about 4 h" in breach.message
    assert check_pace(Rules(daily_quota=3), [now - 10, now - 5], now) is None


def test_scopes():
    assert scope(GUILD) == "discord:1"
    assert scope(Origin("discord", "7", chat_id="55")) is None  # a DM
    assert scope(Origin("telegram", "7", chat_id="-1001")) == "telegram:-1001"
    assert scope(Origin("telegram", "7", chat_id="7")) is None  # a private chat
    assert scope(Origin("console", "7", chat_id="c1")) is None


def test_rules_round_trip_and_fill_from_a_base():
    rules = Rules(nsfw=Nsfw.spoiler, banned=("x y",), models=("classic",), daily_quota=5, blocked=("3",))
    assert Rules.from_data(rules.to_data()) == rules
    base = Rules(nsfw=Nsfw.allow, cooldown=30)
    assert Rules.from_data({"daily_quota": "4", "whatever": 1}, base) == Rules(
        nsfw=Nsfw.allow, cooldown=30, daily_quota=4
    )


def test_a_flagged_result_goes_only_to_age_restricted_discord_channels():
    from bot.policy import may_post

    assert not may_post(True, "discord", age_restricted=False)
    assert may_post(True, "discord", age_restricted=True)
    assert may_post(False, "discord", age_restricted=False)
    assert may_post(True, "telegram", age_restricted=False)  # Telegram's rule is the spoiler policy
