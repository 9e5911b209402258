"""Cluster interop: Python `websockets` clients against several `imbed-host`
nodes on one PostgreSQL database and one Redis (docs/CLUSTER.md).

Covers what a client sees when it and the users it talks to are on
different nodes: direct chat both ways, one user's sessions on two nodes,
presence, a group run from one node's host with members on every node, the
host's `send` reaching another node's user, and a node killed with SIGKILL
while messages flow, after which a client syncs on the other node. The last
test, an expected failure, pins an engine bug: messages a killed node stored
but never published are pushed again, from the other node's backfill, to a
session that already has them.

Each test has a database and a Redis of its own (conftest.py, `cluster`).
"""

import asyncio
import json
import socket
import threading
import time
from contextlib import AsyncExitStack

import pytest
from websockets.exceptions import ConnectionClosed

from test_durability import request, run, seqs, sync, synced_states
from test_groups import assert_group_msg, expect_frame, expect_nothing, member_notice
from test_presence import close_and_await_disconnected, presence, watch
from test_python_clients import (
    REPLY_TIMEOUT_S,
    assert_frame,
    assert_msg,
    login_as,
    recv_frame,
    send_frame,
    send_message,
)

# The kill test's nodes renew their presence every 200 ms and count as dead
# one second after their last renewal (the defaults are 1 s and 5 s).
FAST_CLUSTER_CONFIG = {"cluster": {"heartbeat_ms": 200, "presence_ttl_ms": 1000}}
# Sends a client of the kill test keeps unacknowledged at once.
KILL_WINDOW = 10
# The kill comes once the doomed node's client has this many acks and this many live messages.
KILL_AFTER = 20
# Messages the survivor's sender still sends after the kill, while their recipient is offline.
SENT_WHILE_OFFLINE = 30
# A sender of the kill test stops here whatever happens, so the test stays bounded.
MAX_SENDS = 1000
# How long the kill test waits for a condition that takes milliseconds on loopback.
KILL_WAIT_S = 10
# How long the kill test waits for a duplicate that would come late (erin's
# frames are read by a task, so the ping that proves nothing more waits cannot be used).
LATE_DUPLICATE_WAIT_S = 0.3
# sync rounds a client may need to catch up before it is a failure.
MAX_SYNC_ROUNDS = 20


# --- helpers ---------------------------------------------------------------------


def body_of(client_id):
    """The body every message of these tests carries: made from its client id, so a receiver can check it."""
    return {"id": client_id}


async def send_burst(ws, prefix, count, to=None, group=None):
    """Send count messages, prefix-1 to prefix-count, all before reading any reply; returns their ids."""
    client_ids = [f"{prefix}-{n}" for n in range(1, count + 1)]
    for client_id in client_ids:
        frame = {"type": "send", "id": client_id, "body": body_of(client_id)}
        if group is None:
            frame["to"] = to
        else:
            frame["group"] = group
        await send_frame(ws, frame)
    return client_ids


async def collect(ws, acks, msgs):
    """Exactly `acks` ack frames and `msgs` msg frames, in whatever order they come: (acks, msgs).

    Any other frame, or one more of either kind before the other is complete, fails.
    """
    got_acks, got_msgs = [], []
    while len(got_acks) < acks or len(got_msgs) < msgs:
        frame = await recv_frame(ws)
        if frame.get("type") == "ack" and len(got_acks) < acks:
            got_acks.append(frame)
        elif frame.get("type") == "msg" and len(got_msgs) < msgs:
            got_msgs.append(frame)
        else:
            pytest.fail(f"unexpected frame {frame} with {len(got_acks)}/{acks} acks, {len(got_msgs)}/{msgs} msgs")
    return got_acks, got_msgs


def assert_acked_once(acks, client_ids, conv):
    """acks acknowledge each of client_ids once, in conv; returns {client id: ack}."""
    by_id = {ack["id"]: ack for ack in acks}
    assert sorted(by_id) == sorted(client_ids) and len(acks) == len(client_ids), acks
    for ack in acks:
        assert_frame(ack, type="ack", conv=conv)
    return by_id


def assert_delivered_once_in_order(msgs, acks_by_id, sender, to):
    """msgs are exactly the direct messages acks_by_id acknowledged, each once, in ascending seq."""
    assert seqs(msgs) == sorted(ack["seq"] for ack in acks_by_id.values()), f"not each once in seq order: {seqs(msgs)}"
    for msg in msgs:
        assert msg.get("id") in acks_by_id, msg
        assert_msg(msg, acks_by_id[msg["id"]], sender, to, msg["id"], body_of(msg["id"]))


