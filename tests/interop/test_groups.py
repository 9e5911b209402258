"""Groups interop: Python `websockets` clients against `imbed-host`.

Covers the third milestone's groups: join, leave and member notices, group
send and delivery, members and conversations listings, sync and history of
groups, group read receipts, closed groups and the host's console commands
(create-group, add, remove, group, kick, online, stats), and a fan-out to a
group of a few hundred clients.
"""

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from test_durability import request, run, seqs, sync, synced_states
from test_python_clients import (
    REPLY_TIMEOUT_S,
    assert_frame,
    assert_recent_ms,
    expect_pong,
    login_as,
    recv_frame,
    send_frame,
    send_message,
)

# The fan-out test: this many clients in one group, one of them sending this many messages.
FANOUT_MEMBERS = 300
FANOUT_MESSAGES = 20
# Handshakes in flight at once while the fan-out clients connect.
FANOUT_CONNECTING = 50
FANOUT_TIMEOUT_S = 45

# The host console's reply lines; every other line it prints is an engine event.
CONSOLE_REPLIES = ("ok", "sent", "kicked", "online", "stats", "error", "history")


def member_notice(group, user, joined):
    return {"type": "member", "group": group, "user": user, "joined": joined}


async def join(ws, group, request_id="j"):
    """Join group and assert the ok."""
    assert_frame(await request(ws, {"type": "join", "id": request_id, "group": group}), type="ok", id=request_id)


async def leave(ws, group, request_id="l"):
    """Leave group and assert the ok."""
    assert_frame(await request(ws, {"type": "leave", "id": request_id, "group": group}), type="ok", id=request_id)


async def read(ws, conv, seq, request_id):
    """Move the read cursor and assert the ok."""
    reply = await request(ws, {"type": "read", "id": request_id, "conv": conv, "seq": seq})
    assert_frame(reply, type="ok", id=request_id)


async def send_group(ws, client_id, group, body):
    """Send to a group and return the ack, checking its shape."""
    ack = await request(ws, {"type": "send", "id": client_id, "group": group, "body": body})
    assert_frame(ack, type="ack", id=client_id, conv=f"g:{group}")
    assert_recent_ms(ack["ts"])
    return ack


def assert_group_msg(frame, ack, sender, group, client_id, body):
    """frame is the group message ack acknowledged: `group` instead of `to`."""
    assert_frame(
        frame,
        type="msg",
        conv=f"g:{group}",
        seq=ack["seq"],
        ts=ack["ts"],
        group=group,
        id=client_id,
        body=body,
        **{"from": sender},
    )
    assert "to" not in frame, frame


async def expect_error(ws, frame, code):
    """Send a request and assert it is refused with code, keeping the connection."""
    error = await request(ws, frame)
    assert_frame(error, type="error", id=frame["id"], code=code)
    assert isinstance(error.get("message"), str), error
    return error


async def expect_frame(sessions, **expected):
    """Each of sessions' next frame has the expected fields."""
    for ws in sessions:
        assert_frame(await recv_frame(ws), **expected)


async def expect_nothing(sessions, tag):
    """None of sessions has a frame waiting: a ping's pong comes next."""
    for n, ws in enumerate(sessions):
        await expect_pong(ws, f"{tag}-{n}")


async def expect_kicked(ws):
    """The server closes ws with 4001 "kicked", sending no other frame first."""
    try:
        frame = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "connection dropped without a close frame"
        assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "kicked")
    else:
        pytest.fail(f"expected close 4001, got frame {frame!r}")


class Console:
    """The host's stdin commands: each answers one reply line."""

    def __init__(self, host):
        self.host = host
        self.replies = 0

    def run_blocking(self, line):
        self.host.command(line)
        self.replies += 1
        replies = self.host.wait_for_events(lambda e: e.get("event") in CONSOLE_REPLIES, self.replies)
        return replies[-1]

    async def run(self, line):
        """Run line; the loop keeps serving the clients while the host works."""
        return await asyncio.to_thread(self.run_blocking, line)


def member_event(host, group, user, joined):
    """The host's member event for this change, waiting for it."""
    expected = {"event": "member", "group": group, "user": user, "joined": joined}
    return host.wait_for_event(lambda e: e == expected)


# --- join, leave, member notices ---------------------------------------------------


