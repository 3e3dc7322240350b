"""bot.access: the one rule for who may see and act on a job, and the Discord allow-lists."""

from __future__ import annotations

from bot.access import channel_allowed, may_cancel, may_delete, may_see
from bot.jobs import Origin

GROUP = Origin("telegram", "alice", chat_id="-100", user_name="Alice")
ALICE_DM = Origin("telegram", "alice", chat_id="alice-dm", private=True)
BOB_IN_GROUP = Origin("telegram", "bob", chat_id="-100")
BOB_ELSEWHERE = Origin("telegram", "bob", chat_id="-200")
ALICE_ELSEWHERE = Origin("telegram", "alice", chat_id="-200")
BOB_DM = Origin("telegram", "bob", chat_id="bob-dm", private=True)


def test_a_group_job_is_seen_in_its_group_and_by_its_owner_in_private() -> None:
    assert may_see(GROUP, BOB_IN_GROUP) and may_see(GROUP, GROUP) and may_see(GROUP, ALICE_DM)
    assert not may_see(GROUP, BOB_ELSEWHERE), "never across chats"
    assert not may_see(GROUP, ALICE_ELSEWHERE), "not even its owner, from another group"
    assert not may_see(GROUP, BOB_DM), "never from someone else's private chat"
    assert not may_see(GROUP, Origin("discord", "alice", chat_id="-100")), "never across platforms"


def test_a_private_job_is_its_owners_in_that_chat_alone() -> None:
    assert may_see(ALICE_DM, ALICE_DM)
    assert not may_see(ALICE_DM, GROUP), "a DM job never shows in a group"
    assert not may_see(ALICE_DM, BOB_DM) and not may_see(ALICE_DM, Origin("telegram", "bob", chat_id="alice-dm"))


def test_servers_are_never_crossed() -> None:
    posted = Origin("discord", "1", chat_id="10", guild_id="100")
    assert may_see(posted, Origin("discord", "2", chat_id="10", guild_id="100"))
    assert not may_see(posted, Origin("discord", "2", chat_id="10", guild_id="999"))


def test_delete_is_for_the_owner_or_an_admin_of_that_chat() -> None:
    assert may_delete(GROUP, GROUP, is_admin=False)
    assert not may_delete(GROUP, BOB_IN_GROUP, is_admin=False)
    assert may_delete(GROUP, BOB_IN_GROUP, is_admin=True)
    assert not may_delete(GROUP, BOB_ELSEWHERE, is_admin=True), "an admin of another chat is nobody here"


def test_cancel_is_for_the_owner_or_an_admin_of_that_chat() -> None:
    assert may_cancel(GROUP, GROUP, is_admin=False) and may_cancel(GROUP, ALICE_DM, is_admin=False)
    assert not may_cancel(GROUP, BOB_IN_GROUP, is_admin=False)
    assert may_cancel(GROUP, BOB_IN_GROUP, is_admin=True)
    assert not may_cancel(GROUP, BOB_ELSEWHERE, is_admin=True), "an admin of another chat is nobody here"
    assert not may_cancel(ALICE_DM, BOB_DM, is_admin=True), "a private chat has no admin but its owner"
    server_job = Origin("discord", "1", chat_id="10", guild_id="100")
    assert may_cancel(server_job, Origin("discord", "2", chat_id="10", guild_id="100"), is_admin=True)
    assert not may_cancel(server_job, Origin("discord", "2", chat_id="11", guild_id="100"), is_admin=True)


def test_allow_lists_are_per_server_and_fail_closed() -> None:
    pairs = ((100, 1), (100, 2), (200, 5))
    assert channel_allowed(pairs, 100, {1}) and channel_allowed(pairs, 200, {5})
    assert not channel_allowed(pairs, 100, {5}), "another server's channel is not this server's"
    assert not channel_allowed(pairs, 100, {9}), "an unknown channel is closed, seen or not"
    assert channel_allowed(pairs, 300, {9}), "a server with no list is not restricted"
    assert channel_allowed(pairs, None, set()), "private chats"
    assert not channel_allowed(((0, 1),), 300, {9}), "a bare channel id holds every server to the list"
    assert channel_allowed((), 300, {9})