async def console(node, line, reply_event):
    """Run a stdin command on node and return its reply: the next `reply_event` (or `error`) line."""

    def is_reply(event):
        return event.get("event") in (reply_event, "error")

    earlier = len(node.events(is_reply))
    node.command(line)
    replies = await asyncio.to_thread(node.wait_for_events, is_reply, earlier + 1)
    return replies[-1]


async def history(ws, conv, request_id="h"):
    """The messages of conv's history, up to 1000, asserting the reply's shape."""
    reply = await request(ws, {"type": "history", "id": request_id, "conv": conv, "limit": 1000})
    assert_frame(reply, type="history", id=request_id, conv=conv)
    return reply["messages"]


def assert_stored_once(stored, acks):
    """stored (a conversation's messages from history or sync) holds exactly the acked messages,
    each once, under its acked seq, gapless from 1."""
    assert seqs(stored) == list(range(1, len(stored) + 1)), f"gaps or repeats: {seqs(stored)}"
    assert {msg["seq"]: msg["id"] for msg in stored} == {ack["seq"]: ack["id"] for ack in acks}


def contiguous_cursor(seen_seqs):
    """The highest seq n such that every seq 1..n was seen: the cursor a client may sync from."""
    cursor = 0
    seen = set(seen_seqs)
    while cursor + 1 in seen:
        cursor += 1
    return cursor


async def sync_rounds(ws, request_id, cursors, limit=1000):
    """Sync until no conversation has more: (every msg, in arrival order; {conv: last_seq}).

    The cursors move to the highest seq received in each conversation, as a client's do.
    """
    cursors = dict(cursors)
    received = []
    for round_number in range(MAX_SYNC_ROUNDS):
        msgs, synced = await sync(ws, f"{request_id}-{round_number}", cursors=dict(cursors), limit=limit)
        for msg in msgs:
            assert msg["seq"] == cursors.get(msg["conv"], 0) + 1, f"sync skipped or repeated a seq: {msg}"
            cursors[msg["conv"]] = msg["seq"]
        received += msgs
        states = synced_states(synced)
        if not any(more for _, more in states.values()):
            return received, {conv: last_seq for conv, (last_seq, _) in states.items()}
    pytest.fail(f"still more to sync after {MAX_SYNC_ROUNDS} rounds")


