"""Replies, edits, deletes, reactions and search (issue 16) through imbed-host.

Python `websockets` clients against `imbed-host`, checking the rules of
docs/PROTOCOL.md, "Replies, edits, deletes and reactions" and "Search":
events as stored, numbered, delivered and idempotent messages; who may edit
and delete, the edit window, tombstones in `history` and `sync`, the erased
bodies gone from the SQLite file itself, one reaction per user and emoji and
the per-user limit, replies, and the convergence of every device's state
(an "apply events" model fed the live frames, a fresh `sync` and `history`);
then `search`: words, case and diacritics, the user's conversations only,
paging, deleted and edited messages, events, `conv` scoping and the query's
limits.
"""

import asyncio
import contextlib
import copy
import uuid

import pytest

from conftest import _start_host, _stop_cleanly
from test_config_file import write_config
from test_durability import request, run, sync
from test_python_clients import (
    assert_frame,
    assert_recent_ms,
    expect_pong,
    login_as,
    open_connection,
    recv_frame,
    send_frame,
)

# One reply may hold at most this many messages (history, sync): more than any test here sends.
ALL = 1000
EDIT_WINDOW_MS = 300
EVENT_KINDS = ("edit", "delete", "react", "unreact")


# --- hosts -------------------------------------------------------------------------


@contextlib.contextmanager
def hosted(tmp_path, config=None, db=":memory:", extra=()):
    """imbed-host --dev-auth, with config (a dict) as its --config file when
    given and the extra flags; stopped cleanly (exit 0, only JSON lines) afterwards."""
    args = ["--dev-auth", *extra]
    if config is not None:
        args += ["--config", str(write_config(tmp_path, config, f"imbed-host-{uuid.uuid4().hex[:8]}.json"))]
    host = _start_host(args, db)
    try:
        yield host
    finally:
        _stop_cleanly(host)


# --- requests ----------------------------------------------------------------------

# Frames the server pushes unasked; every other frame a test reads is a reply.
PUSHED_TYPES = ("msg", "member", "read", "typing", "presence")


async def ask(ws, frame, lenient=False):
    """Send a request and return its reply: the next frame, or with lenient
    the next one the server did not push on its own (those are dropped)."""
    if not lenient:
        return await request(ws, frame)
    await send_frame(ws, frame)
    while True:
        reply = await recv_frame(ws)
        if reply.get("type") not in PUSHED_TYPES:
            return reply


async def send(ws, client_id, body, to=None, group=None, reply_to=None, lenient=False):
    """Send to a user or a group and return the ack, checking its shape."""
    frame = {"type": "send", "id": client_id, "body": body}
    if to is not None:
        frame["to"] = to
    if group is not None:
        frame["group"] = group
    if reply_to is not None:
        frame["reply_to"] = reply_to
    ack = await ask(ws, frame, lenient)
    assert_frame(ack, type="ack", id=client_id)
    assert isinstance(ack.get("seq"), int) and ack["seq"] >= 1, ack
    assert_recent_ms(ack["ts"])
    return ack


def edit_frame(request_id, conv, seq, body):
    return {"type": "edit", "id": request_id, "conv": conv, "seq": seq, "body": body}


def delete_frame(request_id, conv, seq):
    return {"type": "delete", "id": request_id, "conv": conv, "seq": seq}


def react_frame(request_id, conv, seq, emoji, kind="react"):
    return {"type": kind, "id": request_id, "conv": conv, "seq": seq, "emoji": emoji}


async def acked(ws, frame, lenient=False):
    """Send an event request and return its ack, checking its shape."""
    ack = await ask(ws, frame, lenient)
    assert_frame(ack, type="ack", id=frame["id"], conv=frame["conv"])
    assert isinstance(ack.get("seq"), int) and ack["seq"] >= 1, ack
    assert_recent_ms(ack["ts"])
    return ack


async def refused(ws, frame, code, lenient=False):
    """Send a request, assert it is refused with code, and that the connection stays."""
    error = await ask(ws, frame, lenient)
    assert_frame(error, type="error", id=frame["id"], code=code)
    assert isinstance(error.get("message"), str), error
    if lenient:
        await drain(ws, f"after-{frame['id']}")
    else:
        await expect_pong(ws, f"after-{frame['id']}")
    return error


async def join(ws, group, request_id, lenient=False):
    reply = await ask(ws, {"type": "join", "id": request_id, "group": group}, lenient)
    assert_frame(reply, type="ok", id=request_id)


async def leave(ws, group, request_id, lenient=False):
    reply = await ask(ws, {"type": "leave", "id": request_id, "group": group}, lenient)
    assert_frame(reply, type="ok", id=request_id)


async def history(ws, conv, request_id="h", lenient=False):
    """Every message of conv (up to ALL), in ascending seq."""
    reply = await ask(ws, {"type": "history", "id": request_id, "conv": conv, "limit": ALL}, lenient)
    assert_frame(reply, type="history", id=request_id)
    messages = reply["messages"]
    assert [m["seq"] for m in messages] == sorted(m["seq"] for m in messages), messages
    return messages


def by_seq(messages):
    return {m["seq"]: m for m in messages}


async def sync_all(ws, request_id):
    """A sync from cursor 0 of every conversation: its msg frames, in the order they came."""
    msgs, synced = await sync(ws, request_id, limit=ALL)
    assert all(not state["more"] for state in synced["convs"].values()), synced
    return msgs


async def drain(ws, tag):
    """The frames waiting on ws: everything before the pong of a ping."""
    await send_frame(ws, {"type": "ping", "id": tag})
    frames = []
    while True:
        frame = await recv_frame(ws)
        if frame.get("type") == "pong" and frame.get("id") == tag:
            return frames
        frames.append(frame)


def assert_event(frame, ack, kind, target, sender, body, to=None, group=None):
    """frame is the msg frame of the event ack acknowledged."""
    expected = dict(type="msg", conv=ack["conv"], seq=ack["seq"], ts=ack["ts"], id=ack["id"], body=body,
                    kind=kind, target=target, **{"from": sender})
    if to is not None:
        expected["to"] = to
    if group is not None:
        expected["group"] = group
    assert_frame(frame, **expected)


def is_event(frame):
    return frame.get("kind") is not None


def no_reactions(frame):
    return frame.get("reactions") in (None, {}, "<missing>")


# --- the "apply events" model -------------------------------------------------------


