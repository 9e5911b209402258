"""Push requests, devices and read receipts through imbed-host (issue 15).

Python `websockets` clients against `imbed-host --push`: who gets a push
request and when (offline, background, mentions, group overrides), the
host's console for them (`pushes`, `push-done`, `devices`), re-offers after
`push.retry_after_ms` and after a restart on the same SQLite file, the badge
request a read leaves, read positions live and after a reconnect, `reads`
paging, and device ids at sign-in.
"""

import asyncio
import contextlib
import re
import urllib.request
from urllib.parse import quote

import pytest

from conftest import JWT_SECRET, _start_host, _stop_cleanly
from test_config_file import write_config
from test_durability import direct_conv, request, run, seqs
from test_python_clients import (
    assert_frame,
    expect_close,
    an_hour_from_now,
    expect_pong,
    login,
    login_as,
    make_jwt,
    open_connection,
    recv_frame,
    send_frame,
    send_message,
)

# The host console's reply lines; every other line it prints is an engine event.
CONSOLE_REPLIES = ("pushes", "devices", "ok", "error", "restarted", "sent")
# A re-offer interval short enough to see several within a test, long enough
# that a loaded machine does not see a re-offer where the test expects none.
SHORT_RETRY_MS = 200
GENERATED_DEVICE = re.compile(r"^d-[0-9a-f]+-[0-9]+$")


def is_push(event):
    return event.get("event") == "push"


def is_push_for(user):
    return lambda event: is_push(event) and event["user"] == user


def pending_row(push_id, user, conv, seq, sender=None):
    """A row of the `pushes` listing, as the engine writes it."""
    row = {"push_id": push_id, "kind": "message" if sender else "read", "user": user, "conv": conv, "seq": seq}
    if sender is not None:
        row["from"] = sender
    return row


@contextlib.contextmanager
def push_host(tmp_path=None, config=None, db=":memory:", poll=False):
    """imbed-host --dev-auth --push, with config (a dict) as its --config file
    when given; stopped cleanly (exit 0, only JSON lines) afterwards."""
    args = ["--dev-auth", "--push"]
    if config is not None:
        args += ["--config", str(write_config(tmp_path, config))]
    if poll:
        args.append("--poll")
    host = _start_host(args, db)
    try:
        yield host
    finally:
        _stop_cleanly(host)


class Console:
    """The host's stdin commands: each answers exactly one reply line."""

    def __init__(self, host):
        self.host = host
        self.replies = 0

    def run_blocking(self, line):
        self.host.command(line)
        self.replies += 1
        return self.host.wait_for_events(lambda e: e.get("event") in CONSOLE_REPLIES, self.replies)[-1]

    async def run(self, line):
        """Run line; the event loop keeps serving the clients meanwhile."""
        return await asyncio.to_thread(self.run_blocking, line)

    async def pending(self):
        """The `pushes` listing."""
        reply = await self.run("pushes")
        assert set(reply) == {"event", "pending"}, reply
        return reply["pending"]


async def pushes(host, count, predicate=is_push):
    """The first count push events matching predicate, waiting for them."""
    return await asyncio.to_thread(host.wait_for_events, predicate, count)


async def sync_frames(ws, request_id):
    """Send a sync; returns every frame of its reply before `synced`, and `synced`."""
    await send_frame(ws, {"type": "sync", "id": request_id})
    frames = []
    while True:
        frame = await recv_frame(ws)
        if frame.get("type") == "synced":
            assert_frame(frame, id=request_id)
            return frames, frame
        frames.append(frame)


def read_frame(conv, user, seq):
    return {"type": "read", "conv": conv, "user": user, "seq": seq}


def offered_request(event):
    """What a push event offers, without what is worked out at each offer (unread, devices)."""
    return {key: value for key, value in event.items() if key not in ("unread", "devices")}


async def expect_quiet(sessions, tag):
    """None of sessions has a frame waiting: a ping's pong comes next."""
    for n, session in enumerate(sessions):
        await expect_pong(session, f"{tag}-{n}")


async def wait_for_session_event(host, name, session):
    """The host's `name` event (connected, disconnected) of session, waiting for it."""
    return await asyncio.to_thread(
        host.wait_for_event, lambda e: e.get("event") == name and e.get("session") == session)