async def eventually(condition, what, timeout=KILL_WAIT_S):
    """Wait until condition() is true, checking every 10 ms; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


# --- direct messages -------------------------------------------------------------


def test_users_on_three_nodes_chat_both_ways_gapless_in_order_and_once(cluster):
    n1, n2, n3 = cluster.start_many(3)

    async def scenario():
        alice, _ = await login_as(n1.url, "alice")
        bob, _ = await login_as(n2.url, "bob")
        carol, _ = await login_as(n3.url, "carol")
        async with alice, bob, carol:
            all_acks = {"dm:alice:bob": [], "dm:bob:carol": []}

            # alice (node 1) to bob (node 2): twenty in flight at once.
            sent = await send_burst(alice, "a", 20, to="bob")
            acks, _ = await collect(alice, 20, 0)
            acked = assert_acked_once(acks, sent, "dm:alice:bob")
            assert sorted(seqs(acks)) == list(range(1, 21))
            _, msgs = await collect(bob, 0, 20)
            assert_delivered_once_in_order(msgs, acked, "alice", "bob")
            all_acks["dm:alice:bob"] += acks

            # And back, from node 2 to node 1.
            sent = await send_burst(bob, "b", 10, to="alice")
            acks, _ = await collect(bob, 10, 0)
            acked = assert_acked_once(acks, sent, "dm:alice:bob")
            assert sorted(seqs(acks)) == list(range(21, 31))
            _, msgs = await collect(alice, 0, 10)
            assert_delivered_once_in_order(msgs, acked, "bob", "alice")
            all_acks["dm:alice:bob"] += acks

            # All at once: alice and bob write the same conversation from two
            # nodes, and carol (node 3) writes to bob meanwhile.
            sent_a = await send_burst(alice, "a2", 15, to="bob")
            sent_b = await send_burst(bob, "b2", 15, to="alice")
            sent_c = await send_burst(carol, "c", 15, to="bob")
            (acks_a, to_alice), (acks_b, to_bob), (acks_c, _) = await asyncio.gather(
                collect(alice, 15, 15), collect(bob, 15, 30), collect(carol, 15, 0)
            )
            acked_a = assert_acked_once(acks_a, sent_a, "dm:alice:bob")
            acked_b = assert_acked_once(acks_b, sent_b, "dm:alice:bob")
            acked_c = assert_acked_once(acks_c, sent_c, "dm:bob:carol")
            assert sorted(seqs(acks_a + acks_b)) == list(range(31, 61)), "one gapless sequence for both nodes' sends"
            assert sorted(seqs(acks_c)) == list(range(1, 16))
            assert_delivered_once_in_order(to_alice, acked_b, "bob", "alice")
            assert_delivered_once_in_order([m for m in to_bob if m["conv"] == "dm:alice:bob"], acked_a, "alice", "bob")
            assert_delivered_once_in_order([m for m in to_bob if m["conv"] == "dm:bob:carol"], acked_c, "carol", "bob")
            all_acks["dm:alice:bob"] += acks_a + acks_b
            all_acks["dm:bob:carol"] += acks_c

            # Nothing comes twice: a duplicate of an earlier message would come
            # before each side's next message, from the same node.
            for (sender_ws, sender), (receiver_ws, receiver) in (
                ((alice, "alice"), (bob, "bob")), ((bob, "bob"), (alice, "alice")), ((carol, "carol"), (bob, "bob"))
            ):
                client_id = f"{sender}-last"
                ack = await send_message(sender_ws, client_id, receiver, body_of(client_id))
                all_acks[ack["conv"]].append(ack)
                assert_msg(await recv_frame(receiver_ws), ack, sender, receiver, client_id, body_of(client_id))
            assert seqs(all_acks["dm:alice:bob"][-2:]) == [61, 62]
            assert all_acks["dm:bob:carol"][-1]["seq"] == 16
            await expect_nothing([alice, bob, carol], "nothing-twice")

            # The store, read on a third node, holds every acked send once.
            assert_stored_once(await history(carol, "dm:bob:carol"), all_acks["dm:bob:carol"])
            reader, _ = await login_as(n3.url, "alice")
            async with reader:
                assert_stored_once(await history(reader, "dm:alice:bob"), all_acks["dm:alice:bob"])

    run(scenario())


def test_a_user_on_two_nodes_gets_everything_on_both_sessions_and_each_sees_the_others_sends(cluster):
    n1, n2, n3 = cluster.start_many(3)

    async def scenario():
        phone, _ = await login_as(n1.url, "dave")
        laptop, _ = await login_as(n2.url, "dave")
        carol, _ = await login_as(n3.url, "carol")
        async with phone, laptop, carol:
            ack = await send_message(carol, "c-1", "dave", body_of("c-1"))
            assert_frame(ack, conv="dm:carol:dave", seq=1)
            for session in (phone, laptop):
                assert_msg(await recv_frame(session), ack, "carol", "dave", "c-1", body_of("c-1"))

            # What the phone sends reaches carol and the laptop; the phone gets only its ack
            # (a msg of its own would come before the laptop's message below).
            ack = await send_message(phone, "p-1", "carol", body_of("p-1"))
            assert_frame(ack, conv="dm:carol:dave", seq=2)
            for session in (carol, laptop):
                assert_msg(await recv_frame(session), ack, "dave", "carol", "p-1", body_of("p-1"))

            ack = await send_message(laptop, "l-1", "carol", body_of("l-1"))
            assert_frame(ack, conv="dm:carol:dave", seq=3)
            for session in (carol, phone):
                assert_msg(await recv_frame(session), ack, "dave", "carol", "l-1", body_of("l-1"))

            # A note to oneself reaches one's session on the other node.
            ack = await send_message(phone, "p-2", "dave", body_of("p-2"))
            assert_frame(ack, conv="dm:dave:dave", seq=1)
            assert_msg(await recv_frame(laptop), ack, "dave", "dave", "p-2", body_of("p-2"))

            # A read on one node is relayed to the reader's other session and to carol.
            reply = await request(laptop, {"type": "read", "id": "r1", "conv": "dm:carol:dave", "seq": 3})
            assert_frame(reply, type="ok", id="r1")
            await expect_frame([carol, phone], type="read", conv="dm:carol:dave", user="dave", seq=3)
            await expect_nothing([phone, laptop, carol], "each-once")

    run(scenario())


# --- presence ----------------------------------------------------------------------


def test_presence_follows_users_on_other_nodes(cluster):
    n1, n2, n3 = cluster.start_many(3)

    async def scenario():
        erin, _ = await login_as(n1.url, "erin")
        async with erin:
            assert await watch(erin, ["frank", "gina", "henry"], "w1") == {
                "frank": False, "gina": False, "henry": False
            }

            frank_a, frank_a_welcome = await login_as(n2.url, "frank")
            await expect_frame([erin], **presence("frank", True))
            # Once node 1 heard it, a watch there answers that frank is online.
            ivan, _ = await login_as(n1.url, "ivan")
            async with ivan:
                assert await watch(ivan, ["frank"], "w2") == {"frank": True}

                # frank's second session, on a third node, changes nothing: had it
                # been announced, it would come before gina's arrival there.
                frank_b, frank_b_welcome = await login_as(n3.url, "frank")
                gina, _ = await login_as(n3.url, "gina")
                await expect_frame([erin], **presence("gina", True))

                # One of frank's two sessions ends: still online. Had node 2 said
                # otherwise, that would come before henry's arrival there.
                await close_and_await_disconnected(n2, frank_a, frank_a_welcome)
                henry, _ = await login_as(n2.url, "henry")
                await expect_frame([erin], **presence("henry", True))
                await expect_nothing([ivan], "ivan-watches-frank-only")

                # The last one ends: frank is offline for both watchers on node 1.
                await close_and_await_disconnected(n3, frank_b, frank_b_welcome)
                await expect_frame([erin, ivan], **presence("frank", False))

                await gina.close()
                await expect_frame([erin], **presence("gina", False))
                await henry.close()
                await expect_frame([erin], **presence("henry", False))
                await expect_nothing([erin, ivan], "nothing-more")

    run(scenario())


# --- groups ------------------------------------------------------------------------


def test_a_group_run_from_one_nodes_host_reaches_members_on_every_node_in_order(cluster):
    nodes = cluster.start_many(3)
    members = [f"m{n}" for n in range(1, 7)]
    each = 4

    async def scenario():
        assert await console(nodes[0], "create-group crew closed", "ok") == {
            "event": "ok", "command": "create-group", "group": "crew"
        }
        # Member i is on node i mod 3.
        sessions = [(await login_as(nodes[n % 3].url, member))[0] for n, member in enumerate(members)]
        try:
            # Node 1's host adds them one by one: each member added so far is
            # told, on whichever node it is, in the order of the additions.
            for n, member in enumerate(members):
                assert await console(nodes[0], f"add crew {member}", "ok") == {
                    "event": "ok", "command": "add", "group": "crew", "user": member
                }
                await expect_frame(sessions[: n + 1], **member_notice("crew", member, True))
            reply = await request(sessions[2], {"type": "members", "id": "m1", "group": "crew"})
            assert_frame(reply, type="members", id="m1", group="crew", closed=True, members=members)

            assert await console(nodes[0], 'group crew {"from":"host"}', "sent") == {
                "event": "sent", "group": "crew", "seq": 1
            }
            for ws in sessions:
                assert_frame(
                    await recv_frame(ws), type="msg", conv="g:crew", seq=1, group="crew", body={"from": "host"},
                    **{"from": "host"}
                )

            # Every member speaks at once, from all three nodes.
            sent = {member: await send_burst(ws, member, each, group="crew") for member, ws in zip(members, sessions)}
            others = each * (len(members) - 1)
            results = await asyncio.gather(*(collect(ws, each, others) for ws in sessions))
            acked = {}
            for member, (acks, _) in zip(members, results):
                for client_id, ack in assert_acked_once(acks, sent[member], "g:crew").items():
                    acked[(member, client_id)] = ack
            last = 1 + each * len(members)
            assert sorted(ack["seq"] for ack in acked.values()) == list(range(2, last + 1)), "one gapless sequence"
            for member, (acks, msgs) in zip(members, results):
                assert seqs(msgs) == sorted(seqs(msgs)), f"{member}: not in seq order: {seqs(msgs)}"
                assert sorted(seqs(msgs) + seqs(acks)) == list(range(2, last + 1)), f"{member}: not each once"
                for msg in msgs:
                    assert msg["from"] != member, msg
                    ack = acked[(msg["from"], msg.get("id"))]
                    assert_group_msg(msg, ack, msg["from"], "crew", msg["id"], body_of(msg["id"]))

            # Another node's host speaks in the group too; its message is the
            # next thing every member hears (no earlier message comes twice).
            assert await console(nodes[1], 'group crew {"from":"n2"}', "sent") == {
                "event": "sent", "group": "crew", "seq": last + 1
            }
            await expect_frame(
                sessions, type="msg", conv="g:crew", seq=last + 1, group="crew", body={"from": "n2"}, **{"from": "host"}
            )
            await expect_nothing(sessions, "nothing-twice")

            stored = await history(sessions[4], "g:crew")
            assert seqs(stored) == list(range(1, last + 2))
            assert {msg["seq"]: (msg["from"], msg["id"]) for msg in stored[1:-1]} == {
                ack["seq"]: key for key, ack in acked.items()
            }
        finally:
            for ws in sessions:
                await ws.close()

    run(scenario())


# --- the host ------------------------------------------------------------------------


def test_the_hosts_send_on_one_node_reaches_a_user_on_another(cluster):
    n1, n2, n3 = cluster.start_many(3)

    async def scenario():
        bob, _ = await login_as(n1.url, "bob")
        async with bob:
            assert await console(n3, 'send bob {"k":0}', "sent") == {"event": "sent", "to": "bob", "seq": 1}
            msg = await recv_frame(bob)
            assert_frame(msg, type="msg", conv="dm:bob:host", seq=1, to="bob", body={"k": 0}, **{"from": "host"})
            assert isinstance(msg.get("id"), str) and msg["id"], msg

            # The hosts of nodes 2 and 3 write the same conversation at once.
            for k in range(1, 6):
                for node in (n2, n3):
                    node.command(f'send bob {{"node":"{node.node_id}","k":{k}}}')
            is_sent = lambda e: e.get("event") in ("sent", "error")
            sent = {
                "n2": await asyncio.to_thread(n2.wait_for_events, is_sent, 5),
                "n3": (await asyncio.to_thread(n3.wait_for_events, is_sent, 6))[1:],
            }
            seq_of = {}
            for node_id, replies in sent.items():
                for k, reply in enumerate(replies, 1):
                    assert_frame(reply, event="sent", to="bob")
                    seq_of[(node_id, k)] = reply["seq"]
                # Each node stores its own commands in the order it took them.
                assert seqs(replies) == sorted(seqs(replies)), replies
            assert sorted(seq_of.values()) == list(range(2, 12)), "one gapless sequence for both hosts"

            msgs = [await recv_frame(bob) for _ in range(10)]
            assert seqs(msgs) == list(range(2, 12)), "bob gets each once, in seq order"
            for msg in msgs:
                assert_frame(msg, type="msg", conv="dm:bob:host", to="bob", **{"from": "host"})
                assert msg["seq"] == seq_of[(msg["body"]["node"], msg["body"]["k"])], msg

            # bob answers from node 1; node 2's host reads the whole conversation from the store.
            ack = await send_message(bob, "b-1", "host", "thanks")
            assert_frame(ack, conv="dm:bob:host", seq=12)
            reply = await console(n2, "history dm:bob:host", "history")
            assert_frame(reply, event="history", conv="dm:bob:host")
            assert seqs(reply["messages"]) == list(range(1, 13))
            assert_frame(reply["messages"][-1], id="b-1", body="thanks", **{"from": "bob"})
            await expect_nothing([bob], "nothing-twice")

    run(scenario())


# --- a node killed -------------------------------------------------------------------


class LiveSession:
    """A connection that a task of its own reads until it ends, recording acks and msgs as they come.

    send_until sends to one user with at most KILL_WINDOW sends unacknowledged.
    """

    def __init__(self, ws, user):
        self.ws = ws
        self.user = user
        self.sent = []  # client ids, in sending order
        self.acks = {}  # client id -> ack
        self.received = []  # msg frames, in arrival order
        self.others = []  # any other frame: none is expected
        self.limit = MAX_SENDS
        self.closed = asyncio.Event()
        self._window = asyncio.Semaphore(KILL_WINDOW)
        self._reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "ack" and frame.get("id") in self.sent and frame["id"] not in self.acks:
                    self.acks[frame["id"]] = frame
                    self._window.release()
                elif frame.get("type") == "msg":
                    self.received.append(frame)
                else:
                    self.others.append(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for _ in range(KILL_WINDOW):  # a sender waiting for room ends too
                self._window.release()

    async def send_until(self, to, prefix, stop):
        """Send prefix-1, prefix-2... to `to` until stop is set, limit is reached or the connection ends."""
        try:
            while not stop.is_set() and not self.closed.is_set() and len(self.sent) < self.limit:
                await self._window.acquire()
                if self.closed.is_set():
                    return
                client_id = f"{prefix}-{len(self.sent) + 1}"
                self.sent.append(client_id)
                await send_frame(self.ws, {"type": "send", "id": client_id, "to": to, "body": body_of(client_id)})
        except ConnectionClosed:
            pass

    def unacked(self):
        return [client_id for client_id in self.sent if client_id not in self.acks]

    async def stop_reading(self):
        """Close the connection and wait for the reader to end."""
        await self.ws.close()
        await asyncio.wait_for(self._reader, REPLY_TIMEOUT_S)


def test_after_a_node_is_killed_a_client_syncs_on_the_other_and_gets_exactly_what_it_missed(cluster):
    doomed = cluster.start("doomed", FAST_CLUSTER_CONFIG)
    survivor = cluster.start("survivor", FAST_CLUSTER_CONFIG)

    async def scenario():
        async with AsyncExitStack() as cleanup:
            await killed_node_scenario(cleanup, cluster, doomed, survivor)

    run(scenario())


async def killed_node_scenario(cleanup, cluster, doomed, survivor):
    """The kill test's body; cleanup closes every connection it opens and ends every task it starts."""

    async def connect(node, user):
        ws, _ = await login_as(node.url, user)
        cleanup.push_async_callback(ws.close)
        return ws

    # carol, on the survivor, watches dora, on the doomed node, who never comes back.
    carol = await connect(survivor, "carol")
    assert await watch(carol, ["dora"]) == {"dora": False}
    await connect(doomed, "dora")
    await expect_frame([carol], **presence("dora", True))

    # alice is on the doomed node, bob and erin on the survivor. Both
    # conversations start before the kill, seen live on both nodes.
    alice_ws = await connect(doomed, "alice")
    bob_ws = await connect(survivor, "bob")
    erin_ws = await connect(survivor, "erin")
    first_to_bob = await send_message(alice_ws, "a-0", "bob", body_of("a-0"))
    assert_msg(await recv_frame(bob_ws), first_to_bob, "alice", "bob", "a-0", body_of("a-0"))
    first_to_erin = await send_message(alice_ws, "e-0", "erin", body_of("e-0"))
    assert_msg(await recv_frame(erin_ws), first_to_erin, "alice", "erin", "e-0", body_of("e-0"))
    assert (first_to_bob["seq"], first_to_erin["seq"]) == (1, 1)

    # bob writes to alice and alice to erin, without pause; the doomed node
    # is killed in the middle, and bob goes on while alice is away.
    alice, bob, erin = LiveSession(alice_ws, "alice"), LiveSession(bob_ws, "bob"), LiveSession(erin_ws, "erin")
    for session in (alice, bob, erin):
        cleanup.push_async_callback(session.stop_reading)
    stop_alice, stop_bob = asyncio.Event(), asyncio.Event()
    alice_sending = asyncio.create_task(alice.send_until("erin", "e", stop_alice))
    bob_sending = asyncio.create_task(bob.send_until("alice", "b", stop_bob))
    for task in (alice_sending, bob_sending):
        cleanup.callback(task.cancel)
    await eventually(
        lambda: len(alice.acks) >= KILL_AFTER and len(alice.received) >= KILL_AFTER,
        "alice has acks and live messages to lose",
    )
    await asyncio.to_thread(cluster.crash, doomed)
    await asyncio.wait_for(alice.closed.wait(), REPLY_TIMEOUT_S)
    await asyncio.wait_for(alice_sending, REPLY_TIMEOUT_S)
    bob.limit = len(bob.sent) + SENT_WHILE_OFFLINE
    await asyncio.wait_for(bob_sending, KILL_WAIT_S)
    await eventually(lambda: len(bob.acks) == len(bob.sent), "every send of bob's acked")
    assert len(bob.sent) < MAX_SENDS and len(alice.sent) < MAX_SENDS, "the kill came too late"
    unacked = alice.unacked()
    assert unacked, "no send of alice's was in flight at the kill: nothing is retried"

    # The dead node's users go offline for everyone within its presence TTL.
    await expect_frame([carol], **presence("dora", False))

    # What alice has: bob's messages up to the kill, in order, and the acks of her own.
    live = alice.received
    assert seqs(live) == list(range(2, 2 + len(live))), f"live messages with a gap: {seqs(live)}"
    for msg in live:
        assert_msg(msg, bob.acks[msg["id"]], "bob", "alice", msg["id"], body_of(msg["id"]))
    cursors = {
        "dm:alice:bob": contiguous_cursor([1] + seqs(live)),
        "dm:alice:erin": contiguous_cursor([1] + [ack["seq"] for ack in alice.acks.values()]),
    }

    # alice comes back on the survivor and syncs from her cursors.
    alice_ws = await connect(survivor, "alice")
    missed, last_seqs = await sync_rounds(alice_ws, "catch-up", cursors)
    missed_from_bob = [m for m in missed if m["conv"] == "dm:alice:bob"]
    missed_to_erin = [m for m in missed if m["conv"] == "dm:alice:erin"]
    assert len(missed) == len(missed_from_bob) + len(missed_to_erin), missed
    # From bob: exactly what was acked after her last live message, nothing she had.
    bob_seqs = sorted(ack["seq"] for ack in bob.acks.values())
    assert last_seqs["dm:alice:bob"] == bob_seqs[-1]
    assert seqs(missed_from_bob) == [seq for seq in bob_seqs if seq > cursors["dm:alice:bob"]]
    assert len(missed_from_bob) >= SENT_WHILE_OFFLINE
    for msg in missed_from_bob:
        assert_msg(msg, bob.acks[msg["id"]], "bob", "alice", msg["id"], body_of(msg["id"]))
    # Her own: every one stored past her last contiguous ack, acked or not.
    last_to_erin = last_seqs["dm:alice:erin"]
    assert seqs(missed_to_erin) == list(range(cursors["dm:alice:erin"] + 1, last_to_erin + 1))
    stored_unacked = {}
    for msg in missed_to_erin:
        if msg["id"] in alice.acks:
            assert_msg(msg, alice.acks[msg["id"]], "alice", "erin", msg["id"], body_of(msg["id"]))
        else:
            assert msg["id"] in unacked, f"a message alice never sent: {msg}"
            assert_frame(msg, to="erin", body=body_of(msg["id"]), **{"from": "alice"})
            stored_unacked[msg["id"]] = msg

    # From now on alice knows every message up to her cursors: none of those
    # may be pushed to her again (a backfill of what the dead node never
    # published must skip the sessions whose sync covered it; the test
    # below pins that case exactly). A repeat is recorded, and fails below.
    have = {(msg["conv"], msg["seq"]): msg["id"] for msg in missed + live}
    have.update({(ack["conv"], ack["seq"]): ack["id"] for ack in [first_to_bob, first_to_erin, *alice.acks.values()]})
    repeats = []

    async def next_new_frame():
        while True:
            frame = await recv_frame(alice_ws)
            if frame.get("type") != "msg" or (frame.get("conv"), frame.get("seq")) not in have:
                return frame
            assert have[(frame["conv"], frame["seq"])] == frame.get("id"), f"not the message alice has: {frame}"
            assert_frame(frame, body=body_of(frame["id"]))
            repeats.append(frame)

    # She retries every unacknowledged send with its id: one stored before
    # the kill gets its seq and ts back, the others are stored once now.
    for client_id in unacked:
        await send_frame(alice_ws, {"type": "send", "id": client_id, "to": "erin", "body": body_of(client_id)})
    retried = assert_acked_once([await next_new_frame() for _ in unacked], unacked, "dm:alice:erin")
    for client_id, msg in stored_unacked.items():
        assert_frame(retried[client_id], seq=msg["seq"], ts=msg["ts"])
    new_seqs = sorted(ack["seq"] for client_id, ack in retried.items() if client_id not in stored_unacked)
    assert new_seqs == list(range(last_to_erin + 1, last_to_erin + 1 + len(new_seqs)))
    have.update({(ack["conv"], ack["seq"]): ack["id"] for ack in retried.values()})
    await send_frame(alice_ws, {"type": "send", "id": "e-final", "to": "erin", "body": body_of("e-final")})
    final = await next_new_frame()
    assert_frame(final, type="ack", id="e-final", conv="dm:alice:erin")
    have[(final["conv"], final["seq"])] = final["id"]
    await send_frame(alice_ws, {"type": "ping", "id": "nothing-new-for-alice"})
    assert_frame(await next_new_frame(), type="pong", id="nothing-new-for-alice")

    # erin, live on the survivor all along, gets each of alice's messages once
    # and in order: any the dead node stored and never published come from the
    # store before the next one.
    acks_to_erin = [first_to_erin, *alice.acks.values(), *retried.values(), final]
    assert sorted(seqs(acks_to_erin)) == list(range(1, final["seq"] + 1)), "every message to erin acked once"
    by_seq = {ack["seq"]: ack for ack in acks_to_erin}
    await eventually(lambda: erin.received and erin.received[-1]["seq"] == final["seq"], "erin has the last message")
    await asyncio.sleep(LATE_DUPLICATE_WAIT_S)
    assert seqs(erin.received) == list(range(2, final["seq"] + 1)), f"erin: {seqs(erin.received)}"
    for msg in erin.received:
        assert_msg(msg, by_seq[msg["seq"]], "alice", "erin", msg["id"], body_of(msg["id"]))
    assert (alice.others, bob.others, erin.others, bob.received) == ([], [], [], [])

    # Every acked send is stored once: erin's and bob's syncs from zero, on new sessions.
    stored, _ = await sync_rounds(await connect(survivor, "erin"), "all", {})
    assert_stored_once(stored, acks_to_erin)
    stored, _ = await sync_rounds(await connect(survivor, "bob"), "all", {})
    assert_stored_once(stored, [first_to_bob, *bob.acks.values()])
    assert repeats == [], f"pushed again after her sync: {repeats}"
    print(
        f"alice: {len(live)} live messages, {len(missed_from_bob)} from sync; {len(unacked)} unacked at the kill,"
        f" {len(stored_unacked)} of them stored before it; {len(missed_to_erin)} of her own in sync;"
        f" {len(repeats)} pushed again after her sync"
    )


