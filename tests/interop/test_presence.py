"""Presence and typing interop: Python `websockets` clients against `imbed-host`.

Covers the third milestone's `watch` / `unwatch` / `presence` and `typing`:
who is told, when, and what is refused or rate limited.
"""

import asyncio

import pytest

from test_durability import request, run, seqs, sync, synced_states
from test_groups import expect_error, expect_frame, expect_nothing, join, member_notice, send_group
from test_python_clients import assert_frame, expect_pong, login_as, recv_frame, send_frame, send_message

# The typing limit: this many frames at once per session, then `rate_limited`.
TYPING_BURST = 5


def presence(user, online):
    return {"type": "presence", "user": user, "online": online}


async def watch(ws, users, request_id="w"):
    """Watch users; returns the reply's online map."""
    reply = await request(ws, {"type": "watch", "id": request_id, "users": users})
    assert_frame(reply, type="ok", id=request_id)
    assert isinstance(reply.get("online"), dict), reply
    return reply["online"]


async def close_and_await_disconnected(host, ws, welcome):
    """Close ws and wait until the host reports the session gone."""
    await ws.close()
    await asyncio.to_thread(
        host.wait_for_event,
        lambda e: e.get("event") == "disconnected" and e.get("session") == welcome["session"],
    )


# --- presence ------------------------------------------------------------------------


def test_watch_answers_the_current_online_state(dev_host):
    async def scenario():
        bob, _ = await login_as(dev_host.url, "bob")
        alice, _ = await login_as(dev_host.url, "alice")
        async with bob, alice:
            online = await watch(alice, ["bob", "carol", "alice"], "w1")
            assert online == {"bob": True, "carol": False, "alice": True}

    run(scenario())