# --- who gets a push request ---------------------------------------------------------


@pytest.mark.parametrize("poll", [False, True], ids=["callback", "poll"])
def test_an_offline_user_gets_one_push_request_per_message(poll):
    """bob never connected: each message to him is one push event, with its
    conv, seq and sender, and his unread count going up; the sender gets
    none, a retried send records nothing again, and `pushes` lists exactly
    those. Printed the same with --poll as with callbacks."""
    with push_host(poll=poll) as host:
        console = Console(host)

        async def scenario():
            alice, _ = await login_as(host.url, "alice")
            async with alice:
                acks = []
                for n in range(1, 4):
                    acks.append(await send_message(alice, f"a-{n}", "bob", {"n": n}))
                    # One at a time, so each request's unread count is read after its own message.
                    await pushes(host, n)
                retried = await send_message(alice, "a-2", "bob", {"n": 2})
                assert retried["seq"] == acks[1]["seq"]

                offered = host.events(is_push)
                conv = direct_conv("alice", "bob")
                assert [(e["kind"], e["user"], e["conv"], e["seq"], e["from"]) for e in offered] == [
                    ("message", "bob", conv, ack["seq"], "alice") for ack in acks
                ]
                assert [e["unread"] for e in offered] == [1, 2, 3]
                push_ids = [e["push_id"] for e in offered]
                assert len(set(push_ids)) == 3, offered
                for event, ack in zip(offered, acks):
                    assert event["devices"] == [], event  # bob never connected from any device
                    assert event["collapse_key"] == f"bob:{conv}:{ack['seq']}", event
                    assert "group" not in event and "preview" not in event, event

                assert await console.pending() == [
                    pending_row(push_id, "bob", conv, ack["seq"], "alice") for push_id, ack in zip(push_ids, acks)
                ]
                # The listing is recorded with the messages: none was offered twice meanwhile.
                assert len(host.events(is_push)) == 3

        run(scenario())


def test_a_foreground_session_holds_pushes_back_and_a_background_one_does_not():
    """bob's laptop in the foreground: no push. Once it says it went to the
    background, his only session is, and he gets one naming that device, which
    `devices` lists as background. His phone coming online in the foreground
    holds them back again."""
    with push_host() as host:
        console = Console(host)

        async def scenario():
            alice, _ = await login_as(host.url, "alice")
            laptop, _ = await login_as(f"{host.url}?device=laptop", "bob")
            async with alice, laptop:
                conv = direct_conv("alice", "bob")
                await send_message(alice, "a-1", "bob", "while looking")
                assert_frame(await recv_frame(laptop), type="msg", seq=1)
                assert await console.pending() == []

                assert_frame(await request(laptop, {"type": "device", "id": "bg", "state": "background"}),
                             type="ok", id="bg")
                await send_message(alice, "a-2", "bob", "while away")
                assert_frame(await recv_frame(laptop), type="msg", seq=2)  # still delivered: the session is open
                [push] = await pushes(host, 1)
                assert_frame(push, kind="message", user="bob", conv=conv, seq=2, **{"from": "alice"})
                assert push["devices"] == [{"device": "laptop", "state": "background"}]
                assert await console.pending() == [pending_row(push["push_id"], "bob", conv, 2, "alice")]

                devices = await console.run("devices")
                assert set(devices) == {"event", "devices"}, devices
                assert devices["devices"]["bob"] == [{"device": "laptop", "state": "background", "sessions": 1}]
                [alice_device] = devices["devices"]["alice"]
                assert alice_device["state"] == "foreground" and alice_device["sessions"] == 1, alice_device

                phone, phone_welcome = await login_as(f"{host.url}?device=phone", "bob")
                async with phone:
                    await send_message(alice, "a-3", "bob", "looking again")
                    for session in (laptop, phone):
                        assert_frame(await recv_frame(session), type="msg", seq=3)
                    assert [row["seq"] for row in await console.pending()] == [2]
                    devices = (await console.run("devices"))["devices"]
                    assert devices["bob"] == [
                        {"device": "laptop", "state": "background", "sessions": 1},
                        {"device": "phone", "state": "foreground", "sessions": 1},
                    ]
                await wait_for_session_event(host, "disconnected", phone_welcome["session"])

                assert_frame(await request(laptop, {"type": "device", "id": "fg", "state": "foreground"}),
                             type="ok", id="fg")
                devices = (await console.run("devices"))["devices"]
                assert devices["bob"] == [{"device": "laptop", "state": "foreground", "sessions": 1}]
                await send_message(alice, "a-4", "bob", "looking")
                assert_frame(await recv_frame(laptop), type="msg", seq=4)
                assert [row["seq"] for row in await console.pending()] == [2]
            assert len(host.events(is_push)) == 1

        run(scenario())