# --- a message a killed node stored but never published ------------------------------


class FreezableProxy:
    """A TCP proxy on a free loopback port to a Redis, for one node.

    freeze() cuts it as a network failure would: from then on nothing is
    forwarded either way (what arrives is dropped), and no connection is
    closed. Used as a context manager, it closes everything on exit.
    """

    def __init__(self, redis_url):
        host, port = redis_url.removeprefix("redis://").rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}"
        self._forwarding = threading.Lock()
        self._frozen = False
        self._closed = threading.Event()
        self._sockets = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self._target, timeout=REPLY_TIMEOUT_S)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                pump = threading.Thread(target=self._pump, args=(source, target), daemon=True)
                pump.start()
                self._threads.append(pump)

    def _pump(self, source, target):
        try:
            while data := source.recv(65536):
                with self._forwarding:
                    if not self._frozen:
                        target.sendall(data)
        except OSError:
            pass
        finally:
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def freeze(self):
        """Forward nothing more, from the moment this returns."""
        with self._forwarding:
            self._frozen = True

    def close(self):
        self._closed.set()
        self._listener.close()
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(timeout=REPLY_TIMEOUT_S)


class PushedAgain(AssertionError):
    """A session was pushed a message it already had."""


def test_a_message_a_killed_node_never_published_is_not_pushed_again_to_a_session_that_has_it(cluster):
    with FreezableProxy(cluster.redis) as proxy:
        doomed = cluster.start("doomed", FAST_CLUSTER_CONFIG, redis=proxy.url)
        try:
            survivor = cluster.start("survivor", FAST_CLUSTER_CONFIG)
            run(never_published_scenario(cluster, proxy, doomed, survivor))
        finally:
            cluster.crash(doomed)