def test_join_creates_an_open_group_and_members_are_told(dev_host):
    async def scenario():
        alice_phone, _ = await login_as(dev_host.url, "alice")
        alice_laptop, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice_phone, alice_laptop, bob, carol:
            await join(alice_phone, "team", "j1")
            # The joiner's other session is told; the requesting session gets only the ok.
            await expect_frame([alice_laptop], **member_notice("team", "alice", True))
            await expect_nothing([alice_phone, bob, carol], "after-alice-joined")
            await asyncio.to_thread(member_event, dev_host, "team", "alice", True)

            reply = await request(alice_phone, {"type": "members", "id": "m1", "group": "team"})
            assert_frame(reply, type="members", id="m1", group="team", closed=False, members=["alice"])

            await join(bob, "team", "j2")
            await expect_frame([alice_phone, alice_laptop], **member_notice("team", "bob", True))
            await expect_nothing([bob, carol], "after-bob-joined")
            await asyncio.to_thread(member_event, dev_host, "team", "bob", True)

            # Joining again is ok.
            await join(bob, "team", "j3")
            reply = await request(bob, {"type": "members", "id": "m2", "group": "team"})
            assert_frame(reply, type="members", id="m2", group="team", closed=False, members=["alice", "bob"])

    run(scenario())


def test_members_are_sorted_bytewise_and_only_members_may_list_them(dev_host):
    async def scenario():
        sessions = {}
        for user in ["carol", "alice", "Zed", "bob"]:
            sessions[user], _ = await login_as(dev_host.url, user)
        try:
            for user in ["carol", "alice", "Zed"]:
                await join(sessions[user], "team", f"j-{user}")
            # Zed joined last, so no member notice waits on its connection.
            reply = await request(sessions["Zed"], {"type": "members", "id": "m1", "group": "team"})
            assert_frame(reply, type="members", id="m1", group="team", closed=False, members=["Zed", "alice", "carol"])
            await expect_error(sessions["bob"], {"type": "members", "id": "m2", "group": "team"}, "forbidden")
            await expect_pong(sessions["bob"], "after-forbidden")
        finally:
            for ws in sessions.values():
                await ws.close()

    run(scenario())


def test_group_send_reaches_every_members_sessions_but_the_sending_one(dev_host):
    async def scenario():
        alice_phone, _ = await login_as(dev_host.url, "alice")
        alice_laptop, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice_phone, alice_laptop, bob, carol:
            await join(alice_phone, "team")
            await recv_frame(alice_laptop)  # alice joined
            await join(bob, "team")
            for ws in (alice_phone, alice_laptop):
                await recv_frame(ws)  # bob joined

            bodies = [{"n": n} for n in range(1, 4)] + ["plain", None]
            acks = [await send_group(alice_phone, f"a-{n}", "team", body) for n, body in enumerate(bodies, 1)]
            assert seqs(acks) == [1, 2, 3, 4, 5]
            delivered = {}
            for ws in (alice_laptop, bob):
                for n, (ack, body) in enumerate(zip(acks, bodies), 1):
                    delivered[n] = await recv_frame(ws)
                    assert_group_msg(delivered[n], ack, "alice", "team", f"a-{n}", body)
            # Neither the sending session nor a non-member got anything.
            await expect_nothing([alice_phone, carol], "after-alice-sent")

            bob_ack = await send_group(bob, "b-1", "team", {"text": "hi"})
            assert_frame(bob_ack, seq=6)
            for ws in (alice_phone, alice_laptop):
                assert_group_msg(await recv_frame(ws), bob_ack, "bob", "team", "b-1", {"text": "hi"})
            await expect_nothing([bob, carol], "after-bob-sent")

            # Idempotency holds for groups too: the retry gets the same ack and delivers nothing.
            retry = await send_group(bob, "b-1", "team", {"text": "hi"})
            assert retry == bob_ack
            await expect_nothing([alice_phone, alice_laptop], "after-retry")

        # The host's message event carries the group msg frame as delivered.
        for msg in delivered.values():
            await asyncio.to_thread(dev_host.wait_for_event, lambda e, m=msg: e == {"event": "message", "message": m})

    run(scenario())