def test_groups_push_mentions_only_above_the_size_and_obey_overrides(tmp_path):
    """mentions_only_above 3: in a group of 3 every other member gets a push;
    in a group of 4 only those the body's "mentions" names (the sender
    never); a group overridden off gets none, mentions or not."""
    config = {"push": {"mentions_only_above": 3, "group_overrides": {"quiet": False}}}
    with push_host(tmp_path, config) as host:
        console = Console(host)

        async def scenario():
            groups = {"small": ["alice", "bob", "carol"], "big": ["alice", "bob", "carol", "dave"],
                      "quiet": ["alice", "bob"]}
            for group, members in groups.items():
                assert_frame(await console.run(f"create-group {group}"), event="ok")
                for member in members:
                    assert_frame(await console.run(f"add {group} {member}"), event="ok", user=member)
            alice, _ = await login_as(host.url, "alice")
            async with alice:
                sends = [
                    ("small", {"text": "hi all"}),
                    ("big", {"text": "hi all"}),
                    ("big", {"text": "@carol", "mentions": ["carol", "alice"]}),
                    ("quiet", {"text": "@bob", "mentions": ["bob"]}),
                ]
                for n, (group, body) in enumerate(sends):
                    assert_frame(await request(alice, {"type": "send", "id": f"g-{n}", "group": group, "body": body}),
                                 type="ack", id=f"g-{n}")
                expected = [("bob", "g:small", 1), ("carol", "g:small", 1), ("carol", "g:big", 2)]
                assert sorted((r["user"], r["conv"], r["seq"]) for r in await console.pending()) == sorted(expected)
                offered = await pushes(host, 3)
                assert sorted((e["user"], e["conv"], e["seq"]) for e in offered) == sorted(expected)
                for event in offered:
                    assert_frame(event, kind="message", group=event["conv"][2:], **{"from": "alice"})
                    assert event["collapse_key"] == f"{event['user']}:{event['conv']}:{event['seq']}", event

        run(scenario())


# --- the host ends them, or they come back -------------------------------------------


def test_unanswered_requests_come_back_after_a_restart_until_push_done(tmp_path):
    """Without push-done, `pushes` lists every request, and a restart on the
    same database offers them again under the same ids. push-done ends one
    (delivered or failed, which /metrics counts); ending it again is not
    found, and the next restart no longer offers it."""
    with push_host(db=tmp_path / "imbed.db") as host:
        console = Console(host)

        async def scenario():
            alice, _ = await login_as(host.url, "alice")
            async with alice:
                acks = [await send_message(alice, f"a-{n}", "bob", n) for n in range(1, 4)]
            conv = acks[0]["conv"]
            first = await pushes(host, 3)
            push_ids = [e["push_id"] for e in first]
            assert [e["seq"] for e in first] == seqs(acks)
            listing = [pending_row(i, "bob", conv, ack["seq"], "alice") for i, ack in zip(push_ids, acks)]
            assert await console.pending() == listing

            restarted = await console.run("restart")
            assert_frame(restarted, event="restarted")
            again = (await pushes(host, 6))[3:]
            assert [offered_request(e) for e in again] == [offered_request(e) for e in first]
            assert [e["unread"] for e in again] == [3, 3, 3]
            assert await console.pending() == listing

            assert await console.run(f"push-done {push_ids[0]}") == {
                "event": "ok", "command": "push-done", "push_id": push_ids[0], "delivered": True}
            assert await console.run(f"push-done {push_ids[1]} failed the gateway said: no such token") == {
                "event": "ok", "command": "push-done", "push_id": push_ids[1], "delivered": False}
            metrics_url = f"http://127.0.0.1:{restarted['port']}/metrics"
            metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(metrics_url, timeout=5).read().decode())
            assert "imbed_pushes_failed_total 1" in metrics.splitlines()
            for done in push_ids[:2]:
                error = await console.run(f"push-done {done}")
                assert_frame(error, event="error", command="push-done")
                assert error["message"].startswith("not found"), error
            assert await console.pending() == listing[2:]

            assert_frame(await console.run("restart"), event="restarted")
            after_second_restart = (await pushes(host, 7))[6:]
            assert [offered_request(e) for e in after_second_restart] == [offered_request(first[2])]
            assert await console.pending() == listing[2:]

        run(scenario())


