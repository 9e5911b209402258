"""Durable store interop: Python `websockets` clients against `imbed-host`
on a SQLite file, restarted (SIGTERM) and crashed (SIGKILL).

Covers the second milestone: sync and its paging and ordering, history,
read receipts, offline delivery, the host's `history` command, what survives
a restart and a crash, and a store that cannot be opened.
"""

import asyncio
import json
import random
import sqlite3
import subprocess
from collections import Counter, defaultdict
from contextlib import closing

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from conftest import HOST_BINARY, STARTUP_TIMEOUT_S
from test_python_clients import (
    SCENARIO_TIMEOUT_S,
    assert_frame,
    expect_pong,
    login_as,
    recv_frame,
    send_frame,
    send_message,
)

# The crash test: users u0..u3, each sending to the next, killed this many times.
CRASH_USERS = ["u0", "u1", "u2", "u3"]
CRASH_ROUNDS = 5
CRASH_WINDOW = 20
CRASH_KILL_AFTER_S = (0.3, 1.0)
# The whole crash scenario, so the test stays around a minute even when it hangs.
CRASH_TEST_TIMEOUT_S = 60
# How many of a conversation's newest messages a sender reads back after a
# crash: more than a window, so every message stored but not acked is among them.
RECOVERY_HISTORY_LIMIT = 100
# sync rounds a client may need to catch up in these tests before it is a failure.
MAX_SYNC_ROUNDS = 100


def run(scenario, timeout=SCENARIO_TIMEOUT_S):
    """Run an async scenario to completion within timeout seconds; returns its result."""
    return asyncio.run(asyncio.wait_for(scenario, timeout))


def direct_conv(a, b):
    """The conversation name of a DM: the two ids sorted bytewise."""
    low, high = sorted([a, b], key=str.encode)
    return f"dm:{low}:{high}"


def seqs(frames):
    return [frame["seq"] for frame in frames]


async def sync(ws, request_id, cursors=None, limit=None):
    """Send a sync and return (the msg frames of its reply, the synced frame).

    Only for connections where no live message can arrive meanwhile: every
    frame before `synced` must be a msg.
    """
    request = {"type": "sync", "id": request_id}
    if cursors is not None:
        request["cursors"] = cursors
    if limit is not None:
        request["limit"] = limit
    await send_frame(ws, request)
    msgs = []
    while True:
        frame = await recv_frame(ws)
        if frame.get("type") == "synced":
            assert_frame(frame, id=request_id)
            return msgs, frame
        assert_frame(frame, type="msg")
        msgs.append(frame)


def synced_states(synced):
    """{conv: (last_seq, more)} of a synced frame."""
    return {conv: (state.get("last_seq"), state.get("more")) for conv, state in synced["convs"].items()}


async def request(ws, frame):
    """Send a request frame and return the next frame, its reply."""
    await send_frame(ws, frame)
    return await recv_frame(ws)


def assert_msgs_match_acks(msgs, acks, sender, to, bodies):
    """msgs are exactly the stored messages acks acknowledged, with every contract field."""
    assert len(msgs) == len(acks), msgs
    for msg, ack, body in zip(msgs, acks, bodies):
        assert_frame(
            msg,
            type="msg",
            conv=ack["conv"],
            seq=ack["seq"],
            ts=ack["ts"],
            to=to,
            id=ack["id"],
            body=body,
            **{"from": sender},
        )


# --- restart and sync ------------------------------------------------------------


def test_messages_survive_a_restart_and_come_back_through_sync(dev_hosts, tmp_path):
    async def scenario():
        host = dev_hosts.start(tmp_path / "imbed.db")
        bodies = [{"n": n} for n in range(1, 6)]
        alice, _ = await login_as(host.url, "alice")
        async with alice:
            acks = [await send_message(alice, f"a-{n}", "bob", body) for n, body in enumerate(bodies, 1)]
        assert seqs(acks) == [1, 2, 3, 4, 5]

        host = await asyncio.to_thread(dev_hosts.restart, host)
        bob, _ = await login_as(host.url, "bob")
        async with bob:
            await expect_pong(bob, "nothing-pushed")
            msgs, synced = await sync(bob, "s1")
            assert_msgs_match_acks(msgs, acks, "alice", "bob", bodies)
            assert synced_states(synced) == {"dm:alice:bob": (5, False)}

            msgs, synced = await sync(bob, "s2", cursors={"dm:alice:bob": 5})
            assert msgs == []
            assert synced_states(synced) == {"dm:alice:bob": (5, False)}

            # The idempotency key outlived the restart: the retry gets the first ack and delivers nothing.
            alice, _ = await login_as(host.url, "alice")
            async with alice:
                retry_ack = await send_message(alice, "a-3", "bob", bodies[2])
                assert retry_ack == acks[2]
            await expect_pong(bob, "retry-not-delivered")

    run(scenario())