def test_group_burst_is_gapless_and_in_seq_order_for_every_member(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice, bob, carol:
            await join(alice, "team")
            await join(bob, "team")
            await recv_frame(alice)
            await join(carol, "team")
            await recv_frame(alice)
            await recv_frame(bob)
            count = 30
            for n in range(count):
                await send_frame(alice, {"type": "send", "id": f"a-{n}", "group": "team", "body": n})
            for n in range(count):
                await send_frame(bob, {"type": "send", "id": f"b-{n}", "group": "team", "body": n})
            # alice and bob each get their own acks and the other's messages, interleaved.
            alice_frames = [await recv_frame(alice) for _ in range(2 * count)]
            bob_frames = [await recv_frame(bob) for _ in range(2 * count)]
            alice_acks = [f for f in alice_frames if f.get("type") == "ack"]
            bob_acks = [f for f in bob_frames if f.get("type") == "ack"]
            assert sorted(a["id"] for a in alice_acks) == sorted(f"a-{n}" for n in range(count))
            assert sorted(a["id"] for a in bob_acks) == sorted(f"b-{n}" for n in range(count))
            assert sorted(seqs(alice_acks + bob_acks)) == list(range(1, 2 * count + 1))
            seq_of = {("alice", a["id"]): a["seq"] for a in alice_acks} | {("bob", a["id"]): a["seq"] for a in bob_acks}
            carol_msgs = [await recv_frame(carol) for _ in range(2 * count)]
            assert seqs(carol_msgs) == list(range(1, 2 * count + 1))
            assert all(seq_of[(m["from"], m["id"])] == m["seq"] for m in carol_msgs)
            for frames, other_acks in ((alice_frames, bob_acks), (bob_frames, alice_acks)):
                msgs = [f for f in frames if f.get("type") != "ack"]
                # Exactly the other sender's messages, in seq order.
                assert seqs(msgs) == sorted(seqs(other_acks)), msgs
                assert [m["id"] for m in msgs] == [a["id"] for a in sorted(other_acks, key=lambda a: a["seq"])]

    run(scenario())


def test_only_members_may_send_to_a_group(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            await join(alice, "team")
            await expect_error(bob, {"type": "send", "id": "x-1", "group": "team", "body": 1}, "forbidden")
            await expect_error(bob, {"type": "send", "id": "x-2", "group": "nosuch", "body": 1}, "forbidden")
            await expect_nothing([alice, bob], "after-refusals")
            # Nothing was stored: the group's first message is seq 1.
            assert_frame(await send_group(alice, "a-1", "team", "first"), seq=1)

    run(scenario())


def test_leave_tells_the_others_and_ends_delivery_and_access(dev_host):
    async def scenario():
        alice_phone, _ = await login_as(dev_host.url, "alice")
        alice_laptop, _ = await login_as(dev_host.url, "alice")
        bob_phone, _ = await login_as(dev_host.url, "bob")
        bob_laptop, _ = await login_as(dev_host.url, "bob")
        async with alice_phone, alice_laptop, bob_phone, bob_laptop:
            await join(alice_phone, "team")
            await recv_frame(alice_laptop)
            await join(bob_phone, "team")
            for ws in (alice_phone, alice_laptop, bob_laptop):
                await recv_frame(ws)
            ack = await send_group(alice_phone, "a-1", "team", "before")
            for ws in (alice_laptop, bob_phone, bob_laptop):
                assert_group_msg(await recv_frame(ws), ack, "alice", "team", "a-1", "before")

            await leave(bob_phone, "team", "l1")
            await expect_frame([alice_phone, alice_laptop, bob_laptop], **member_notice("team", "bob", False))
            await expect_nothing([bob_phone], "leaver-gets-only-ok")
            await asyncio.to_thread(member_event, dev_host, "team", "bob", False)

            ack = await send_group(alice_phone, "a-2", "team", "after")
            assert_frame(ack, seq=2)
            assert_group_msg(await recv_frame(alice_laptop), ack, "alice", "team", "a-2", "after")
            await expect_nothing([bob_phone, bob_laptop], "no-delivery-after-leave")

            for ws in (bob_phone, bob_laptop):
                await expect_error(ws, {"type": "send", "id": "b-1", "group": "team", "body": 1}, "forbidden")
                await expect_error(ws, {"type": "history", "id": "h1", "conv": "g:team"}, "forbidden")
                await expect_error(ws, {"type": "members", "id": "m1", "group": "team"}, "forbidden")
                await expect_error(ws, {"type": "read", "id": "r1", "conv": "g:team", "seq": 1}, "forbidden")
            # Leaving a group one is not in is ok too.
            await leave(bob_phone, "team", "l2")
            await leave(bob_phone, "nosuch", "l3")
            await expect_nothing([alice_phone, alice_laptop], "after-leaving-twice")

            reply = await request(alice_phone, {"type": "members", "id": "m2", "group": "team"})
            assert_frame(reply, members=["alice"], closed=False)

    run(scenario())


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param({"type": "join", "id": "x", "group": "not valid!"}, id="join-invalid-group"),
        pytest.param({"type": "join", "id": "x"}, id="join-without-group"),
        pytest.param({"type": "join", "id": "x", "group": "g" * 65}, id="join-65-char-group"),
        pytest.param({"type": "leave", "id": "x", "group": ""}, id="leave-empty-group"),
        pytest.param({"type": "members", "id": "x", "group": "a:b"}, id="members-invalid-group"),
        pytest.param({"type": "send", "id": "x", "group": "team", "to": "bob", "body": 1}, id="send-to-and-group"),
        pytest.param({"type": "send", "id": "x", "group": "not valid!", "body": 1}, id="send-invalid-group"),
        pytest.param({"type": "send", "id": "x", "group": "team"}, id="send-group-without-body"),
    ],
)
def test_malformed_group_frames_get_bad_request(dev_host, frame):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            await join(alice, "team")
            await expect_error(alice, frame, "bad_request")
            await expect_pong(alice, "after-bad-request")

    run(scenario())