def test_a_request_not_ended_is_offered_again_with_the_same_id(tmp_path):
    """With retry_after_ms short, an unanswered request comes back, same id,
    listed once; after push-done it never does, while a later one still does."""
    with push_host(tmp_path, {"push": {"retry_after_ms": SHORT_RETRY_MS}}) as host:
        console = Console(host)

        async def scenario():
            alice, _ = await login_as(host.url, "alice")
            async with alice:
                await send_message(alice, "a-1", "bob", "are you there?")
                offers = await pushes(host, 3, is_push_for("bob"))
                assert len({e["push_id"] for e in offers}) == 1, offers
                assert offers[1] == offers[0] and offers[2] == offers[0]
                push_id = offers[0]["push_id"]
                assert [row["push_id"] for row in await console.pending()] == [push_id]
                assert_frame(await console.run(f"push-done {push_id}"), event="ok", push_id=push_id, delivered=True)

                # carol's request is recorded after the push-done: from its first offer on,
                # every offer round runs without bob's, and two of them span a whole retry.
                await send_message(alice, "a-2", "carol", "and you?")
                await pushes(host, 2, is_push_for("carol"))
                events = host.events(is_push)
                carol_first = next(i for i, e in enumerate(events) if e["user"] == "carol")
                assert [e for e in events[carol_first:] if e["push_id"] == push_id] == []
                assert [row["user"] for row in await console.pending()] == ["carol"]

        run(scenario())


def test_push_done_refuses_what_is_not_an_id():
    with push_host() as host:
        console = Console(host)
        for line in ("push-done", "push-done x", "push-done -1", "push-done 1 maybe", "push-done 99999999999999999999"):
            reply = console.run_blocking(line)
            assert reply == {"event": "error", "command": "push-done",
                             "message": "usage: push-done <push_id> [failed [reason]]"}, line
        for line in ("push-done 12345", "push-done 12345 failed"):
            reply = console.run_blocking(line)
            assert_frame(reply, event="error", command="push-done")
            assert reply["message"].startswith("not found"), reply
        for line in ("pushes now", "devices all"):
            assert_frame(console.run_blocking(line), event="error", command=line.split()[0])


# --- reading ---------------------------------------------------------------------


def test_reading_on_one_device_clears_the_badge():
    """bob's tablet is in the background, so messages to him are pushed. He
    reads them on his phone: the message requests give way to one badge
    request (kind read, unread 0), and his tablet sees the read."""
    with push_host() as host:
        console = Console(host)

        async def scenario():
            alice, _ = await login_as(host.url, "alice")
            tablet, _ = await login_as(f"{host.url}?device=tablet", "bob")
            async with alice, tablet:
                await request(tablet, {"type": "device", "id": "bg", "state": "background"})
                acks = [await send_message(alice, f"a-{n}", "bob", n) for n in range(1, 4)]
                conv = acks[0]["conv"]
                assert seqs([await recv_frame(tablet) for _ in acks]) == [1, 2, 3]
                message_pushes = await pushes(host, 3)
                assert [e["kind"] for e in message_pushes] == ["message"] * 3

                phone, _ = await login_as(f"{host.url}?device=phone", "bob")
                async with phone:
                    assert_frame(await request(phone, {"type": "read", "id": "r", "conv": conv, "seq": 3}),
                                 type="ok", id="r")
                    assert_frame(await recv_frame(tablet), **read_frame(conv, "bob", 3))
                    assert_frame(await recv_frame(alice), **read_frame(conv, "bob", 3))
                    [badge] = (await pushes(host, 4))[3:]
                    assert badge == {
                        "event": "push",
                        "push_id": badge["push_id"],
                        "kind": "read",
                        "user": "bob",
                        "conv": conv,
                        "seq": 3,
                        "unread": 0,
                        "devices": [{"device": "phone", "state": "foreground"},
                                    {"device": "tablet", "state": "background"}],
                        "collapse_key": f"bob:{conv}:read",
                    }
                    assert badge["push_id"] not in [e["push_id"] for e in message_pushes]
                    assert await console.pending() == [pending_row(badge["push_id"], "bob", conv, 3)]

        run(scenario())