class Model:
    """The state of the messages a client shows, built by applying msg frames
    in the order it got them, as PROTOCOL.md, "The state of a message", says
    a client does: a message takes the state its frame carries; an event
    changes its target when the client has it and ignores it otherwise."""

    def __init__(self):
        self.messages = {}  # (conv, seq) -> state
        self.events = {}  # (conv, seq) -> (kind, target)

    def apply(self, frame):
        assert frame.get("type") == "msg", frame
        key = (frame["conv"], frame["seq"])
        kind = frame.get("kind")
        if kind is None:
            reactions = frame.get("reactions") or {}
            for emoji, users in reactions.items():
                assert users == sorted(users, key=str.encode), f"reactions not sorted: {frame}"
            self.messages[key] = {
                "from": frame["from"],
                "ts": frame["ts"],
                "body": frame.get("body"),
                "deleted": frame.get("deleted") is True,
                "edited": frame.get("edited"),
                "reactions": {emoji: set(users) for emoji, users in reactions.items()},
                "reply_to": frame.get("reply_to"),
            }
            return
        assert kind in EVENT_KINDS, frame
        self.events[key] = (kind, frame["target"])
        target = self.messages.get((frame["conv"], frame["target"]))
        if target is None or target["deleted"]:
            return
        if kind == "edit":
            target["body"] = frame["body"]
            target["edited"] = frame["ts"]
        elif kind == "delete":
            target.update(body=None, deleted=True, reactions={})
        else:
            emoji = frame["body"]["emoji"]
            users = target["reactions"].setdefault(emoji, set())
            if kind == "react":
                users.add(frame["from"])
            else:
                users.discard(frame["from"])
            if not users:
                del target["reactions"][emoji]

    def apply_all(self, frames):
        for frame in frames:
            self.apply(frame)
        return self

    def state(self):
        """The messages' state, comparable between models."""
        state = {}
        for key, message in self.messages.items():
            message = copy.deepcopy(message)
            message["reactions"] = {emoji: sorted(users) for emoji, users in message["reactions"].items()}
            if message["deleted"]:
                # What a tombstone says about an edit before its delete is not the contract's.
                message["edited"] = None
            state[key] = message
        return state


class Device:
    """A session that keeps a Model: its own requests become frames of the
    model when acked, and the msg frames it receives on the way are applied."""

    def __init__(self, name, user, ws):
        self.name = name
        self.user = user
        self.ws = ws
        self.model = Model()
        self.live = []
        self.own = set()  # (conv, seq) of what this session stored

    async def _reply(self, request_id):
        while True:
            frame = await recv_frame(self.ws)
            if frame.get("type") == "msg":
                self.live.append(frame)
                self.model.apply(frame)
                continue
            assert frame.get("id") == request_id, f"{self.name}: unexpected frame {frame}"
            return frame

    async def do(self, frame, peer=None, group=None):
        """Send an acked request (send or event) and apply it to the model as the other sessions see it."""
        await send_frame(self.ws, frame)
        ack = await self._reply(frame["id"])
        assert_frame(ack, type="ack", id=frame["id"])
        own = {"type": "msg", "conv": ack["conv"], "seq": ack["seq"], "ts": ack["ts"], "from": self.user,
               "id": frame["id"]}
        if frame["type"] == "send":
            own["body"] = frame["body"]
            if "reply_to" in frame:
                own["reply_to"] = frame["reply_to"]
        else:
            own["kind"] = frame["type"]
            own["target"] = frame["seq"]
            own["body"] = {"edit": frame.get("body"), "delete": None}.get(frame["type"], {"emoji": frame.get("emoji")})
        self.model.apply(own)
        self.own.add((ack["conv"], ack["seq"]))
        return ack

    async def settle(self, tag):
        for frame in await drain(self.ws, tag):
            assert frame.get("type") == "msg", f"{self.name}: unexpected frame {frame}"
            self.live.append(frame)
            self.model.apply(frame)


# --- edits -------------------------------------------------------------------------