def test_presence_changes_only_with_the_first_and_the_last_session(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        alice_other, _ = await login_as(dev_host.url, "alice")
        async with alice, alice_other:
            assert await watch(alice, ["bob"], "w1") == {"bob": False}
            # Watches add up: carol is watched as well as bob.
            assert await watch(alice, ["carol"], "w2") == {"carol": False}

            bob_phone, bob_phone_welcome = await login_as(dev_host.url, "bob")
            await expect_frame([alice], **presence("bob", True))
            # A second device does not flap presence.
            bob_laptop, bob_laptop_welcome = await login_as(dev_host.url, "bob")
            await expect_nothing([alice], "no-presence-for-second-device")

            # One of two sessions gone: bob is still online. carol's arrival, after
            # that close was handled, is the next thing alice hears.
            await close_and_await_disconnected(dev_host, bob_phone, bob_phone_welcome)
            carol, _ = await login_as(dev_host.url, "carol")
            async with carol:
                await expect_frame([alice], **presence("carol", True))
                await close_and_await_disconnected(dev_host, bob_laptop, bob_laptop_welcome)
                await expect_frame([alice], **presence("bob", False))
            await expect_frame([alice], **presence("carol", False))
            await expect_nothing([alice], "nothing-more")
            # Watches belong to the session that made them.
            await expect_nothing([alice_other], "unwatched-session-not-told")

    run(scenario())


def test_unwatch_stops_presence_for_that_user_only(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            assert await watch(alice, ["bob", "carol"], "w1") == {"bob": False, "carol": False}
            reply = await request(alice, {"type": "unwatch", "id": "u1", "users": ["bob"]})
            assert_frame(reply, type="ok", id="u1")

            bob, _ = await login_as(dev_host.url, "bob")
            carol, _ = await login_as(dev_host.url, "carol")
            async with bob, carol:
                # Had bob's arrival been sent, it would come before carol's.
                await expect_frame([alice], **presence("carol", True))
                await expect_nothing([alice], "after-carol")

    run(scenario())


@pytest.mark.parametrize(
    "users",
    [
        pytest.param([f"u{n}" for n in range(1001)], id="1001-users"),
        pytest.param(["bob", "not valid!"], id="invalid-id"),
        pytest.param(["bob", ""], id="empty-id"),
        pytest.param(["x" * 65], id="65-char-id"),
        pytest.param([], id="empty-list"),
        pytest.param("bob", id="not-a-list"),
        pytest.param(None, id="missing"),
    ],
)
def test_bad_watch_gets_bad_request(dev_host, users):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            frame = {"type": "watch", "id": "w1"}
            if users is not None:
                frame["users"] = users
            await expect_error(alice, frame, "bad_request")
            # A refused watch watches nobody.
            bob, _ = await login_as(dev_host.url, "bob")
            async with bob:
                await expect_nothing([alice], "refused-watch-watches-nobody")

    run(scenario())


def test_watch_of_1000_users_is_accepted(dev_host):
    async def scenario():
        u7, _ = await login_as(dev_host.url, "u7")
        alice, _ = await login_as(dev_host.url, "alice")
        async with u7, alice:
            users = [f"u{n}" for n in range(1000)]
            online = await watch(alice, users, "w1")
            assert online == {user: user == "u7" for user in users}

    run(scenario())


# --- typing --------------------------------------------------------------------------


def test_dm_typing_reaches_only_the_recipients_sessions(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        alice_other, _ = await login_as(dev_host.url, "alice")
        bob_phone, _ = await login_as(dev_host.url, "bob")
        bob_laptop, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice, alice_other, bob_phone, bob_laptop, carol:
            await send_frame(alice, {"type": "typing", "to": "bob"})
            await expect_frame([bob_phone, bob_laptop], type="typing", conv="dm:alice:bob", **{"from": "alice"})
            # No reply on success, nothing to the typer's other session or to outsiders.
            await expect_nothing([alice, alice_other, carol, bob_phone, bob_laptop], "typing-seen-once")

            await send_frame(bob_laptop, {"type": "typing", "to": "alice"})
            await expect_frame([alice, alice_other], type="typing", conv="dm:alice:bob", **{"from": "bob"})
            await expect_nothing([bob_phone, bob_laptop, carol], "bob-typing-seen-once")

    run(scenario())


def test_group_typing_reaches_the_other_members_only(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        alice_other, _ = await login_as(dev_host.url, "alice")
        bob_phone, _ = await login_as(dev_host.url, "bob")
        bob_laptop, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        dave, _ = await login_as(dev_host.url, "dave")
        sessions = [alice, alice_other, bob_phone, bob_laptop, carol, dave]
        try:
            await join(carol, "team")
            await join(bob_phone, "team")
            await join(alice, "team")
            # Notices: carol 2, bob_phone 1, bob_laptop 2, alice_other 1.
            for ws, count in ((carol, 2), (bob_phone, 1), (bob_laptop, 2), (alice_other, 1)):
                for _ in range(count):
                    assert_frame(await recv_frame(ws), type="member", group="team")

            await send_frame(alice, {"type": "typing", "group": "team"})
            await expect_frame([bob_phone, bob_laptop, carol], type="typing", conv="g:team", **{"from": "alice"})
            await expect_nothing(sessions, "group-typing-seen-once")

            await expect_error(dave, {"type": "typing", "id": "t1", "group": "team"}, "forbidden")
            await expect_error(dave, {"type": "typing", "id": "t2", "group": "nosuch"}, "forbidden")
            await expect_nothing(sessions, "non-member-typing-not-relayed")
        finally:
            for ws in sessions:
                await ws.close()

    run(scenario())


def test_typing_burst_is_rate_limited(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            # Ten frames at once: the first five pass, the rest are refused,
            # with the frame's id when it had one.
            frames = [{"type": "typing", "id": f"t{n}", "to": "bob"} for n in range(8)]
            frames += [{"type": "typing", "to": "bob"} for _ in range(2)]
            for frame in frames:
                await send_frame(alice, frame)
            errors = [await recv_frame(alice) for _ in range(len(frames) - TYPING_BURST)]
            for error, frame in zip(errors, frames[TYPING_BURST:]):
                assert_frame(error, type="error", code="rate_limited", id=frame.get("id", "<missing>"))
            await expect_pong(alice, "connection-stays")

            relayed = [await recv_frame(bob) for _ in range(TYPING_BURST)]
            for frame in relayed:
                assert_frame(frame, type="typing", conv="dm:alice:bob", **{"from": "alice"})
            await expect_nothing([bob], "only-five-relayed")

    run(scenario())


def test_typing_is_never_stored(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            await send_message(alice, "a-1", "bob", "hello")
            assert_frame(await recv_frame(bob), type="msg", seq=1)
            await join(alice, "team")
            await join(bob, "team")
            assert_frame(await recv_frame(alice), **member_notice("team", "bob", True))
            await send_group(alice, "g-1", "team", "hello team")
            assert_frame(await recv_frame(bob), type="msg", seq=1)

            await send_frame(alice, {"type": "typing", "to": "bob"})
            await send_frame(alice, {"type": "typing", "group": "team"})
            # Typing to someone alice never wrote to starts no conversation.
            await send_frame(alice, {"type": "typing", "to": "dave"})
            await expect_frame([bob], type="typing", conv="dm:alice:bob")
            await expect_frame([bob], type="typing", conv="g:team")
            await expect_nothing([alice], "typing-has-no-reply")

            for conv in ("dm:alice:bob", "g:team"):
                reply = await request(bob, {"type": "history", "id": "h", "conv": conv})
                assert seqs(reply["messages"]) == [1], reply
            msgs, synced = await sync(bob, "s1")
            assert seqs(msgs) == [1, 1] and {m["type"] for m in msgs} == {"msg"}, msgs
            assert synced_states(synced) == {"dm:alice:bob": (1, False), "g:team": (1, False)}
            _, synced = await sync(alice, "s2")
            assert synced_states(synced) == {"dm:alice:bob": (1, False), "g:team": (1, False)}
            reply = await request(alice, {"type": "conversations", "id": "c1"})
            assert [c["conv"] for c in reply["conversations"]] == ["dm:alice:bob", "g:team"]

    run(scenario())