def test_read_positions_are_relayed_live_and_come_back_after_a_reconnect(tmp_path):
    """alice and bob see each other's reads as they happen, in their direct
    conversation and in a group of receipts.max_group_size members; after
    reconnecting, `conversations` has the other members' positions and a
    sync replays them as read frames after its messages, before synced."""
    with push_host(tmp_path, {"receipts": {"max_group_size": 3}}) as host:
        console = Console(host)

        async def scenario():
            assert_frame(await console.run("create-group team"), event="ok")
            for member in ("alice", "bob", "carol"):
                assert_frame(await console.run(f"add team {member}"), event="ok")
            dm = direct_conv("alice", "bob")
            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                for n in range(1, 3):
                    await send_message(alice, f"a-{n}", "bob", n)
                assert_frame(await request(alice, {"type": "send", "id": "t-1", "group": "team", "body": 1}),
                             type="ack", seq=1)
                assert seqs([await recv_frame(bob) for _ in range(3)]) == [1, 2, 1]

                await send_frame(bob, {"type": "read", "conv": dm, "seq": 2})
                assert_frame(await recv_frame(alice), **read_frame(dm, "bob", 2))
                await send_frame(alice, {"type": "read", "conv": dm, "seq": 1})
                assert_frame(await recv_frame(bob), **read_frame(dm, "alice", 1))
                await send_frame(bob, {"type": "read", "conv": "g:team", "seq": 1})
                assert_frame(await recv_frame(alice), **read_frame("g:team", "bob", 1))
                await expect_quiet([alice, bob], "no-more-reads")

            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                listed = (await request(alice, {"type": "conversations", "id": "c"}))["conversations"]
                assert [(c["conv"], c["read_seq"], c.get("reads")) for c in listed] == [
                    (dm, 1, {"bob": 2}), ("g:team", 0, {"bob": 1})]
                listed = (await request(bob, {"type": "conversations", "id": "c"}))["conversations"]
                assert [(c["conv"], c["read_seq"], c.get("reads")) for c in listed] == [
                    (dm, 2, {"alice": 1}), ("g:team", 1, {})]

                frames, _ = await sync_frames(alice, "s")
                kinds = [f["type"] for f in frames]
                assert kinds == ["msg"] * 3 + ["read"] * 2, frames
                assert sorted((f["conv"], f["user"], f["seq"]) for f in frames[3:]) == [
                    (dm, "bob", 2), ("g:team", "bob", 1)]
                assert all(set(f) == {"type", "conv", "user", "seq"} for f in frames[3:]), frames
                frames, _ = await sync_frames(bob, "s")
                assert [f for f in frames if f["type"] == "read"] == [read_frame(dm, "alice", 1)]

        run(scenario())