async def never_published_scenario(cluster, proxy, doomed, survivor):
    erin, _ = await login_as(survivor.url, "erin")
    async with erin:
        alice, _ = await login_as(doomed.url, "alice")
        async with alice:
            first = await send_message(alice, "e-1", "erin", body_of("e-1"))
            assert_msg(await recv_frame(erin), first, "alice", "erin", "e-1", body_of("e-1"))
            # The doomed node loses Redis: it still stores and acknowledges, but publishes nothing.
            proxy.freeze()
            unpublished = [await send_message(alice, f"e-{n}", "erin", body_of(f"e-{n}")) for n in (2, 3)]
            assert seqs(unpublished) == [2, 3]
            await asyncio.to_thread(cluster.crash, doomed)
        await expect_nothing([erin], "never-published")

        # alice, back on the survivor, has everything: her sync brings nothing.
        alice, _ = await login_as(survivor.url, "alice")
        async with alice:
            msgs, synced = await sync(alice, "s1", cursors={"dm:alice:erin": 3})
            assert msgs == [] and synced_states(synced) == {"dm:alice:erin": (3, False)}

            # erin's reply shows the survivor the gap, which it reads back from the store.
            reply = await send_message(erin, "r-1", "alice", body_of("r-1"))
            assert_frame(reply, conv="dm:alice:erin", seq=4)
            for ack in unpublished:
                assert_msg(await recv_frame(erin), ack, "alice", "erin", ack["id"], body_of(ack["id"]))
            # For alice only erin's reply is new.
            frame = await recv_frame(alice)
            if frame.get("type") == "msg" and frame.get("seq") in (2, 3):
                raise PushedAgain(f"alice's new session was pushed seq {frame['seq']}, which it had: {frame}")
            assert_msg(frame, reply, "erin", "alice", "r-1", body_of("r-1"))
            await expect_nothing([alice, erin], "each-once")