# --- conversations, sync, history, read -------------------------------------------


def conversation_rows(reply):
    return [(c.get("conv"), c.get("last_seq"), c.get("read_seq")) for c in reply["conversations"]]


def test_conversations_lists_dms_and_groups_with_last_and_read_seq(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice, bob, carol:
            reply = await request(alice, {"type": "conversations", "id": "c0"})
            assert_frame(reply, type="conversations", id="c0", conversations=[])

            for n in range(1, 4):
                await send_message(alice, f"ab-{n}", "bob", n)
            assert seqs([await recv_frame(bob) for _ in range(3)]) == [1, 2, 3]
            assert_frame(await send_message(bob, "ba-1", "alice", 4), seq=4)
            assert_frame(await send_message(carol, "ca-1", "alice", 1), seq=1)
            for _ in range(2):
                assert_frame(await recv_frame(alice), type="msg")
            await join(alice, "team")
            await join(alice, "quiet")
            await join(alice, "gone")
            await leave(alice, "gone")
            await join(bob, "team")
            for n in range(1, 3):
                await send_group(bob, f"bt-{n}", "team", n)
            assert_frame(await recv_frame(alice), **member_notice("team", "bob", True))
            assert seqs([await recv_frame(alice) for _ in range(2)]) == [1, 2]
            await read(alice, "dm:alice:bob", 2, "r1")
            await read(alice, "g:team", 1, "r2")
            # bob is told of both reads.
            assert_frame(await recv_frame(bob), type="read", conv="dm:alice:bob", user="alice", seq=2)
            assert_frame(await recv_frame(bob), type="read", conv="g:team", user="alice", seq=1)

            reply = await request(alice, {"type": "conversations", "id": "c1"})
            assert_frame(reply, type="conversations", id="c1")
            assert conversation_rows(reply) == [
                ("dm:alice:bob", 4, 2),
                ("dm:alice:carol", 1, 0),
                ("g:quiet", 0, 0),
                ("g:team", 2, 1),
            ]
            reply = await request(bob, {"type": "conversations", "id": "c2"})
            assert conversation_rows(reply) == [("dm:alice:bob", 4, 0), ("g:team", 2, 0)]

    run(scenario())


def test_sync_covers_groups_and_brings_what_an_offline_member_missed(dev_host):
    async def scenario():
        bob, _ = await login_as(dev_host.url, "bob")
        async with bob:
            await join(bob, "team")
            await join(bob, "quiet")
            msgs, synced = await sync(bob, "s0")
            assert msgs == []
            assert synced_states(synced) == {"g:team": (0, False), "g:quiet": (0, False)}

        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            await join(alice, "team")
            bodies = [{"n": n} for n in range(1, 6)]
            acks = [await send_group(alice, f"a-{n}", "team", body) for n, body in enumerate(bodies, 1)]

            bob, _ = await login_as(dev_host.url, "bob")
            async with bob:
                await expect_pong(bob, "nothing-pushed-at-connect")
                msgs, synced = await sync(bob, "s1", limit=3)
                assert len(msgs) == 3
                for msg, ack, body, n in zip(msgs, acks, bodies, range(1, 4)):
                    assert_group_msg(msg, ack, "alice", "team", f"a-{n}", body)
                assert synced_states(synced) == {"g:team": (5, True), "g:quiet": (0, False)}

                msgs, synced = await sync(bob, "s2", cursors={"g:team": 3}, limit=3)
                assert seqs(msgs) == [4, 5]
                for msg, ack, body, n in zip(msgs, acks[3:], bodies[3:], range(4, 6)):
                    assert_group_msg(msg, ack, "alice", "team", f"a-{n}", body)
                assert synced_states(synced) == {"g:team": (5, False), "g:quiet": (0, False)}

                # Live group messages reach bob now that he is online again.
                ack = await send_group(alice, "a-6", "team", "live")
                assert_group_msg(await recv_frame(bob), ack, "alice", "team", "a-6", "live")

                # After leaving, the group is no longer bob's: sync no longer names it.
                await leave(bob, "quiet")
                _, synced = await sync(bob, "s3", cursors={"g:team": 6})
                assert synced_states(synced) == {"g:team": (6, False)}

    run(scenario())


def test_group_history_is_for_members_only(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice, bob, carol:
            await join(alice, "team")
            await join(bob, "team")
            await recv_frame(alice)
            bodies = [{"n": n} for n in range(1, 8)]
            acks = [await send_group(alice, f"a-{n}", "team", body) for n, body in enumerate(bodies, 1)]
            for _ in acks:
                await recv_frame(bob)

            for index, (fields, expected) in enumerate(
                [({}, range(1, 8)), ({"before": 6, "limit": 3}, range(3, 6)), ({"limit": 2}, range(6, 8))]
            ):
                reply = await request(bob, {"type": "history", "id": f"h{index}", "conv": "g:team", **fields})
                assert_frame(reply, type="history", id=f"h{index}", conv="g:team")
                assert seqs(reply["messages"]) == list(expected)
                for msg in reply["messages"]:
                    n = msg["seq"]
                    assert_group_msg(msg, acks[n - 1], "alice", "team", f"a-{n}", bodies[n - 1])

            await expect_error(carol, {"type": "history", "id": "hc", "conv": "g:team"}, "forbidden")
            await join(carol, "empty")
            reply = await request(carol, {"type": "history", "id": "he", "conv": "g:empty"})
            assert_frame(reply, type="history", id="he", conv="g:empty", messages=[])

    run(scenario())


def test_group_read_receipts_reach_the_other_members_and_the_readers_other_sessions(dev_host):
    async def scenario():
        alice_phone, _ = await login_as(dev_host.url, "alice")
        alice_laptop, _ = await login_as(dev_host.url, "alice")
        bob_phone, _ = await login_as(dev_host.url, "bob")
        bob_laptop, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        dave, _ = await login_as(dev_host.url, "dave")
        everyone = [alice_phone, alice_laptop, bob_phone, bob_laptop, carol, dave]
        try:
            await join(alice_phone, "team")
            await join(bob_phone, "team")
            await join(carol, "team")
            # Notices: alice_laptop 3, bob_laptop 2, alice_phone 2, bob_phone 1.
            for ws, count in ((alice_laptop, 3), (bob_laptop, 2), (alice_phone, 2), (bob_phone, 1)):
                for _ in range(count):
                    assert_frame(await recv_frame(ws), type="member", group="team")
            for n in range(1, 4):
                await send_group(carol, f"c-{n}", "team", n)
            for ws in (alice_phone, alice_laptop, bob_phone, bob_laptop):
                assert seqs([await recv_frame(ws) for _ in range(3)]) == [1, 2, 3]

            relayed = {"type": "read", "conv": "g:team", "user": "bob", "seq": 2}
            await read(bob_phone, "g:team", 2, "r1")
            await expect_frame([alice_phone, alice_laptop, bob_laptop, carol], **relayed)
            await expect_nothing([bob_phone, dave], "no-relay-to-reader-or-outsider")

            # Backwards changes nothing and is not relayed.
            await read(bob_phone, "g:team", 1, "r2")
            await expect_nothing([alice_phone, carol, bob_laptop], "no-relay-backwards")

            await expect_error(dave, {"type": "read", "id": "r3", "conv": "g:team", "seq": 1}, "forbidden")
            await expect_error(bob_phone, {"type": "read", "id": "r4", "conv": "g:team", "seq": 4}, "bad_request")
            await expect_nothing([alice_phone, alice_laptop, bob_laptop, carol], "no-relay-of-refusals")

            await send_frame(carol, {"type": "read", "conv": "g:team", "seq": 3})
            carol_read = {**relayed, "user": "carol", "seq": 3}
            await expect_frame([alice_phone, alice_laptop, bob_phone, bob_laptop], **carol_read)
            await expect_nothing([carol, dave], "no-reply-without-id")
        finally:
            for ws in everyone:
                await ws.close()

    run(scenario())


# --- closed groups and the host console ------------------------------------------


def test_closed_group_is_run_from_the_host_console(dev_host):
    async def scenario():
        console = Console(dev_host)
        assert await console.run("create-group team closed") == {
            "event": "ok", "command": "create-group", "group": "team"
        }
        alice_phone, _ = await login_as(dev_host.url, "alice")
        alice_laptop, _ = await login_as(dev_host.url, "alice")
        bob_phone, bob_phone_welcome = await login_as(dev_host.url, "bob")
        bob_laptop, bob_laptop_welcome = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        alices, bobs = [alice_phone, alice_laptop], [bob_phone, bob_laptop]
        try:
            await expect_error(alice_phone, {"type": "join", "id": "j1", "group": "team"}, "forbidden")
            await expect_error(alice_phone, {"type": "members", "id": "m0", "group": "team"}, "forbidden")

            # A change the host made has no requesting session: every member session is told, the added user's too.
            assert await console.run("add team alice") == {
                "event": "ok", "command": "add", "group": "team", "user": "alice"
            }
            await expect_frame(alices, **member_notice("team", "alice", True))
            await asyncio.to_thread(member_event, dev_host, "team", "alice", True)
            reply = await request(alice_phone, {"type": "members", "id": "m1", "group": "team"})
            assert_frame(reply, type="members", id="m1", group="team", closed=True, members=["alice"])

            assert await console.run("add team bob") == {
                "event": "ok", "command": "add", "group": "team", "user": "bob"
            }
            await expect_frame(alices + bobs, **member_notice("team", "bob", True))
            await expect_nothing([carol], "outsider-not-told")

            assert await console.run('group team {"t":1}') == {"event": "sent", "group": "team", "seq": 1}
            for ws in alices + bobs:
                msg = await recv_frame(ws)
                assert_frame(msg, type="msg", conv="g:team", seq=1, group="team", body={"t": 1}, **{"from": "host"})
                assert isinstance(msg.get("id"), str) and msg["id"], msg
                assert_recent_ms(msg["ts"])
            await expect_nothing([carol], "outsider-gets-no-group-msg")
            # Members send to a closed group like to any other.
            ack = await send_group(bob_phone, "b-1", "team", "hello")
            assert_frame(ack, seq=2)
            for ws in alices + [bob_laptop]:
                assert_group_msg(await recv_frame(ws), ack, "bob", "team", "b-1", "hello")

            assert await console.run("remove team alice") == {
                "event": "ok", "command": "remove", "group": "team", "user": "alice"
            }
            await expect_frame(alices + bobs, **member_notice("team", "alice", False))
            await asyncio.to_thread(member_event, dev_host, "team", "alice", False)
            await expect_error(alice_phone, {"type": "send", "id": "a-1", "group": "team", "body": 1}, "forbidden")
            await expect_error(alice_laptop, {"type": "history", "id": "h1", "conv": "g:team"}, "forbidden")
            await expect_error(alice_phone, {"type": "join", "id": "j2", "group": "team"}, "forbidden")

            await expect_nothing(bobs, "bob-drained-before-kick")
            assert await console.run("kick bob") == {"event": "kicked", "user": "bob", "sessions": 2}
            await asyncio.gather(*(expect_kicked(ws) for ws in bobs))
            for welcome in (bob_phone_welcome, bob_laptop_welcome):
                disconnected = await asyncio.to_thread(
                    dev_host.wait_for_event,
                    lambda e, w=welcome: e.get("event") == "disconnected" and e.get("session") == w["session"],
                )
                assert disconnected == {
                    "event": "disconnected", "user": "bob", "session": welcome["session"], "device": welcome["device"], "reason": "kicked"
                }
            assert await console.run("online") == {"event": "online", "users": ["alice", "carol"]}
            assert await console.run("kick bob") == {"event": "kicked", "user": "bob", "sessions": 0}
            await expect_nothing(alices + [carol], "others-stay-after-kick")

            # Opening the group lets clients join; bob stays a member while offline.
            assert await console.run("create-group team open") == {
                "event": "ok", "command": "create-group", "group": "team"
            }
            await join(carol, "team", "j3")
            reply = await request(carol, {"type": "members", "id": "m2", "group": "team"})
            assert_frame(reply, type="members", id="m2", group="team", closed=False, members=["bob", "carol"])
        finally:
            for ws in alices + bobs + [carol]:
                await ws.close()

    run(scenario())


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("create-group", "create-group"),
        ("create-group not-valid! open", "create-group"),
        ("create-group team sideways", "create-group"),
        ("add nosuch alice", "add"),
        ("add team", "add"),
        ("add team not-valid!", "add"),
        ("remove nosuch alice", "remove"),
        ("group nosuch {}", "group"),
        ("group team", "group"),
        ("group team {not json", "group"),
        ("kick", "kick"),
        ("kick not-valid!", "kick"),
    ],
)
def test_bad_group_console_commands_are_reported(dev_host, line, command):
    console = Console(dev_host)
    assert console.run_blocking("create-group team") == {"event": "ok", "command": "create-group", "group": "team"}
    reply = console.run_blocking(line)
    assert_frame(reply, event="error", command=command)
    assert isinstance(reply.get("message"), str) and reply["message"], reply
    # The host goes on: the group still takes messages.
    assert console.run_blocking('group team {"after":1}') == {"event": "sent", "group": "team", "seq": 1}