def test_a_group_above_the_receipts_size_keeps_reads_to_the_reader_and_pages_them(tmp_path):
    """Above receipts.max_group_size a read reaches only the reader's own
    other sessions, and neither conversations nor sync carry positions; the
    reads request gives them to any member, page by page."""
    members = ["alice", "bob", "carol", "dave", "erin"]
    with push_host(tmp_path, {"receipts": {"max_group_size": 2}}) as host:
        console = Console(host)

        async def scenario():
            assert_frame(await console.run("create-group big"), event="ok")
            for member in members:
                assert_frame(await console.run(f"add big {member}"), event="ok")
            alice, _ = await login_as(host.url, "alice")
            alice_other, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            outsider, _ = await login_as(host.url, "zed")
            async with alice, alice_other, bob, outsider:
                assert_frame(await request(alice, {"type": "send", "id": "b-1", "group": "big", "body": 1}),
                             type="ack", seq=1)
                for session in (alice_other, bob):
                    assert_frame(await recv_frame(session), type="msg", seq=1)
                for session in (alice, bob):
                    assert_frame(await request(session, {"type": "read", "id": "r", "conv": "g:big", "seq": 1}),
                                 type="ok")
                for reader in ("carol", "dave"):
                    session, _ = await login_as(host.url, reader)
                    async with session:
                        assert_frame(await request(session, {"type": "read", "id": "r", "conv": "g:big", "seq": 1}),
                                     type="ok")
                assert_frame(await recv_frame(alice_other), **read_frame("g:big", "alice", 1))
                await expect_quiet([alice, alice_other, bob], "reads-stay-home")

                [row] = (await request(alice, {"type": "conversations", "id": "c"}))["conversations"]
                assert row["conv"] == "g:big" and "reads" not in row, row
                frames, _ = await sync_frames(bob, "s")
                assert [f["type"] for f in frames] == ["msg"], frames

                page = await request(alice, {"type": "reads", "id": "p1", "conv": "g:big", "limit": 2})
                assert page == {"type": "reads", "id": "p1", "conv": "g:big",
                                "reads": {"alice": 1, "bob": 1}, "next": "bob"}
                page = await request(alice, {"type": "reads", "id": "p2", "conv": "g:big", "after": "bob", "limit": 2})
                assert_frame(page, type="reads", id="p2", reads={"carol": 1, "dave": 1})  # erin read nothing
                if "next" in page:
                    last = await request(alice, {"type": "reads", "id": "p3", "conv": "g:big", "after": page["next"],
                                                 "limit": 2})
                    assert_frame(last, reads={})
                    assert "next" not in last, last
                whole = await request(bob, {"type": "reads", "id": "all", "conv": "g:big"})
                assert_frame(whole, reads={"alice": 1, "bob": 1, "carol": 1, "dave": 1})
                assert "next" not in whole, whole
                refused = await request(outsider, {"type": "reads", "id": "x", "conv": "g:big"})
                assert_frame(refused, type="error", id="x", code="forbidden")

        run(scenario())


# --- devices ---------------------------------------------------------------------


def test_a_device_id_shows_in_welcome_and_host_events_and_a_bad_one_is_refused():
    with push_host() as host:
        async def scenario():
            phone, welcome = await login_as(f"{host.url}?device=phone-1", "alice")
            assert welcome["device"] == "phone-1"
            async with phone:
                connected = await wait_for_session_event(host, "connected", welcome["session"])
                assert connected == {"event": "connected", "user": "alice", "session": welcome["session"],
                                     "device": "phone-1"}
                assert_frame(await request(phone, {"type": "device", "id": "d", "state": "asleep"}),
                             type="error", id="d", code="bad_request")
            disconnected = await wait_for_session_event(host, "disconnected", welcome["session"])
            assert_frame(disconnected, user="alice", device="phone-1")

            # A first-frame auth may name the device; with none anywhere, the server makes one up.
            ws = await open_connection(host.url)
            async with ws:
                await send_frame(ws, {"type": "auth", "token": "bob", "device": "tablet.2"})
                assert_frame(await recv_frame(ws), type="welcome", user="bob", device="tablet.2")
            ws, welcome = await login_as(host.url, "carol")
            async with ws:
                assert GENERATED_DEVICE.match(welcome["device"]), welcome

            for bad in ("bad id", "x" * 65, "caf\u00e9", "a/b"):
                ws = await open_connection(f"{host.url}?token=dave&device={quote(bad, safe='')}")
                async with ws:
                    assert_frame(await recv_frame(ws), type="error", code="unauthorized")
                    await expect_close(ws, 1008)
            assert host.events(lambda e: e.get("user") == "dave") == []

        run(scenario())


def test_a_jwt_device_claim_wins_over_the_query():
    host = _start_host(["--jwt-secret", JWT_SECRET, "--push"])
    try:
        async def scenario():
            token = make_jwt({"sub": "alice", "device": "watch-7", "exp": an_hour_from_now()})
            ws, welcome = await login(f"{host.url}?device=phone-1", token)
            async with ws:
                assert_frame(welcome, type="welcome", user="alice", device="watch-7")
        run(scenario())
    finally:
        _stop_cleanly(host)