def test_an_edit_by_the_sender_is_an_event_and_history_shows_the_edited_body(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            original = await send(alice, "m1", {"text": "hi bob"}, to="bob")
            await recv_frame(bob)
            assert original["seq"] == 1

            ack = await acked(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": "hi bob!"}))
            # An event has a seq of its own, the next one.
            assert ack["seq"] == 2, ack
            assert_event(await recv_frame(bob), ack, "edit", 1, "alice", {"text": "hi bob!"}, to="bob")

            # Any JSON value is a body, for an edit as for a send.
            ack2 = await acked(alice, edit_frame("e2", "dm:alice:bob", 1, ["a", "list", 3]))
            assert ack2["seq"] == 3, ack2
            assert_event(await recv_frame(bob), ack2, "edit", 1, "alice", ["a", "list", 3], to="bob")

            for ws in (alice, bob):
                messages = by_seq(await history(ws, "dm:alice:bob"))
                assert sorted(messages) == [1, 2, 3], messages
                assert_frame(messages[1], type="msg", seq=1, ts=original["ts"], id="m1", to="bob",
                             body=["a", "list", 3], edited=ack2["ts"], **{"from": "alice"})
                assert "kind" not in messages[1] and "deleted" not in messages[1], messages[1]
                # The events are there too, in seq order, each with its own body.
                assert_event(messages[2], ack, "edit", 1, "alice", {"text": "hi bob!"}, to="bob")
                assert_event(messages[3], ack2, "edit", 1, "alice", ["a", "list", 3], to="bob")

            # The next message goes on after the events.
            assert (await send(bob, "b1", "ok", to="alice"))["seq"] == 4

    run(scenario())


def test_an_edit_to_null_is_an_edit_not_a_delete(dev_host):
    """The new body is any JSON value, null too; the message shows it, edited, not deleted."""
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            await send(alice, "m1", {"text": "something"}, to="bob")
            await recv_frame(bob)
            ack = await acked(alice, edit_frame("e1", "dm:alice:bob", 1, None))
            assert_event(await recv_frame(bob), ack, "edit", 1, "alice", None, to="bob")
            message = (await history(bob, "dm:alice:bob"))[0]
            assert_frame(message, seq=1, body=None, edited=ack["ts"], deleted="<missing>")
            # Still a message: it takes another edit and a reaction.
            await acked(alice, edit_frame("e2", "dm:alice:bob", 1, "back"))
            await recv_frame(bob)
            await acked(bob, react_frame("r1", "dm:alice:bob", 1, "👍"))
            await recv_frame(alice)
            assert_frame((await history(bob, "dm:alice:bob"))[0], body="back", reactions={"👍": ["bob"]})

    run(scenario())


def test_an_edit_of_another_users_message_is_forbidden_and_changes_nothing(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            await send(alice, "m1", {"text": "mine"}, to="bob")
            await recv_frame(bob)
            await refused(bob, edit_frame("e1", "dm:alice:bob", 1, {"text": "yours now"}), "forbidden")
            await expect_pong(alice, "nothing-delivered")
            messages = await history(alice, "dm:alice:bob")
            assert [m["seq"] for m in messages] == [1], messages
            assert_frame(messages[0], body={"text": "mine"}, edited="<missing>")

    run(scenario())


def test_an_edit_after_the_window_is_forbidden_and_a_retry_of_an_earlier_edit_still_gets_its_ack(tmp_path):
    with hosted(tmp_path, {"messages": {"edit_window_ms": EDIT_WINDOW_MS}}) as host:
        async def scenario():
            alice, _ = await login_as(host.url, "alice")
            async with alice:
                await send(alice, "m1", {"text": "v1"}, to="bob")
                first = await acked(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": "v2"}))
                await asyncio.sleep(2 * EDIT_WINDOW_MS / 1000)
                await refused(alice, edit_frame("e2", "dm:alice:bob", 1, {"text": "v3"}), "forbidden")
                # The retry of the edit made in time gets its ack, though the rule would refuse it now.
                assert await request(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": "v2"})) == first
                messages = await history(alice, "dm:alice:bob")
                assert [m["seq"] for m in messages] == [1, 2], messages
                assert_frame(messages[0], body={"text": "v2"}, edited=first["ts"])
                # The window is the edit's alone: a delete and a reaction still pass.
                react = await acked(alice, react_frame("r1", "dm:alice:bob", 1, "👍"))
                delete = await acked(alice, delete_frame("d1", "dm:alice:bob", 1))
                assert (react["seq"], delete["seq"]) == (3, 4)

        run(scenario())


def test_an_edit_of_a_deleted_message_or_of_an_event_is_a_bad_request_of_a_missing_seq_not_found(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            await send(alice, "m1", {"text": "one"}, to="bob")
            await send(alice, "m2", {"text": "two"}, to="bob")
            edit = await acked(alice, edit_frame("e1", "dm:alice:bob", 2, {"text": "two!"}))
            assert edit["seq"] == 3
            await acked(alice, delete_frame("d1", "dm:alice:bob", 1))  # seq 4

            await refused(alice, edit_frame("e2", "dm:alice:bob", 1, {"text": "back"}), "bad_request")
            await refused(alice, edit_frame("e3", "dm:alice:bob", 3, {"text": "edit the edit"}), "bad_request")
            await refused(alice, edit_frame("e4", "dm:alice:bob", 4, {"text": "edit the delete"}), "bad_request")
            await refused(alice, edit_frame("e5", "dm:alice:bob", 5, {"text": "none"}), "not_found")
            await refused(alice, edit_frame("e6", "dm:alice:bob", 999, {"text": "none"}), "not_found")
            # Nothing of those was stored.
            assert (await send(alice, "m3", "three", to="bob"))["seq"] == 5
            messages = by_seq(await history(alice, "dm:alice:bob"))
            assert_frame(messages[1], body=None, deleted=True)
            assert_frame(messages[2], body={"text": "two!"}, edited=edit["ts"])

    run(scenario())


def test_a_retried_edit_gets_the_same_ack_and_changes_nothing_again(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        alice_laptop, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, alice_laptop, bob:
            await send(alice, "m1", {"text": "v1"}, to="bob")
            for ws in (bob, alice_laptop):
                await recv_frame(ws)
            first = await acked(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": "v2"}))
            for ws in (bob, alice_laptop):
                assert_event(await recv_frame(ws), first, "edit", 1, "alice", {"text": "v2"}, to="bob")
            await acked(alice, edit_frame("e2", "dm:alice:bob", 1, {"text": "v3"}))
            for ws in (bob, alice_laptop):
                await recv_frame(ws)

            # The same id again, even with another body, from another session: the first ack, nothing stored.
            assert await request(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": "v2"})) == first
            assert await request(alice_laptop, edit_frame("e1", "dm:alice:bob", 1, {"text": "v4"})) == first
            await expect_pong(bob, "retry-not-delivered")
            await expect_pong(alice, "retry-not-delivered-alice")
            messages = await history(bob, "dm:alice:bob")
            assert [m["seq"] for m in messages] == [1, 2, 3], messages
            assert_frame(messages[0], body={"text": "v3"})

            # Even once the message is deleted, when the rule would refuse an edit.
            delete = await acked(alice, delete_frame("d1", "dm:alice:bob", 1))
            for ws in (bob, alice_laptop):
                assert_event(await recv_frame(ws), delete, "delete", 1, "alice", None, to="bob")
            assert await request(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": "v2"})) == first
            await expect_pong(bob, "retry-after-delete-not-delivered")
            messages = await history(bob, "dm:alice:bob")
            assert [m["seq"] for m in messages] == [1, 2, 3, 4], messages
            assert_frame(messages[0], body=None, deleted=True)

    run(scenario())


def test_edits_and_events_in_a_group_carry_the_group(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice, bob, carol:
            await join(alice, "team", "j1")
            await join(bob, "team", "j2")
            await recv_frame(alice)  # bob joined
            await send(alice, "m1", {"text": "hello team"}, group="team")
            await recv_frame(bob)
            ack = await acked(alice, edit_frame("e1", "g:team", 1, {"text": "hello, team"}))
            frame = await recv_frame(bob)
            assert_event(frame, ack, "edit", 1, "alice", {"text": "hello, team"}, group="team")
            assert "to" not in frame, frame
            # A member may not edit another member's message; a non-member may not even name the group.
            await refused(bob, edit_frame("e2", "g:team", 1, {"text": "bob's"}), "forbidden")
            await refused(carol, edit_frame("e3", "g:team", 1, {"text": "carol's"}), "forbidden")
            await refused(carol, react_frame("r1", "g:team", 1, "👍"), "forbidden")
            await refused(carol, delete_frame("d1", "g:team", 1), "forbidden")
            react = await acked(bob, react_frame("r2", "g:team", 1, "👍"))
            assert_event(await recv_frame(alice), react, "react", 1, "bob", {"emoji": "👍"}, group="team")
            messages = by_seq(await history(bob, "g:team"))
            assert_frame(messages[1], body={"text": "hello, team"}, edited=ack["ts"], reactions={"👍": ["bob"]})

    run(scenario())


# --- deletes -----------------------------------------------------------------------


def test_a_delete_leaves_a_tombstone_in_history_and_sync_and_erases_the_edits_and_reactions(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            original = await send(alice, "m1", {"text": "regrettable"}, to="bob")
            await recv_frame(bob)
            await send(alice, "m2", {"text": "fine"}, to="bob")
            await recv_frame(bob)
            edit = await acked(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": "more regrettable"}))
            await recv_frame(bob)
            react = await acked(bob, react_frame("r1", "dm:alice:bob", 1, "😮"))
            assert_event(await recv_frame(alice), react, "react", 1, "bob", {"emoji": "😮"}, to="alice")

            await refused(bob, delete_frame("d0", "dm:alice:bob", 1), "forbidden")
            delete = await acked(alice, delete_frame("d1", "dm:alice:bob", 1))
            assert delete["seq"] == 5, delete
            assert_event(await recv_frame(bob), delete, "delete", 1, "alice", None, to="bob")
            await refused(alice, delete_frame("d2", "dm:alice:bob", 1), "bad_request")
            await refused(alice, delete_frame("d3", "dm:alice:bob", 99), "not_found")
            # An event is not a message one can delete.
            await refused(alice, delete_frame("d4", "dm:alice:bob", 3), "bad_request")

            fresh, _ = await login_as(dev_host.url, "bob")
            async with fresh:
                synced = [m for m in await sync_all(fresh, "s1") if m["conv"] == "dm:alice:bob"]
            for source, messages in (("history", await history(bob, "dm:alice:bob")), ("sync", synced)):
                messages = by_seq(messages)
                assert sorted(messages) == [1, 2, 3, 4, 5], (source, messages)
                tombstone = messages[1]
                # The tombstone keeps its seq, sender and ts.
                assert_frame(tombstone, type="msg", conv="dm:alice:bob", seq=1, ts=original["ts"], to="bob",
                             body=None, deleted=True, **{"from": "alice"})
                assert "kind" not in tombstone, (source, tombstone)
                assert no_reactions(tombstone), (source, tombstone)
                assert_frame(messages[2], body={"text": "fine"}, deleted="<missing>")
                # The edit of the deleted message lost its body too.
                assert_frame(messages[3], kind="edit", target=1, ts=edit["ts"], body=None, deleted=True)
                assert_frame(messages[4], kind="react", target=1, ts=react["ts"], **{"from": "bob"})
                assert_frame(messages[5], kind="delete", target=1, ts=delete["ts"], body=None, **{"from": "alice"})
                # Applying the events to the tombstone leaves a tombstone.
                state = Model().apply_all(messages.values()).state()
                assert state[("dm:alice:bob", 1)]["deleted"] and state[("dm:alice:bob", 1)]["body"] is None

            # A deleted message takes no reaction, no reply, no edit.
            await refused(bob, react_frame("r2", "dm:alice:bob", 1, "👍"), "bad_request")
            await refused(bob, {"type": "send", "id": "b1", "to": "alice", "body": "re", "reply_to": 1},
                          "bad_request")

    run(scenario())


def test_a_delete_after_a_restart_and_a_retried_delete_gets_its_ack(dev_hosts, tmp_path):
    async def scenario():
        host = dev_hosts.start(tmp_path / "imbed.db")
        alice, _ = await login_as(host.url, "alice")
        async with alice:
            await send(alice, "m1", {"text": "x"}, to="bob")
            delete = await acked(alice, delete_frame("d1", "dm:alice:bob", 1))
        host = await asyncio.to_thread(dev_hosts.restart, host)
        alice, _ = await login_as(host.url, "alice")
        async with alice:
            # The retry outlives the restart: the first ack, though deleting again is a bad request.
            assert await request(alice, delete_frame("d1", "dm:alice:bob", 1)) == delete
            await refused(alice, delete_frame("d2", "dm:alice:bob", 1), "bad_request")
            messages = await history(alice, "dm:alice:bob")
            assert [m["seq"] for m in messages] == [1, 2], messages
            assert_frame(messages[0], body=None, deleted=True)

    run(scenario())


def database_bytes(db):
    """The bytes of the SQLite file and of its -wal and -journal files, if any, lowercased."""
    data = b""
    for suffix in ("", "-wal", "-journal", "-shm"):
        path = db.parent / (db.name + suffix)
        if path.exists():
            data += path.read_bytes()
    return data.lower()


def test_the_deleted_body_its_edits_and_reactions_are_gone_from_the_database_file(tmp_path):
    tag = uuid.uuid4().hex[:12]
    deleted = f"Deletedmarker{tag}"
    edited = f"Editmarker{tag}"
    reaction = f"reactmarker{tag}"
    kept = f"Keptmarker{tag}"
    kept_reaction = f"keptemoji{tag}"
    db = tmp_path / "imbed.db"
    with hosted(tmp_path, db=db) as host:
        async def scenario():
            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                await send(alice, "m1", {"text": f"secret {deleted} words", "nested": [deleted]}, to="bob",
                           lenient=True)
                await send(alice, "m2", {"text": f"this stays {kept}"}, to="bob", lenient=True)
                await acked(alice, edit_frame("e1", "dm:alice:bob", 1, {"text": f"secret {edited}"}), lenient=True)
                await acked(bob, react_frame("r1", "dm:alice:bob", 1, reaction), lenient=True)
                await acked(bob, react_frame("r2", "dm:alice:bob", 2, kept_reaction), lenient=True)
                await acked(alice, delete_frame("d1", "dm:alice:bob", 1), lenient=True)
                assert found(await search(alice, "q1", deleted, lenient=True)) == []
                assert found(await search(alice, "q2", edited, lenient=True)) == []
                assert found(await search(alice, "q3", kept, lenient=True)) == [("dm:alice:bob", 2)]

        run(scenario())
    data = database_bytes(db)
    assert data, "no database file"
    # The control: what was not deleted is there to be found, in the same way.
    assert kept.lower().encode() in data
    assert kept_reaction.encode() in data
    for marker in (deleted, edited, reaction):
        assert marker.lower().encode() not in data, f"{marker!r} is still in {db} after its delete"


# --- reactions ---------------------------------------------------------------------


def test_react_again_is_a_bad_request_unreact_takes_it_back_and_unreact_of_none_is_not_found(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            await send(alice, "m1", {"text": "react to me"}, to="bob")
            await recv_frame(bob)
            conv = "dm:alice:bob"

            react = await acked(bob, react_frame("r1", conv, 1, "👍"))
            assert react["seq"] == 2
            assert_event(await recv_frame(alice), react, "react", 1, "bob", {"emoji": "👍"}, to="alice")
            await refused(bob, react_frame("r2", conv, 1, "👍"), "bad_request")
            # One reaction per user and emoji: another user, or another emoji, is fine.
            own = await acked(alice, react_frame("r3", conv, 1, "👍"))
            assert_event(await recv_frame(bob), own, "react", 1, "alice", {"emoji": "👍"}, to="bob")
            heart = await acked(bob, react_frame("r4", conv, 1, "❤️"))
            await recv_frame(alice)
            messages = by_seq(await history(alice, conv))
            assert_frame(messages[1], reactions={"👍": ["alice", "bob"], "❤️": ["bob"]})

            unreact = await acked(bob, react_frame("u1", conv, 1, "👍", kind="unreact"))
            assert unreact["seq"] == heart["seq"] + 1
            assert_event(await recv_frame(alice), unreact, "unreact", 1, "bob", {"emoji": "👍"}, to="alice")
            await refused(bob, react_frame("u2", conv, 1, "👍", kind="unreact"), "not_found")
            await refused(bob, react_frame("u3", conv, 1, "🎉", kind="unreact"), "not_found")
            # A retry of a react or unreact gets its ack, even where the rule would now refuse it.
            assert await request(bob, react_frame("u1", conv, 1, "👍", kind="unreact")) == unreact
            assert await request(bob, react_frame("r4", conv, 1, "❤️")) == heart
            await expect_pong(alice, "retries-not-delivered")
            # Reacting again after taking it back is fine.
            await acked(bob, react_frame("r5", conv, 1, "👍"))
            await recv_frame(alice)
            await acked(bob, react_frame("u4", conv, 1, "❤️", kind="unreact"))
            await recv_frame(alice)

            messages = by_seq(await history(bob, conv))
            assert sorted(messages) == list(range(1, 8)), messages
            assert_frame(messages[1], reactions={"👍": ["alice", "bob"]})
            # A reaction is to a message: not to an event, nor to a missing seq.
            await refused(alice, react_frame("r6", conv, 2, "👍"), "bad_request")
            await refused(alice, react_frame("r7", conv, 50, "👍"), "not_found")

    run(scenario())


def test_a_user_has_at_most_max_reactions_per_user_emojis_on_one_message(tmp_path):
    with hosted(tmp_path, {"messages": {"max_reactions_per_user": 2}}) as host:
        async def scenario():
            alice, _ = await login_as(host.url, "alice")
            bob, _ = await login_as(host.url, "bob")
            async with alice, bob:
                conv = "dm:alice:bob"
                await send(alice, "m1", "one", to="bob", lenient=True)
                await send(alice, "m2", "two", to="bob", lenient=True)
                await acked(bob, react_frame("r1", conv, 1, "a"), lenient=True)
                await acked(bob, react_frame("r2", conv, 1, "b"), lenient=True)
                await refused(bob, react_frame("r3", conv, 1, "c"), "bad_request", lenient=True)
                # The limit is per user and per message.
                await acked(alice, react_frame("r4", conv, 1, "c"), lenient=True)
                await acked(alice, react_frame("r5", conv, 1, "d"), lenient=True)
                await acked(bob, react_frame("r6", conv, 2, "c"), lenient=True)
                await acked(bob, react_frame("r7", conv, 2, "d"), lenient=True)
                # Taking one back makes room.
                await acked(bob, react_frame("u1", conv, 1, "a", kind="unreact"), lenient=True)
                await acked(bob, react_frame("r8", conv, 1, "c"), lenient=True)
                await refused(bob, react_frame("r9", conv, 1, "e"), "bad_request", lenient=True)
                messages = by_seq(await history(alice, conv, lenient=True))
                assert_frame(messages[1], reactions={"b": ["bob"], "c": ["alice", "bob"], "d": ["alice"]})
                assert_frame(messages[2], reactions={"c": ["bob"], "d": ["bob"]})
                await drain(alice, "end-a")
                await drain(bob, "end-b")

        run(scenario())


@pytest.mark.parametrize(
    "emoji",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("x" * 65, id="65-bytes"),
        pytest.param("🙂" * 16 + "x", id="65-bytes-of-4-byte-characters"),
        pytest.param("a\nb", id="newline"),
        pytest.param("\u0007", id="bell"),
        pytest.param("\u007f", id="delete-character"),
        pytest.param(5, id="number"),
        pytest.param(["👍"], id="array"),
    ],
)
def test_an_invalid_emoji_is_a_bad_request(dev_host, emoji):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            await send(alice, "m1", "hi", to="bob")
            frame = {"type": "react", "id": "r1", "conv": "dm:alice:bob", "seq": 1}
            if emoji is not None:
                frame["emoji"] = emoji
            await refused(alice, frame, "bad_request")
            # 64 bytes is still an emoji: any text, the server does not check it is one.
            await acked(alice, react_frame("r2", "dm:alice:bob", 1, "🙂" * 16))
            await acked(alice, react_frame("r3", "dm:alice:bob", 1, "x" * 64))
            await acked(alice, react_frame("r4", "dm:alice:bob", 1, "not an emoji"))

    run(scenario())


@pytest.mark.parametrize("kind", ["edit", "delete", "react", "unreact"])
@pytest.mark.parametrize(
    "change, code",
    [
        pytest.param({"conv": None}, "bad_request", id="conv-missing"),
        pytest.param({"conv": "dm:bob:alice"}, "bad_request", id="conv-unsorted"),
        pytest.param({"conv": "team"}, "bad_request", id="conv-malformed"),
        pytest.param({"seq": None}, "bad_request", id="seq-missing"),
        pytest.param({"seq": 0}, "bad_request", id="seq-0"),
        pytest.param({"seq": -1}, "bad_request", id="seq-negative"),
        pytest.param({"seq": "1"}, "bad_request", id="seq-string"),
        pytest.param({"conv": "dm:bob:carol"}, "forbidden", id="another-users-dm"),
        pytest.param({"conv": "dm:bob:carol", "seq": 77}, "forbidden", id="another-users-dm-missing-seq"),
        pytest.param({"conv": "g:nobody"}, "forbidden", id="a-group-of-no-member"),
        pytest.param({"conv": "dm:alice:bob", "seq": 40}, "not_found", id="missing-seq"),
    ],
)
def test_event_refusals(dev_host, kind, change, code):
    async def scenario():
        bob, _ = await login_as(dev_host.url, "bob")
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice, bob:
            await send(bob, "b1", "for carol", to="carol")
            await send(alice, "m1", "hi", to="bob")
            await recv_frame(bob)
            if kind == "unreact":
                await acked(alice, react_frame("r0", "dm:alice:bob", 1, "👍"))
                await recv_frame(bob)
            valid = {"type": kind, "id": "x1", "conv": "dm:alice:bob", "seq": 1}
            if kind == "edit":
                valid["body"] = "changed"
            if kind in ("react", "unreact"):
                valid["emoji"] = "👍"
            frame = dict(valid)
            for key, value in change.items():
                if value is None:
                    frame.pop(key)
                else:
                    frame[key] = value
            await refused(alice, frame, code)
            # Nothing was stored.
            await expect_pong(bob, "nothing-delivered")
            before = 2 if kind == "unreact" else 1
            assert [m["seq"] for m in await history(alice, "dm:alice:bob")] == list(range(1, before + 1))
            assert [m["seq"] for m in await history(bob, "dm:bob:carol")] == [1]
            # The frame without the fault is accepted.
            await acked(alice, dict(valid, id="x2"))

    run(scenario())


# --- replies -----------------------------------------------------------------------


def test_a_reply_carries_reply_to_and_a_missing_target_is_not_found(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            await send(alice, "m1", {"text": "lunch?"}, to="bob")
            await recv_frame(bob)
            reply = await send(bob, "b1", {"text": "agreed"}, to="alice", reply_to=1)
            assert reply["seq"] == 2
            live = await recv_frame(alice)
            assert_frame(live, type="msg", seq=2, id="b1", body={"text": "agreed"}, reply_to=1, **{"from": "bob"})
            assert "kind" not in live, live

            await refused(bob, {"type": "send", "id": "b2", "to": "alice", "body": "?", "reply_to": 3},
                          "not_found")
            await refused(bob, {"type": "send", "id": "b3", "to": "alice", "body": "?", "reply_to": 500},
                          "not_found")
            # A reply to an event is a bad request.
            react = await acked(alice, react_frame("r1", "dm:alice:bob", 1, "👍"))
            await recv_frame(bob)
            await refused(bob, {"type": "send", "id": "b4", "to": "alice", "body": "?", "reply_to": react["seq"]},
                          "bad_request")
            await expect_pong(alice, "refusals-not-delivered")

            fresh, _ = await login_as(dev_host.url, "alice")
            async with fresh:
                synced = await sync_all(fresh, "s1")
            for messages in (await history(alice, "dm:alice:bob"), synced):
                messages = by_seq(messages)
                assert sorted(messages) == [1, 2, 3], messages
                assert_frame(messages[2], reply_to=1, body={"text": "agreed"})
                assert "reply_to" not in messages[1], messages[1]

            # In a group, and a reply_to in one conversation names a seq of that one.
            await join(alice, "team", "j1")
            await join(bob, "team", "j2")
            await recv_frame(alice)
            await send(alice, "g1", "team msg", group="team")
            await recv_frame(bob)
            await send(bob, "g2", "team reply", group="team", reply_to=1)
            assert_frame(await recv_frame(alice), conv="g:team", seq=2, reply_to=1)
            await refused(bob, {"type": "send", "id": "g3", "group": "team", "body": "?", "reply_to": 3},
                          "not_found")

    run(scenario())


# --- convergence -------------------------------------------------------------------


def test_two_devices_of_a_user_and_the_other_user_converge_with_sync_and_history(dev_host):
    """alice's phone and laptop and bob act in a dm and a group; the state each
    session builds from its live frames equals the state a fresh sync from
    cursor 0 gives, and the one history gives, with and without applying events."""

    async def scenario():
        phone_ws, phone_welcome = await login_as(f"{dev_host.url}?device=phone", "alice")
        # The phone names its device in the URL, the laptop in its auth frame.
        laptop_ws = await open_connection(dev_host.url)
        await send_frame(laptop_ws, {"type": "auth", "token": "alice", "device": "laptop"})
        laptop_welcome = await recv_frame(laptop_ws)
        assert_frame(laptop_welcome, type="welcome", user="alice")
        bob_ws, _ = await login_as(dev_host.url, "bob")
        assert (phone_welcome["device"], laptop_welcome["device"]) == ("phone", "laptop")
        phone, laptop, bob = Device("phone", "alice", phone_ws), Device("laptop", "alice", laptop_ws), \
            Device("bob", "bob", bob_ws)
        dm = "dm:alice:bob"
        async with phone_ws, laptop_ws, bob_ws:
            await join(phone_ws, "team", "j1")
            await recv_frame(laptop_ws)
            await join(bob_ws, "team", "j2")
            for ws in (phone_ws, laptop_ws):
                await recv_frame(ws)

            m1 = await phone.do({"type": "send", "id": "p1", "to": "bob", "body": {"text": "plan A"}})
            m2 = await bob.do({"type": "send", "id": "b1", "to": "alice", "body": {"text": "why A"}, "reply_to": 1})
            await laptop.do(edit_frame("l1", dm, m1["seq"], {"text": "plan B"}))
            await bob.do(react_frame("b2", dm, m1["seq"], "👍"))
            await phone.do(react_frame("p2", dm, m2["seq"], "❤️"))
            await laptop.do(react_frame("l2", dm, m1["seq"], "👍"))
            await phone.do(edit_frame("p3", dm, m1["seq"], {"text": "plan C"}))
            m3 = await laptop.do({"type": "send", "id": "l3", "to": "bob", "body": "oops"})
            await bob.do(react_frame("b3", dm, m3["seq"], "😂"))
            await phone.do(edit_frame("p4", dm, m3["seq"], "oops!"))
            await phone.do(delete_frame("p5", dm, m3["seq"]))
            await bob.do(react_frame("b4", dm, m1["seq"], "👍", kind="unreact"))
            await bob.do(react_frame("b5", dm, m1["seq"], "🎉"))
            g1 = await bob.do({"type": "send", "id": "b6", "group": "team", "body": {"text": "standup"}})
            await phone.do(react_frame("p6", "g:team", g1["seq"], "👀"))
            await laptop.do(react_frame("l4", "g:team", g1["seq"], "👍"))
            g2 = await laptop.do({"type": "send", "id": "l5", "group": "team", "body": "late", "reply_to": g1["seq"]})
            await bob.do(edit_frame("b7", "g:team", g1["seq"], {"text": "standup at 10"}))
            await laptop.do(edit_frame("l6", "g:team", g2["seq"], "very late"))
            await phone.do(react_frame("p7", "g:team", g1["seq"], "👀", kind="unreact"))
            await bob.do(react_frame("b8", "g:team", g2["seq"], "👍"))
            await phone.do(delete_frame("p8", "g:team", g2["seq"]))
            for device in (phone, laptop, bob):
                await device.settle(f"settle-{device.name}")

            live = laptop.model.state()
            assert phone.model.state() == live
            assert bob.model.state() == live
            # The state is the one the actions make.
            assert live[(dm, 1)]["body"] == {"text": "plan C"}
            assert live[(dm, 1)]["reactions"] == {"👍": ["alice"], "🎉": ["bob"]}
            assert live[(dm, 2)]["reactions"] == {"❤️": ["alice"]} and live[(dm, 2)]["reply_to"] == 1
            assert live[(dm, m3["seq"])]["deleted"] and live[(dm, m3["seq"])]["body"] is None
            assert live[("g:team", g1["seq"])]["body"] == {"text": "standup at 10"}
            assert live[("g:team", g1["seq"])]["reactions"] == {"👍": ["alice"]}
            assert live[("g:team", g2["seq"])]["deleted"]

            tablet_ws, _ = await login_as(f"{dev_host.url}?device=tablet", "alice")
            async with tablet_ws:
                synced = await sync_all(tablet_ws, "s1")
                histories = [m for conv in (dm, "g:team") for m in await history(tablet_ws, conv, f"h-{conv}")]
            for source, frames in (("sync", synced), ("history", histories)):
                for conv in (dm, "g:team"):
                    seqs = [f["seq"] for f in frames if f["conv"] == conv]
                    assert seqs == list(range(1, len(seqs) + 1)), (source, conv, seqs)
                applied = Model().apply_all(frames)
                assert applied.state() == live, source
                assert applied.events == laptop.model.events, source
                # Each session got a msg frame of everything stored while it was open, but of what it sent itself.
                stored = {(f["conv"], f["seq"]) for f in frames}
                for device in (phone, laptop, bob):
                    keys = [(f["conv"], f["seq"]) for f in device.live]
                    assert len(keys) == len(set(keys)), (device.name, keys)
                    assert set(keys) == stored - device.own, (source, device.name)
                # The messages alone, in their current state, without applying any event.
                assert Model().apply_all([f for f in frames if not is_event(f)]).state() == live, source

    run(scenario())


# --- search ------------------------------------------------------------------------


async def search(ws, request_id, query=None, lenient=False, **fields):
    """A search request; returns the reply, checking it is a search reply."""
    frame = {"type": "search", "id": request_id, **fields}
    if query is not None:
        frame["query"] = query
    reply = await ask(ws, frame, lenient)
    assert_frame(reply, type="search", id=request_id)
    assert isinstance(reply.get("results"), list), reply
    for result in reply["results"]:
        assert result.get("type") == "msg" and not is_event(result), result
    # Newest first: by ts, and by seq within a conversation.
    stamps = [r["ts"] for r in reply["results"]]
    assert stamps == sorted(stamps, reverse=True), reply
    for conv in {r["conv"] for r in reply["results"]}:
        seqs = [r["seq"] for r in reply["results"] if r["conv"] == conv]
        assert seqs == sorted(seqs, reverse=True), reply
    return reply


async def later():
    """Wait until the server clock has moved on: messages stored apart in time
    are newer and older by their ts (messages of one millisecond are equally new)."""
    await asyncio.sleep(0.005)


def found(reply):
    """(conv, seq) of each result, in the reply's order."""
    return [(r["conv"], r["seq"]) for r in reply["results"]]


async def search_all(ws, request_id, query, **fields):
    """(conv, seq) of every result, following `next` page by page."""
    results, page = [], 0
    reply = await search(ws, f"{request_id}-{page}", query, **fields)
    results += found(reply)
    while reply.get("more"):
        page += 1
        assert page < 50, "search pages never end"
        reply = await search(ws, f"{request_id}-{page}", query, after=reply["next"], **fields)
        results += found(reply)
    return results


def test_search_finds_every_word_ignoring_case_and_diacritics_whole_words_only(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            dm = "dm:alice:bob"
            await send(alice, "m1", {"text": "The Zèbra Crossing near the ÉCOLE"}, to="bob", lenient=True)  # 1
            await send(bob, "m2", {"text": "a zebra, alone"}, to="alice", lenient=True)  # 2
            await send(alice, "m3", "just a numbat in a string", to="bob", lenient=True)  # 3
            m4 = {"quokka": "the key is not searched", "deep": {"list": [{"x": "a wombat down here"}, 8675309]}}
            await send(alice, "m4", m4, to="bob", lenient=True)  # 4
            await send(alice, "m5", {"text": "foo-bar_baz naïve café"}, to="bob", lenient=True)  # 5
            await send(alice, "m6", {"text": "ZEBRAS are not zebra words? zebrafish"}, to="bob", lenient=True)  # 6
            await drain(alice, "a")
            await drain(bob, "b")

            cases = [
                ("zebra", [(dm, 6), (dm, 2), (dm, 1)]),
                ("ZÈBRA", [(dm, 6), (dm, 2), (dm, 1)]),
                ("Zebra crossing", [(dm, 1)]),
                ("crossing zebra ecole", [(dm, 1)]),
                ("zebra alone", [(dm, 2)]),
                ("zebra elephant", []),
                ("zeb", []),
                ("zebras", [(dm, 6)]),
                ("numbat", [(dm, 3)]),
                ("WOMBAT", [(dm, 4)]),
                ("quokka", []),
                ("deep", []),
                ("8675309", []),
                ("bar", [(dm, 5)]),
                ("foo-bar", [(dm, 5)]),
                ("naive cafe", [(dm, 5)]),
                ("NAÏVE", [(dm, 5)]),
                ("oba", []),
            ]
            for n, (query, expected) in enumerate(cases):
                for ws in (alice, bob):
                    reply = await search(ws, f"q{n}", query)
                    assert found(reply) == expected, (query, reply)
                    assert not reply.get("more"), (query, reply)
            # Results are msg frames as history has them.
            reply = await search(alice, "full", "numbat")
            assert reply["results"] == [by_seq(await history(alice, dm))[3]]

    run(scenario())


def test_search_covers_only_the_users_conversations(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        carol, _ = await login_as(dev_host.url, "carol")
        async with alice, bob, carol:
            await join(alice, "team", "j1", lenient=True)
            await join(carol, "team", "j2", lenient=True)
            await join(bob, "secret", "j3", lenient=True)
            await join(carol, "secret", "j4", lenient=True)
            await join(alice, "old", "j5", lenient=True)
            await send(alice, "a1", "aardvark in the old group", group="old", lenient=True)
            await later()
            await leave(alice, "old", "l1", lenient=True)
            await send(alice, "a2", "aardvark direct", to="bob", lenient=True)
            await later()
            await send(carol, "c1", "aardvark team", group="team", lenient=True)
            await later()
            await send(bob, "b1", "aardvark private", to="carol", lenient=True)
            await later()
            await send(carol, "c2", "aardvark secret", group="secret", lenient=True)
            await later()
            await send(carol, "c3", "aardvark to alice", to="alice", lenient=True)
            await later()
            await send(bob, "b2", "aardvark to self", to="bob", lenient=True)
            await later()
            for ws, tag in ((alice, "a"), (bob, "b"), (carol, "c")):
                await drain(ws, tag)

            expected = {
                "alice": [("dm:alice:carol", 1), ("g:team", 1), ("dm:alice:bob", 1)],
                "bob": [("dm:bob:bob", 1), ("g:secret", 1), ("dm:bob:carol", 1), ("dm:alice:bob", 1)],
                "carol": [("dm:alice:carol", 1), ("g:secret", 1), ("dm:bob:carol", 1), ("g:team", 1)],
            }
            for ws, user in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
                assert found(await search(ws, f"q-{user}", "aardvark")) == expected[user], user
            dave, _ = await login_as(dev_host.url, "dave")
            async with dave:
                assert found(await search(dave, "q-dave", "aardvark")) == []

    run(scenario())


def test_search_pages_newest_first_with_next_and_after(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            await join(alice, "team", "j1")
            expected = []
            for n in range(1, 8):
                if n % 2:
                    ack = await send(alice, f"m{n}", {"text": f"pangolin number {n}"}, to="bob")
                else:
                    ack = await send(alice, f"m{n}", {"text": f"pangolin number {n}"}, group="team")
                expected.append((ack["conv"], ack["seq"]))
                await later()
                await send(alice, f"x{n}", {"text": "filler"}, to="bob")
                await later()
            expected.reverse()

            pages = []
            reply = await search(alice, "p0", "pangolin", limit=3)
            pages.append(found(reply))
            while reply.get("more"):
                assert isinstance(reply.get("next"), str), reply
                reply = await search(alice, f"p{len(pages)}", "pangolin", limit=3, after=reply["next"])
                pages.append(found(reply))
                assert len(pages) < 10
            assert pages == [expected[0:3], expected[3:6], expected[6:7]], pages
            assert "next" not in reply or reply["next"] is None, reply
            # The default limit is 20, 100 is allowed.
            assert found(await search(alice, "d", "pangolin")) == expected
            assert found(await search(alice, "l100", "pangolin", limit=100)) == expected
            # Scoped to one conversation, the paging holds too.
            team = [key for key in expected if key[0] == "g:team"]
            assert await search_all(alice, "team", "pangolin", conv="g:team", limit=1) == team
            assert await search_all(alice, "dm", "pangolin", conv="dm:alice:bob", limit=2) == [
                key for key in expected if key[0] == "dm:alice:bob"]

    run(scenario())


def test_search_finds_edits_by_their_new_text_never_deleted_messages_nor_events(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            dm = "dm:alice:bob"
            await send(alice, "m1", {"text": "a narwhal here"}, to="bob", lenient=True)  # 1
            await send(alice, "m2", {"text": "a walrus here"}, to="bob", lenient=True)  # 2
            await send(alice, "m3", {"text": "plain okapi"}, to="bob", lenient=True)  # 3
            edit = await acked(alice, edit_frame("e1", dm, 1, {"text": "a beluga here"}), lenient=True)  # 4
            await acked(alice, delete_frame("d1", dm, 2), lenient=True)  # 5
            await acked(bob, react_frame("r1", dm, 3, "capybara"), lenient=True)  # 6
            await acked(alice, edit_frame("e2", dm, 3, {"text": "plain okapi again"}), lenient=True)  # 7
            await drain(alice, "a")
            await drain(bob, "b")

            for ws in (alice, bob):
                assert found(await search(ws, "q1", "narwhal")) == []
                reply = await search(ws, "q2", "beluga")
                assert found(reply) == [(dm, 1)], reply
                assert_frame(reply["results"][0], body={"text": "a beluga here"}, edited=edit["ts"])
                assert found(await search(ws, "q3", "walrus")) == []
                assert found(await search(ws, "q4", "here")) == [(dm, 1)]
                # The react event's body holds "capybara"; events are never found.
                assert found(await search(ws, "q5", "capybara")) == []
                # The message once, not its edit event; in its current state, reactions included.
                reply = await search(ws, "q6", "okapi")
                assert found(reply) == [(dm, 3)], reply
                assert_frame(reply["results"][0], body={"text": "plain okapi again"}, reactions={"capybara": ["bob"]})
            # Deleting an edited message forgets its new text too.
            await acked(alice, delete_frame("d2", dm, 1))
            assert found(await search(alice, "q7", "beluga")) == []
            assert found(await search(alice, "q8", "here")) == []

    run(scenario())


def test_search_scoped_to_a_conversation_and_forbidden_for_a_foreign_one(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            await join(alice, "team", "j1", lenient=True)
            await join(bob, "others", "j2", lenient=True)
            await send(alice, "m1", "tapir one", to="bob", lenient=True)
            await send(alice, "m2", "tapir two", group="team", lenient=True)
            await send(alice, "m3", "tapir three", to="carol", lenient=True)
            await send(bob, "b1", "tapir four", group="others", lenient=True)
            await send(bob, "b2", "tapir five", to="carol", lenient=True)
            await drain(alice, "a")
            await drain(bob, "b")

            assert found(await search(alice, "q1", "tapir", conv="g:team")) == [("g:team", 1)]
            assert found(await search(alice, "q2", "tapir", conv="dm:alice:bob")) == [("dm:alice:bob", 1)]
            assert found(await search(alice, "q3", "tapir", conv="dm:alice:carol")) == [("dm:alice:carol", 1)]
            # A conversation of the user with nothing in it is an empty answer.
            assert found(await search(alice, "q4", "tapir", conv="dm:alice:dave")) == []
            for n, conv in enumerate(["dm:bob:carol", "g:others", "g:nothing"]):
                await refused(alice, {"type": "search", "id": f"f{n}", "query": "tapir", "conv": conv}, "forbidden")
            for n, conv in enumerate(["dm:carol:alice", "team", "g:", 5]):
                await refused(alice, {"type": "search", "id": f"b{n}", "query": "tapir", "conv": conv},
                              "bad_request")

    run(scenario())


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="query-missing"),
        pytest.param({"query": ""}, id="query-empty"),
        pytest.param({"query": "   "}, id="query-blank"),
        pytest.param({"query": "!!! ... ???"}, id="query-without-a-word"),
        pytest.param({"query": 5}, id="query-not-a-string"),
        pytest.param({"query": "a" * 257}, id="query-257-bytes"),
        pytest.param({"query": "é" * 129}, id="query-258-bytes-129-characters"),
        pytest.param({"query": " ".join(f"w{n}" for n in range(17))}, id="query-17-words"),
        pytest.param({"query": "zebra", "limit": 0}, id="limit-0"),
        pytest.param({"query": "zebra", "limit": 101}, id="limit-101"),
        pytest.param({"query": "zebra", "limit": -1}, id="limit-negative"),
        pytest.param({"query": "zebra", "limit": "5"}, id="limit-string"),
        pytest.param({"query": "zebra", "limit": 2.5}, id="limit-fraction"),
    ],
)
def test_a_bad_search_is_a_bad_request(dev_host, fields):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            await send(alice, "m1", "zebra", to="bob")
            await refused(alice, {"type": "search", "id": "q", **fields}, "bad_request")
            assert found(await search(alice, "good", "zebra")) == [("dm:alice:bob", 1)]

    run(scenario())


def test_a_query_at_its_limits_is_accepted(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            words = [f"w{n}" for n in range(16)]
            await send(alice, "m1", " ".join(words), to="bob")
            await send(alice, "m2", "a" * 256, to="bob")
            await send(alice, "m3", "é" * 128, to="bob")
            assert found(await search(alice, "q1", " ".join(words))) == [("dm:alice:bob", 1)]
            assert found(await search(alice, "q2", "a" * 256)) == [("dm:alice:bob", 2)]
            assert found(await search(alice, "q3", "é" * 128)) == [("dm:alice:bob", 3)]
            # Punctuation around the words is no word: "!!" does not count against the 16.
            assert found(await search(alice, "q4", "!! " + " ".join(words) + " ??")) == [("dm:alice:bob", 1)]

    run(scenario())