def test_online_and_stats_count_sessions_users_and_messages(dev_host):
    async def scenario():
        console = Console(dev_host)
        assert await console.run("online") == {"event": "online", "users": []}
        assert await console.run("stats") == {
            "event": "stats", "connections": 0, "users_online": 0, "messages_stored": 0, "messages_delivered": 0
        }
        alice_phone, _ = await login_as(dev_host.url, "alice")
        alice_laptop, laptop_welcome = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        zed, zed_welcome = await login_as(dev_host.url, "Zed")
        try:
            # Two DMs: each is delivered to bob and to alice's laptop (4 msg frames).
            for n in range(1, 3):
                await request(alice_phone, {"type": "send", "id": f"a-{n}", "to": "bob", "body": n})
            for ws in (bob, alice_laptop):
                assert seqs([await recv_frame(ws) for _ in range(2)]) == [1, 2]
            # One host message to a group of alice and bob: delivered to 3 sessions.
            await join(alice_phone, "team")
            await recv_frame(alice_laptop)
            await join(bob, "team")
            await recv_frame(alice_phone)
            await recv_frame(alice_laptop)
            assert await console.run('group team {"t":1}') == {"event": "sent", "group": "team", "seq": 1}
            for ws in (alice_phone, alice_laptop, bob):
                assert_frame(await recv_frame(ws), type="msg", conv="g:team", seq=1)

            assert await console.run("online") == {"event": "online", "users": ["Zed", "alice", "bob"]}
            assert await console.run("stats") == {
                "event": "stats", "connections": 4, "users_online": 3, "messages_stored": 3, "messages_delivered": 7
            }

            for ws, welcome in ((alice_laptop, laptop_welcome), (zed, zed_welcome)):
                await ws.close()
                await asyncio.to_thread(
                    dev_host.wait_for_event,
                    lambda e, w=welcome: e.get("event") == "disconnected" and e.get("session") == w["session"],
                )
            assert await console.run("online") == {"event": "online", "users": ["alice", "bob"]}
            assert await console.run("stats") == {
                "event": "stats", "connections": 2, "users_online": 2, "messages_stored": 3, "messages_delivered": 7
            }
        finally:
            for ws in (alice_phone, alice_laptop, bob, zed):
                await ws.close()

    run(scenario())