def test_sync_pages_by_limit_per_conversation_and_names_every_conversation(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice, carol:
            for n in range(1, 26):
                await send_message(alice, f"a-{n}", "bob", {"n": n})
            for n in range(1, 4):
                await send_message(carol, f"c-{n}", "bob", {"n": n})
        # bob sent in dm:bob:dave and never received there: it is bob's conversation all the same.
        bob, _ = await login_as(dev_host.url, "bob")
        async with bob:
            await send_message(bob, "b-1", "dave", {"n": 1})
            expected_pages = [
                (10, {"dm:alice:bob": [*range(1, 11)], "dm:bob:carol": [1, 2, 3], "dm:bob:dave": [1]}, True),
                (20, {"dm:alice:bob": [*range(11, 21)], "dm:bob:carol": [], "dm:bob:dave": []}, True),
                (25, {"dm:alice:bob": [*range(21, 26)], "dm:bob:carol": [], "dm:bob:dave": []}, False),
            ]
            cursors = {}
            for page, (alice_cursor, expected_seqs, alice_more) in enumerate(expected_pages, 1):
                msgs, synced = await sync(bob, f"s{page}", cursors=dict(cursors), limit=10)
                by_conv = {conv: [m["seq"] for m in msgs if m["conv"] == conv] for conv in expected_seqs}
                assert by_conv == expected_seqs, f"page {page}: {msgs}"
                assert len(msgs) == sum(len(s) for s in expected_seqs.values()), f"page {page}: {msgs}"
                assert synced_states(synced) == {
                    "dm:alice:bob": (25, alice_more),
                    "dm:bob:carol": (3, False),
                    "dm:bob:dave": (1, False),
                }, f"page {page}"
                cursors = {"dm:alice:bob": alice_cursor, "dm:bob:carol": 3, "dm:bob:dave": 1}
            dave_msg = next(m for m in (await sync(bob, "all", limit=1000))[0] if m["conv"] == "dm:bob:dave")
            assert_frame(dave_msg, seq=1, id="b-1", to="dave", body={"n": 1}, **{"from": "bob"})

    run(scenario())


@pytest.mark.parametrize(
    "sync_frame",
    [
        pytest.param({"type": "sync", "id": "s-0", "limit": 0}, id="limit-0"),
        pytest.param({"type": "sync", "id": "s-1001", "limit": 1001}, id="limit-1001"),
        pytest.param({"type": "sync", "id": "s-str", "limit": "10"}, id="limit-not-a-number"),
        pytest.param({"type": "sync", "id": "s-cur", "cursors": {"dm:alice:bob": -1}}, id="negative-cursor"),
    ],
)
def test_bad_sync_gets_bad_request_and_connection_stays(dev_host, sync_frame):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            error = await request(alice, sync_frame)
            assert_frame(error, type="error", id=sync_frame["id"], code="bad_request")
            await expect_pong(alice, "after-bad-sync")

    run(scenario())


def test_messages_to_an_offline_user_wait_for_sync_and_are_not_pushed_at_connect(dev_host):
    async def scenario():
        bob, _ = await login_as(dev_host.url, "bob")
        async with bob:
            msgs, synced = await sync(bob, "s0")
            assert msgs == [] and synced["convs"] == {}, synced
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            bodies = [{"n": n} for n in range(1, 5)]
            acks = [await send_message(alice, f"a-{n}", "bob", bodies[n - 1]) for n in range(1, 4)]
            bob, _ = await login_as(dev_host.url, "bob")
            async with bob:
                # The next frame after the pong would be any pushed backlog.
                await expect_pong(bob, "nothing-pushed")
                acks.append(await send_message(alice, "a-4", "bob", bodies[3]))
                live = await recv_frame(bob)
                assert_msgs_match_acks([live], acks[3:], "alice", "bob", bodies[3:])

                msgs, synced = await sync(bob, "s1")
                assert_msgs_match_acks(msgs, acks, "alice", "bob", bodies)
                assert synced_states(synced) == {"dm:alice:bob": (4, False)}

    run(scenario())


def test_live_messages_during_a_sync_come_after_its_messages(dev_host):
    """The ordering promise: a sync's msgs form one ascending block before
    `synced`; live messages stored meanwhile come after `synced`, without
    repeating the block; those pushed before the sync are in seq order."""
    total = 600
    sent_before_sync = 200

    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            # seq 1 is stored while bob is offline, so only the sync can bring it.
            await send_message(alice, "a-1", "bob", {"n": 1})
            halfway = asyncio.Event()
            slots = asyncio.Semaphore(20)
            acked_seqs = [1]

            async def send_rest():
                for n in range(2, total + 1):
                    await slots.acquire()
                    await send_frame(alice, {"type": "send", "id": f"a-{n}", "to": "bob", "body": {"n": n}})

            async def read_acks():
                for acked in range(2, total + 1):
                    ack = await recv_frame(alice)
                    assert_frame(ack, type="ack", conv="dm:alice:bob")
                    acked_seqs.append(ack["seq"])
                    slots.release()
                    if acked == sent_before_sync:
                        halfway.set()

            async def sync_while_alice_sends():
                await halfway.wait()
                bob, _ = await login_as(dev_host.url, "bob")
                async with bob:
                    await send_frame(bob, {"type": "sync", "id": "s1", "limit": 1000})
                    before_synced, after_synced, synced, seen = [], [], None, set()
                    while synced is None or len(seen) < total:
                        frame = await recv_frame(bob)
                        if frame.get("type") == "synced":
                            assert synced is None, frame
                            synced = frame
                            continue
                        assert_frame(frame, type="msg", conv="dm:alice:bob")
                        (before_synced if synced is None else after_synced).append(frame["seq"])
                        seen.add(frame["seq"])
                    return before_synced, after_synced, synced

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(send_rest())
                tasks.create_task(read_acks())
                bob_receives = tasks.create_task(sync_while_alice_sends())
            before_synced, after_synced, synced = bob_receives.result()
        assert sorted(acked_seqs) == list(range(1, total + 1))

        assert_frame(synced, id="s1")
        last_seq, more = synced_states(synced)["dm:alice:bob"]
        assert more is False and sent_before_sync <= last_seq <= total, synced
        stream = before_synced + after_synced
        assert stream.count(1) == 1, f"seq 1 came {stream.count(1)} times: {stream}"
        block_start = before_synced.index(1)
        # imbed: the reply's msgs end right at synced, and what was held comes after it, without repeats.
        assert before_synced[block_start:] == list(range(1, last_seq + 1)), (
            f"the sync's msgs are not one ascending block just before synced: {before_synced}"
        )
        assert after_synced == list(range(last_seq + 1, total + 1)), f"live messages after synced: {after_synced}"
        pushed_before = before_synced[:block_start]
        assert all(seq <= last_seq for seq in pushed_before), f"a message newer than the sync came before it: {stream}"
        assert all(b == a + 1 for a, b in zip(pushed_before, pushed_before[1:])), (
            f"live messages before the sync were not in seq order: {pushed_before}"
        )

    run(scenario())


# --- history ------------------------------------------------------------------


def test_history_returns_the_messages_just_below_before_in_ascending_order(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            bodies = [{"n": n} for n in range(1, 8)]
            acks = [await send_message(alice, f"a-{n}", "bob", body) for n, body in enumerate(bodies, 1)]
            for _ in acks:
                await recv_frame(bob)

            cases = [
                ({}, range(1, 8)),
                ({"before": 6, "limit": 3}, range(3, 6)),
                ({"limit": 2}, range(6, 8)),
                ({"before": 100, "limit": 50}, range(1, 8)),
                ({"before": 2}, range(1, 2)),
                ({"before": 1}, range(0)),
                ({"limit": 1000}, range(1, 8)),
            ]
            for index, (fields, expected) in enumerate(cases):
                request_id = f"h{index}"
                reply = await request(alice, {"type": "history", "id": request_id, "conv": "dm:alice:bob", **fields})
                assert_frame(reply, type="history", id=request_id, conv="dm:alice:bob")
                wanted = [seq - 1 for seq in expected]
                assert_msgs_match_acks(
                    reply["messages"], [acks[i] for i in wanted], "alice", "bob", [bodies[i] for i in wanted]
                )

            reply = await request(bob, {"type": "history", "id": "hb", "conv": "dm:alice:bob", "limit": 1})
            assert_frame(reply, type="history", id="hb")
            assert seqs(reply["messages"]) == [7]
            reply = await request(alice, {"type": "history", "id": "hz", "conv": "dm:alice:zed"})
            assert_frame(reply, type="history", id="hz", conv="dm:alice:zed", messages=[])

    run(scenario())


@pytest.mark.parametrize(
    ("history_frame", "code"),
    [
        pytest.param({"conv": "dm:alice:bob"}, "forbidden", id="other-users-dm"),
        pytest.param({"conv": "g:team"}, "forbidden", id="group-not-joined"),
        pytest.param({"conv": "nope"}, "bad_request", id="no-prefix"),
        pytest.param({"conv": "dm:bob:alice"}, "bad_request", id="unsorted-dm"),
        pytest.param({"conv": "dm:carol"}, "bad_request", id="dm-with-one-user"),
        pytest.param({"conv": "dm:carol:not a user"}, "bad_request", id="invalid-user-id"),
        pytest.param({}, "bad_request", id="no-conv"),
        pytest.param({"conv": "dm:alice:carol", "limit": 0}, "bad_request", id="limit-0"),
        pytest.param({"conv": "dm:alice:carol", "limit": 1001}, "bad_request", id="limit-1001"),
    ],
)
def test_history_refusals_keep_the_connection(dev_host, history_frame, code):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            await send_message(alice, "a-1", "bob", "secret")
            carol, _ = await login_as(dev_host.url, "carol")
            async with carol:
                error = await request(carol, {"type": "history", "id": "h1", **history_frame})
                assert_frame(error, type="error", id="h1", code=code)
                assert isinstance(error.get("message"), str), error
                await expect_pong(carol, "after-history")

    run(scenario())


# --- read receipts --------------------------------------------------------------


def test_read_is_relayed_to_the_other_member_and_the_readers_other_sessions(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob_phone, _ = await login_as(dev_host.url, "bob")
        bob_laptop, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice, bob_phone, bob_laptop, carol:
            for n in range(1, 4):
                await send_message(alice, f"a-{n}", "bob", {"n": n})
            for session in (bob_phone, bob_laptop):
                assert seqs([await recv_frame(session) for _ in range(3)]) == [1, 2, 3]

            relayed = {"type": "read", "conv": "dm:alice:bob", "user": "bob", "seq": 3}
            reply = await request(bob_phone, {"type": "read", "id": "r1", "conv": "dm:alice:bob", "seq": 3})
            assert_frame(reply, type="ok", id="r1")
            assert_frame(await recv_frame(alice), **relayed)
            assert_frame(await recv_frame(bob_laptop), **relayed)
            await expect_pong(bob_phone, "reader-gets-no-relay")
            await expect_pong(carol, "outsider-gets-no-relay")

            # The cursor only moves forward: an older seq changes nothing and is not relayed.
            assert_frame(
                await request(bob_phone, {"type": "read", "id": "r2", "conv": "dm:alice:bob", "seq": 2}),
                type="ok",
                id="r2",
            )
            await expect_pong(alice, "no-relay-backwards")
            await expect_pong(bob_laptop, "no-relay-backwards")

            refusals = [
                ({"conv": "dm:alice:bob", "seq": 4}, bob_phone, "bad_request"),
                ({"conv": "dm:alice:bob", "seq": 1}, carol, "forbidden"),
                ({"conv": "dm:bob:alice", "seq": 1}, bob_phone, "bad_request"),
            ]
            for index, (fields, session, code) in enumerate(refusals):
                error = await request(session, {"type": "read", "id": f"x{index}", **fields})
                assert_frame(error, type="error", id=f"x{index}", code=code)

            # Without an id there is no reply, and the relay still happens; alice reads too.
            await send_message(alice, "a-4", "bob", {"n": 4})
            for session in (bob_phone, bob_laptop):
                assert_frame(await recv_frame(session), type="msg", seq=4)
            await send_frame(bob_laptop, {"type": "read", "conv": "dm:alice:bob", "seq": 4})
            assert_frame(await recv_frame(alice), **{**relayed, "seq": 4})
            assert_frame(await recv_frame(bob_phone), **{**relayed, "seq": 4})
            await expect_pong(bob_laptop, "no-reply-without-id")

            await send_frame(alice, {"type": "read", "conv": "dm:alice:bob", "seq": 4})
            for session in (bob_phone, bob_laptop):
                assert_frame(await recv_frame(session), **{**relayed, "user": "alice", "seq": 4})
            await expect_pong(alice, "alice-gets-no-relay")

    run(scenario())


# --- the host's console -------------------------------------------------------------


class Console:
    """The host's stdin commands and their replies: one `history` or `error` line per command."""

    def __init__(self, host):
        self.host = host
        self.replies = 0

    def run(self, line):
        self.host.command(line)
        self.replies += 1
        replies = self.host.wait_for_events(lambda e: e.get("event") in ("history", "error"), self.replies)
        return replies[-1]


def test_host_history_command_reads_the_store_before_and_after_a_restart(dev_hosts, tmp_path):
    host = dev_hosts.start(tmp_path / "imbed.db")

    async def send_three():
        alice, _ = await login_as(host.url, "alice")
        async with alice:
            return [await send_message(alice, f"a-{n}", "bob", {"n": n}) for n in range(1, 4)]

    acks = run(send_three())
    bodies = [{"n": n} for n in range(1, 4)]
    console = Console(host)
    reply = console.run("history dm:alice:bob 2")
    assert_frame(reply, event="history", conv="dm:alice:bob")
    assert_msgs_match_acks(reply["messages"], acks[1:], "alice", "bob", bodies[1:])

    host = dev_hosts.restart(host)
    console = Console(host)
    reply = console.run("history dm:alice:bob")
    assert_frame(reply, event="history", conv="dm:alice:bob")
    assert_msgs_match_acks(reply["messages"], acks, "alice", "bob", bodies)
    assert console.run("history dm:a:b") == {"event": "history", "conv": "dm:a:b", "messages": []}

    for bad in ["history", "history nope", "history dm:bob:alice", "history dm:alice:bob 0",
                "history dm:alice:bob 1001", "history dm:alice:bob ten", "history dm:alice:bob 2 extra"]:
        reply = console.run(bad)
        assert_frame(reply, event="error", command="history")
        assert isinstance(reply.get("message"), str) and reply["message"], (bad, reply)
    assert_frame(console.run("history dm:alice:bob 1"), event="history", conv="dm:alice:bob")


# --- a store that cannot be used -------------------------------------------------


def run_host_to_exit(db):
    """Run imbed-host on db, expecting it to exit on its own; returns the CompletedProcess."""
    return subprocess.run(
        [str(HOST_BINARY), "--listen", "127.0.0.1:0", "--db", str(db), "--dev-auth"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
    )


def test_db_in_a_missing_directory_fails_at_start(tmp_path):
    db = tmp_path / "nonexistent-dir" / "x.db"
    result = run_host_to_exit(db)
    assert result.returncode == 1, result
    assert "imbed-host: store error: " in result.stderr, result.stderr
    assert str(db) in result.stderr or "unable to open" in result.stderr, result.stderr
    assert "listening" not in result.stdout, result.stdout


def test_db_that_is_not_a_database_fails_at_start_and_is_left_alone(tmp_path):
    db = tmp_path / "random.db"
    garbage = random.Random(20240601).randbytes(8192)
    db.write_bytes(garbage)
    result = run_host_to_exit(db)
    assert result.returncode == 1, result
    assert "imbed-host: store error: " in result.stderr, result.stderr
    assert "not a database" in result.stderr, result.stderr
    assert db.read_bytes() == garbage, "the host wrote into a file that is not its database"


# --- crashes ---------------------------------------------------------------------------


class CrashSender:
    """One user of the crash test. It sends to the next user with up to
    CRASH_WINDOW messages unacked, through host crashes, and checks every ack
    against what the server promised before: a message stored before a crash
    keeps its seq when retried; no id ever gets two seqs, no seq two ids."""

    def __init__(self, user, peer, sender_to_me):
        self.user = user
        self.peer = peer
        self.conv = direct_conv(user, peer)
        self.inbound_conv = direct_conv(sender_to_me, user)
        self.messages_made = 0
        self.pending = {}  # client id -> body: sent, not acked yet; in send order
        self.acked = {}  # client id -> seq
        self.seq_owners = {}  # seq -> client id
        self.pending_at_crashes = 0
        self.stored_before_ack = 0

    def expected_rows(self):
        """(conv, seq, sender, client_id) of every acked message."""
        return {(self.conv, seq, self.user, client_id) for client_id, seq in self.acked.items()}

    def _make_message(self):
        self.messages_made += 1
        client_id = f"{self.user}-{self.messages_made}"
        self.pending[client_id] = {"from": self.user, "n": self.messages_made}
        return client_id

    async def _recv_reply(self, ws):
        """The next frame that is not a live msg of the conversation this user receives in."""
        while True:
            frame = await recv_frame(ws)
            if frame.get("type") != "msg":
                return frame
            assert_frame(frame, conv=self.inbound_conv, to=self.user)

    async def _recover(self, ws):
        """Reads back the conversation's newest messages after a crash.

        Returns ({client id: (seq, ts)} of the pending messages the store already
        holds, the conversation's last seq). Every message there must be one
        this user sent, at the seq it was acked with if it was acked.
        """
        await send_frame(
            ws, {"type": "history", "id": "recover", "conv": self.conv, "limit": RECOVERY_HISTORY_LIMIT}
        )
        reply = await self._recv_reply(ws)
        assert_frame(reply, type="history", id="recover", conv=self.conv)
        stored_unacked = {}
        last_seq = 0
        for msg in reply["messages"]:
            client_id, seq = msg["id"], msg["seq"]
            assert_frame(msg, to=self.peer, **{"from": self.user})
            last_seq = max(last_seq, seq)
            if client_id in self.acked:
                assert self.acked[client_id] == seq, f"{client_id} was acked with seq {self.acked[client_id]}: {msg}"
            else:
                assert client_id in self.pending, f"{self.conv} holds {client_id}, which was never sent: {msg}"
                assert msg["body"] == self.pending[client_id], msg
                stored_unacked[client_id] = (seq, msg["ts"])
        newest_acked = max(self.acked.values(), default=0)
        assert last_seq >= newest_acked, f"{self.conv}: seq {newest_acked} was acked, the store ends at {last_seq}"
        return stored_unacked, last_seq

    def _take_ack(self, frame, stored_unacked, last_seq):
        assert_frame(frame, type="ack", conv=self.conv)
        client_id, seq = frame["id"], frame["seq"]
        assert client_id in self.pending, f"ack for {client_id}, which is not waiting for one: {frame}"
        if client_id in stored_unacked:
            stored_seq, stored_ts = stored_unacked.pop(client_id)
            assert (seq, frame["ts"]) == (stored_seq, stored_ts), (
                f"{client_id} was stored before the crash with seq {stored_seq}, ts {stored_ts}: {frame}"
            )
            self.stored_before_ack += 1
        else:
            assert seq > last_seq, f"{client_id}, not stored before the crash, got an existing seq: {frame}"
        owner = self.seq_owners.setdefault(seq, client_id)
        assert owner == client_id, f"{self.conv} seq {seq} acked for both {owner} and {client_id}"
        self.acked[client_id] = seq
        del self.pending[client_id]

    async def run_session(self, url, keep_sending):
        """One connection: recover, retry every pending message with its id,
        then, when keep_sending, send new ones until the connection drops;
        otherwise return once nothing is pending."""
        ws, _ = await login_as(url, self.user)
        async with ws:
            stored_unacked, last_seq = await self._recover(ws)
            slots = asyncio.Semaphore(CRASH_WINDOW)

            async def write():
                async def send(client_id):
                    await slots.acquire()
                    body = self.pending[client_id]
                    await send_frame(ws, {"type": "send", "id": client_id, "to": self.peer, "body": body})

                for client_id in list(self.pending):
                    await send(client_id)
                while keep_sending:
                    await send(self._make_message())

            async def read():
                while keep_sending or self.pending:
                    self._take_ack(await self._recv_reply(ws), stored_unacked, last_seq)
                    slots.release()

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(write())
                tasks.create_task(read())

    async def send_until_the_host_dies(self, url):
        try:
            await self.run_session(url, keep_sending=True)
        except* (ConnectionClosed, InvalidHandshake, ConnectionError):
            pass
        self.pending_at_crashes += len(self.pending)


async def sync_everything(url, user):
    """Every message of user's conversations, through sync from zero: ({(conv, seq, from, id)}, {conv: last_seq})."""
    ws, _ = await login_as(url, user)
    received = set()
    cursors = {}
    async with ws:
        for round_number in range(MAX_SYNC_ROUNDS):
            msgs, synced = await sync(ws, f"all-{round_number}", cursors=dict(cursors), limit=1000)
            for msg in msgs:
                conv = msg["conv"]
                assert msg["seq"] == cursors.get(conv, 0) + 1, f"sync skipped or repeated a seq: {msg}"
                cursors[conv] = msg["seq"]
                received.add((conv, msg["seq"], msg["from"], msg["id"]))
            states = synced_states(synced)
            if not any(more for _, more in states.values()):
                return received, {conv: last_seq for conv, (last_seq, _) in states.items()}
    pytest.fail(f"{user} still had more to sync after {MAX_SYNC_ROUNDS} rounds")


def read_database(db):
    """Read-only: the integrity check, the schema version and every message row
    as (conv, seq, sender, recipient, client_id, body)."""
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
        integrity = connection.execute("PRAGMA integrity_check").fetchall()
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        rows = connection.execute("SELECT conv, seq, sender, recipient, client_id, body FROM messages").fetchall()
    return integrity, version, rows


def test_acked_messages_survive_sigkill_and_retries_keep_their_seq(dev_hosts, tmp_path):
    db = tmp_path / "crash.db"
    senders = [
        CrashSender(user, CRASH_USERS[(i + 1) % len(CRASH_USERS)], CRASH_USERS[i - 1])
        for i, user in enumerate(CRASH_USERS)
    ]
    seed = random.randrange(2**32)
    print(f"crash test seed {seed}")
    rng = random.Random(seed)

    async def scenario():
        host = dev_hosts.start(db)
        for round_number in range(1, CRASH_ROUNDS + 1):
            sessions = [asyncio.create_task(s.send_until_the_host_dies(host.url)) for s in senders]
            await asyncio.sleep(rng.uniform(*CRASH_KILL_AFTER_S))
            ended_early = [task for task in sessions if task.done()]
            for task in ended_early:
                task.result()  # raises what ended it, if anything did
            assert not ended_early, f"round {round_number}: a session ended before the host was killed"
            host = await asyncio.to_thread(dev_hosts.restart, host, True)
            await asyncio.gather(*sessions)

        await asyncio.gather(*(s.run_session(host.url, keep_sending=False) for s in senders))
        for sender in senders:
            assert sender.pending == {}, f"{sender.user} still waits for acks: {sender.pending}"

        for i, sender in enumerate(senders):
            received, last_seqs = await sync_everything(host.url, sender.user)
            receiving_from = senders[i - 1]
            expected = sender.expected_rows() | receiving_from.expected_rows()
            assert received == expected, f"{sender.user}: sync from zero differs from the acks"
            assert last_seqs == {sender.conv: len(sender.acked), sender.inbound_conv: len(receiving_from.acked)}
        await asyncio.to_thread(dev_hosts.stop, host)

    run(scenario(), CRASH_TEST_TIMEOUT_S)

    integrity, version, rows = read_database(db)
    assert integrity == [("ok",)]
    assert version >= 1
    stored = {(conv, seq, sender, client_id) for conv, seq, sender, _, client_id, _ in rows}
    acked = set().union(*(s.expected_rows() for s in senders))
    assert acked - stored == set(), "acked messages missing from the database"
    assert stored - acked == set(), "the database holds messages that were never acked"
    seqs_by_conv = defaultdict(list)
    for conv, seq, *_ in rows:
        seqs_by_conv[conv].append(seq)
    for conv, conv_seqs in seqs_by_conv.items():
        assert sorted(conv_seqs) == list(range(1, len(conv_seqs) + 1)), f"{conv} has gaps or repeats"
    key_counts = Counter((sender, client_id) for _, _, sender, _, client_id, _ in rows)
    repeated_keys = [key for key, count in key_counts.items() if count > 1]
    assert repeated_keys == [], "idempotency keys stored twice"
    peer_of = {s.user: s.peer for s in senders}
    for conv, seq, sender, recipient, client_id, body in rows:
        assert recipient == peer_of[sender], (conv, seq, sender, recipient)
        assert json.loads(body) == {"from": sender, "n": int(client_id.rsplit("-", 1)[1])}, (conv, seq, body)

    pending_at_crashes = sum(s.pending_at_crashes for s in senders)
    assert pending_at_crashes > 0, "no send was in flight at any kill: the test exercised no retry"
    print(
        f"{len(rows)} messages; {pending_at_crashes} unacked at a kill, of which"
        f" {sum(s.stored_before_ack for s in senders)} were stored before it"
    )