def test_groups_membership_and_closed_flag_survive_a_restart(dev_hosts, tmp_path):
    async def scenario():
        host = dev_hosts.start(tmp_path / "imbed.db")
        console = Console(host)
        assert (await console.run("create-group staff closed"))["event"] == "ok"
        assert (await console.run("add staff alice"))["event"] == "ok"
        alice, _ = await login_as(host.url, "alice")
        async with alice:
            await join(alice, "open")
            ack = await send_group(alice, "a-1", "staff", "kept")

        host = await asyncio.to_thread(dev_hosts.restart, host)
        alice, _ = await login_as(host.url, "alice")
        bob, _ = await login_as(host.url, "bob")
        async with alice, bob:
            reply = await request(alice, {"type": "members", "id": "m1", "group": "staff"})
            assert_frame(reply, closed=True, members=["alice"])
            reply = await request(alice, {"type": "members", "id": "m2", "group": "open"})
            assert_frame(reply, closed=False, members=["alice"])
            await expect_error(bob, {"type": "join", "id": "j1", "group": "staff"}, "forbidden")
            msgs, synced = await sync(alice, "s1")
            assert len(msgs) == 1
            assert_group_msg(msgs[0], ack, "alice", "staff", "a-1", "kept")
            assert synced_states(synced) == {"g:open": (0, False), "g:staff": (1, False)}
            # The sequence goes on from its last seq.
            assert_frame(await send_group(alice, "a-2", "staff", "next"), seq=2)

    run(scenario())


# --- scale ----------------------------------------------------------------------------


async def reply_skipping_notices(ws, request_id):
    """The reply to request_id, skipping the member notices of other joins."""
    while True:
        frame = await recv_frame(ws)
        if frame.get("type") != "member":
            assert_frame(frame, id=request_id)
            return frame


def test_group_fan_out_to_hundreds_of_clients(dev_host):
    users = [f"u{n:03}" for n in range(FANOUT_MEMBERS)]

    async def scenario():
        connecting = asyncio.Semaphore(FANOUT_CONNECTING)

        async def connect_and_join(user):
            async with connecting:
                ws, _ = await login_as(dev_host.url, user)
            await send_frame(ws, {"type": "join", "id": f"j-{user}", "group": "crowd"})
            assert_frame(await reply_skipping_notices(ws, f"j-{user}"), type="ok")
            return ws

        sessions = await asyncio.gather(*(connect_and_join(user) for user in users))
        try:
            sender, receivers = sessions[0], sessions[1:]

            async def receive_all(ws):
                msgs = []
                while len(msgs) < FANOUT_MESSAGES:
                    frame = await recv_frame(ws)
                    if frame.get("type") != "member":
                        msgs.append(frame)
                return msgs

            async def send_all():
                for n in range(FANOUT_MESSAGES):
                    await send_frame(sender, {"type": "send", "id": f"f-{n}", "group": "crowd", "body": {"n": n}})
                return await receive_all(sender)

            acks, *inboxes = await asyncio.gather(send_all(), *(receive_all(ws) for ws in receivers))
            assert {ack["type"] for ack in acks} == {"ack"}, acks
            assert sorted(seqs(acks)) == list(range(1, FANOUT_MESSAGES + 1))
            by_seq = {ack["seq"]: ack for ack in acks}
            for user, inbox in zip(users[1:], inboxes):
                assert seqs(inbox) == list(range(1, FANOUT_MESSAGES + 1)), f"{user}: {inbox}"
                for msg in inbox:
                    ack = by_seq[msg["seq"]]
                    assert_group_msg(msg, ack, users[0], "crowd", ack["id"], {"n": int(ack["id"][2:])})
        finally:
            await asyncio.gather(*(ws.close() for ws in sessions))

    run(scenario(), FANOUT_TIMEOUT_S)
