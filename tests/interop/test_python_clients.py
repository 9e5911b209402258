"""Protocol v1 interop: Python `websockets` clients (and one Node `ws` client)
against the example host program `imbed-host`.

Covers the first milestone: auth, direct send/ack/msg, idempotency, errors,
limits and host events. Groups, presence, typing, read, sync and history come
in later milestones and are not tested here.
"""

import asyncio
import base64
import json
import time
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import JWT_SECRET

# One reply on loopback takes milliseconds; 5 s only trips on a hung server.
REPLY_TIMEOUT_S = 5
# Bound for a whole scenario, so a test can never hang the run.
SCENARIO_TIMEOUT_S = 30
# Server and client share the clock, so any timestamp should be this close.
CLOCK_TOLERANCE_MS = 60_000

NODE_PEER = Path(__file__).resolve().parent / "node_peer.js"


def run(scenario):
    """Run an async scenario to completion within SCENARIO_TIMEOUT_S."""
    asyncio.run(asyncio.wait_for(scenario, SCENARIO_TIMEOUT_S))


def now_ms():
    return int(time.time() * 1000)


def assert_recent_ms(value):
    assert isinstance(value, int), f"timestamp {value!r} is not an integer"
    assert abs(value - now_ms()) < CLOCK_TOLERANCE_MS, f"timestamp {value} is not near now ({now_ms()})"


def assert_frame(frame, **expected):
    """Assert that frame has each expected field with the expected value.

    The contract lets a server add fields, so only the named ones are compared.
    """
    actual = {key: frame.get(key, "<missing>") for key in expected}
    assert actual == expected, f"frame {frame}"


def open_connection(url, headers=None):
    # compression=None: a frame's size on the wire is its real size, which the
    # 1009 test depends on. proxy=None: never route loopback through a proxy
    # taken from the environment.
    return connect(
        url,
        additional_headers=headers,
        compression=None,
        proxy=None,
        open_timeout=REPLY_TIMEOUT_S,
        close_timeout=REPLY_TIMEOUT_S,
    )


async def recv_frame(ws):
    raw = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S)
    assert isinstance(raw, str), f"server sent a binary frame: {raw!r}"
    return json.loads(raw)


async def send_frame(ws, frame):
    await ws.send(json.dumps(frame))


async def login(url, token, via="header"):
    """Open a connection and authenticate via header, query or first frame.

    Returns the connection and the server's first frame, unchecked, so that
    callers can assert on either a welcome or an error.
    """
    if via == "header":
        ws = await open_connection(url, {"Authorization": f"Bearer {token}"})
    elif via == "query":
        ws = await open_connection(f"{url}?token={quote(token, safe='')}")
    elif via == "frame":
        ws = await open_connection(url)
        await send_frame(ws, {"type": "auth", "token": token})
    else:
        raise ValueError(f"unknown auth way {via!r}")
    return ws, await recv_frame(ws)


async def login_as(url, user, via="header"):
    """Log in with a token that must be accepted as user; returns (ws, welcome)."""
    ws, welcome = await login(url, user, via)
    assert_frame(welcome, type="welcome", user=user)
    assert isinstance(welcome["session"], str) and welcome["session"], welcome
    assert_recent_ms(welcome["server_time"])
    return ws, welcome


async def send_message(ws, client_id, to, body):
    """Send a direct message and return the ack, checking its shape."""
    await send_frame(ws, {"type": "send", "id": client_id, "to": to, "body": body})
    ack = await recv_frame(ws)
    assert_frame(ack, type="ack", id=client_id)
    assert_recent_ms(ack["ts"])
    return ack


def assert_msg(frame, ack, sender, to, client_id, body):
    """Assert frame is the msg that ack acknowledged, with every contract field."""
    assert_frame(
        frame,
        type="msg",
        conv=ack["conv"],
        seq=ack["seq"],
        ts=ack["ts"],
        to=to,
        id=client_id,
        body=body,
        **{"from": sender},
    )


async def expect_close(ws, code):
    """Assert the server closes the connection with code, sending no other frame first."""
    try:
        frame = await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "connection dropped without a close frame"
        assert closed.rcvd.code == code, f"close code {closed.rcvd.code}, reason {closed.rcvd.reason!r}"
    else:
        pytest.fail(f"expected close {code}, got frame {frame!r}")


async def expect_unauthorized(ws, first_frame):
    assert_frame(first_frame, type="error", code="unauthorized")
    assert isinstance(first_frame.get("message"), str), first_frame
    await expect_close(ws, 1008)


async def expect_pong(ws, ping_id):
    await send_frame(ws, {"type": "ping", "id": ping_id})
    assert_frame(await recv_frame(ws), type="pong", id=ping_id)


# --- direct messaging -------------------------------------------------------


def test_two_users_chat_both_ways(dev_host):
    async def scenario():
        alice, alice_welcome = await login_as(dev_host.url, "alice")
        bob, bob_welcome = await login_as(dev_host.url, "bob")
        async with alice, bob:
            first_ack = await send_message(alice, "a-1", "bob", {"text": "hi bob"})
            assert_frame(first_ack, conv="dm:alice:bob", seq=1)
            first_msg = await recv_frame(bob)
            assert_msg(first_msg, first_ack, "alice", "bob", "a-1", {"text": "hi bob"})

            reply_ack = await send_message(bob, "b-1", "alice", {"text": "hi alice"})
            assert_frame(reply_ack, conv="dm:alice:bob", seq=2)
            reply_msg = await recv_frame(alice)
            assert_msg(reply_msg, reply_ack, "bob", "alice", "b-1", {"text": "hi alice"})

            third_ack = await send_message(alice, "a-2", "bob", ["any", "json", 3])
            assert_frame(third_ack, conv="dm:alice:bob", seq=3)
            third_msg = await recv_frame(bob)
            assert_msg(third_msg, third_ack, "alice", "bob", "a-2", ["any", "json", 3])

        for welcome in (alice_welcome, bob_welcome):
            dev_host.wait_for_event(
                lambda e, w=welcome: e
                == {"event": "connected", "user": w["user"], "session": w["session"], "device": w["device"]}
            )
        for msg in (first_msg, reply_msg, third_msg):
            dev_host.wait_for_event(lambda e, m=msg: e == {"event": "message", "message": m})

    run(scenario())


def test_conv_name_sorts_user_ids_bytewise(dev_host):
    async def scenario():
        # Bytewise, "Zed" < "alice" (uppercase first); a case-insensitive sort would differ.
        zed, _ = await login_as(dev_host.url, "Zed")
        alice, _ = await login_as(dev_host.url, "alice")
        async with zed, alice:
            ack = await send_message(alice, "c-1", "Zed", "hello")
            assert_frame(ack, conv="dm:Zed:alice", seq=1)
            assert_msg(await recv_frame(zed), ack, "alice", "Zed", "c-1", "hello")
            ack = await send_message(zed, "c-1", "alice", "hello back")
            assert_frame(ack, conv="dm:Zed:alice", seq=2)

    run(scenario())


def test_send_to_self_uses_a_conv_with_both_ids_equal(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        async with alice:
            ack = await send_message(alice, "note-1", "alice", {"text": "remember the milk"})
            assert_frame(ack, conv="dm:alice:alice", seq=1)

    run(scenario())


def test_any_json_body_is_delivered_unchanged(dev_host):
    bodies = [
        None,
        0,
        -1.5,
        True,
        "plain text",
        [],
        {},
        {"nested": {"list": [1, "two", None]}, "emoji": "héllo 👋"},
        # Beyond 64-bit floats: survives only if the server keeps the body as written.
        12345678901234567890123,
    ]

    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            for n, body in enumerate(bodies):
                ack = await send_message(alice, f"body-{n}", "bob", body)
                assert_msg(await recv_frame(bob), ack, "alice", "bob", f"body-{n}", body)

    run(scenario())


def test_burst_is_delivered_in_seq_order(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            count = 20
            # All sends go out before any ack is read, so the server has many in flight.
            for n in range(count):
                await send_frame(alice, {"type": "send", "id": f"burst-{n}", "to": "bob", "body": n})
            acks = [await recv_frame(alice) for _ in range(count)]
            msgs = [await recv_frame(bob) for _ in range(count)]
            assert sorted(ack["seq"] for ack in acks) == list(range(1, count + 1))
            assert [msg["seq"] for msg in msgs] == list(range(1, count + 1))
            seq_of_id = {ack["id"]: ack["seq"] for ack in acks}
            assert all(seq_of_id[msg["id"]] == msg["seq"] for msg in msgs)

    run(scenario())


def test_multi_device_send_reaches_other_sessions_not_the_sender(dev_host):
    async def scenario():
        phone, phone_welcome = await login_as(dev_host.url, "alice")
        laptop, laptop_welcome = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        assert phone_welcome["session"] != laptop_welcome["session"]
        async with phone, laptop, bob:
            phone_ack = await send_message(phone, "m-1", "bob", "from phone")
            assert_msg(await recv_frame(bob), phone_ack, "alice", "bob", "m-1", "from phone")
            assert_msg(await recv_frame(laptop), phone_ack, "alice", "bob", "m-1", "from phone")

            laptop_ack = await send_message(laptop, "m-2", "bob", "from laptop")
            assert_msg(await recv_frame(bob), laptop_ack, "alice", "bob", "m-2", "from laptop")
            # The phone's next frame is the laptop's message: had the phone been
            # sent its own m-1 as a msg, that would have come first.
            assert_msg(await recv_frame(phone), laptop_ack, "alice", "bob", "m-2", "from laptop")

    run(scenario())


def test_retry_with_same_id_gets_same_ack_and_no_second_message(dev_host):
    async def scenario():
        alice, _ = await login_as(dev_host.url, "alice")
        bob, _ = await login_as(dev_host.url, "bob")
        async with alice, bob:
            first_ack = await send_message(alice, "c-1", "bob", {"text": "once"})
            retry_ack = await send_message(alice, "c-1", "bob", {"text": "once"})
            assert retry_ack == first_ack
            next_ack = await send_message(alice, "c-2", "bob", {"text": "twice"})
            assert_frame(next_ack, seq=first_ack["seq"] + 1)

            assert_msg(await recv_frame(bob), first_ack, "alice", "bob", "c-1", {"text": "once"})
            # A duplicate c-1 would arrive before c-2, which is in seq order after it.
            assert_msg(await recv_frame(bob), next_ack, "alice", "bob", "c-2", {"text": "twice"})

            # The id is scoped to its sender: bob reusing "c-1" is a new message.
            bob_ack = await send_message(bob, "c-1", "alice", {"text": "mine"})
            assert_frame(bob_ack, conv="dm:alice:bob", seq=next_ack["seq"] + 1)
            assert_msg(await recv_frame(alice), bob_ack, "bob", "alice", "c-1", {"text": "mine"})

        dev_host.wait_for_event(lambda e: e.get("event") == "message" and e["message"]["id"] == "c-2")
        alice_c1_events = [
            e
            for e in dev_host.events()
            if e.get("event") == "message" and e["message"]["id"] == "c-1" and e["message"]["from"] == "alice"
        ]
        assert len(alice_c1_events) == 1, alice_c1_events

    run(scenario())


# --- authentication -----------------------------------------------------------


@pytest.mark.parametrize("via", ["header", "query", "frame"])
def test_dev_auth_accepts_each_way(dev_host, via):
    async def scenario():
        ws, _ = await login_as(dev_host.url, "carol", via)
        async with ws:
            await expect_pong(ws, "p-1")

    run(scenario())


@pytest.mark.parametrize("via", ["header", "query", "frame"])
def test_dev_auth_rejects_invalid_user_id_token(dev_host, via):
    async def scenario():
        ws, first_frame = await login(dev_host.url, "not a user id!", via)
        async with ws:
            await expect_unauthorized(ws, first_frame)

    run(scenario())


def test_frame_other_than_auth_before_authentication_is_unauthorized(dev_host):
    async def scenario():
        async with open_connection(dev_host.url) as ws:
            await send_frame(ws, {"type": "ping", "id": "p-1"})
            await expect_unauthorized(ws, await recv_frame(ws))

    run(scenario())


def make_jwt(claims, secret=JWT_SECRET, algorithm="HS256"):
    return jwt.encode(claims, secret, algorithm=algorithm)


def make_unsigned_jwt(claims):
    """A token with alg "none" and an empty signature, built by hand."""

    def b64url(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}."


def an_hour_from_now():
    return int(time.time()) + 3600


@pytest.mark.parametrize("via", ["header", "query", "frame"])
def test_jwt_auth_accepts_valid_hs256_token(jwt_host, via):
    async def scenario():
        token = make_jwt({"sub": "dana", "exp": an_hour_from_now()})
        ws, welcome = await login(jwt_host.url, token, via)
        async with ws:
            assert_frame(welcome, type="welcome", user="dana")
            await expect_pong(ws, "p-1")

    run(scenario())


@pytest.mark.parametrize(
    "token",
    [
        # An hour past exp: beyond any leeway a server may allow for clock skew.
        pytest.param(make_jwt({"sub": "dana", "exp": int(time.time()) - 3600}), id="expired"),
        pytest.param(
            make_jwt({"sub": "dana", "exp": an_hour_from_now()}, secret="another-secret-" + "y" * 49),
            id="wrong-secret",
        ),
        pytest.param(make_jwt({"sub": "dana"}), id="no-exp"),
        pytest.param(make_unsigned_jwt({"sub": "dana", "exp": an_hour_from_now()}), id="alg-none"),
        pytest.param(make_jwt({"sub": "dana", "exp": an_hour_from_now()}, algorithm="HS512"), id="hs512"),
        pytest.param("dana", id="dev-style-token"),
    ],
)
def test_jwt_auth_rejects_bad_token(jwt_host, token):
    async def scenario():
        ws, first_frame = await login(jwt_host.url, token)
        async with ws:
            await expect_unauthorized(ws, first_frame)

    run(scenario())


# --- errors and limits --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_frame", "reply_id"),
    [
        pytest.param('{"type":"send","id":"x-1",', None, id="malformed-json"),
        pytest.param("[1,2,3]", None, id="not-an-object"),
        pytest.param('{"id":"x-2"}', "x-2", id="missing-type"),
        pytest.param('{"type":"frobnicate","id":"x-3"}', "x-3", id="unknown-type"),
        pytest.param('{"type":"send","to":"bob","body":1}', None, id="send-without-id"),
        pytest.param('{"type":"send","id":"x-4","to":"not a user!","body":1}', "x-4", id="invalid-to"),
        pytest.param('{"type":"send","id":"x-5","body":1}', "x-5", id="send-without-to"),
        pytest.param('{"type":"send","id":"x-6","to":"bob"}', "x-6", id="send-without-body"),
        pytest.param('{"type":"ping","id":""}', None, id="empty-request-id"),
        pytest.param('{"type":"ping","id":"' + "i" * 65 + '"}', None, id="65-char-request-id"),
        pytest.param('{"type":"ping","id":7}', None, id="numeric-request-id"),
    ],
)
def test_bad_frame_gets_bad_request_and_connection_stays(dev_host, raw_frame, reply_id):
    async def scenario():
        ws, _ = await login_as(dev_host.url, "alice")
        async with ws:
            await ws.send(raw_frame)
            error = await recv_frame(ws)
            assert_frame(error, type="error", code="bad_request")
            assert isinstance(error.get("message"), str), error
            if reply_id is None:
                assert "id" not in error, error
            else:
                assert_frame(error, id=reply_id)
            await expect_pong(ws, "after-error")

    run(scenario())


def test_binary_frame_gets_bad_request_and_connection_stays(dev_host):
    async def scenario():
        ws, _ = await login_as(dev_host.url, "alice")
        async with ws:
            await ws.send(b'{"type":"ping","id":"bin"}')
            assert_frame(await recv_frame(ws), type="error", code="bad_request")
            await expect_pong(ws, "after-binary")

    run(scenario())


def test_frame_over_64_kib_closes_with_1009(dev_host):
    async def scenario():
        ws, _ = await login_as(dev_host.url, "alice")
        async with ws:
            oversized = {"type": "send", "id": "big", "to": "bob", "body": "x" * (70 * 1024)}
            await send_frame(ws, oversized)
            await expect_close(ws, 1009)

    run(scenario())


@pytest.mark.parametrize("path, status", [("/", 200), ("/chat", 404), ("/ws/extra", 404)])
def test_only_ws_upgrades_other_paths_are_plain_http(dev_host, path, status):
    """An upgrade anywhere but /ws is answered as plain HTTP: the web page at /, else 404."""

    async def scenario():
        url = dev_host.url.removesuffix("/ws") + path
        with pytest.raises(InvalidStatus) as rejected:
            async with open_connection(url, {"Authorization": "Bearer alice"}):
                pass
        assert rejected.value.response.status_code == status

    run(scenario())


# --- the host program -----------------------------------------------------------


def test_host_send_reaches_the_user(dev_host):
    async def scenario():
        bob, _ = await login_as(dev_host.url, "bob")
        async with bob:
            dev_host.command('send bob {"text":"from host"}')
            msg = await recv_frame(bob)
            assert_frame(
                msg,
                type="msg",
                conv="dm:bob:host",
                seq=1,
                to="bob",
                body={"text": "from host"},
                **{"from": "host"},
            )
            assert isinstance(msg["id"], str) and msg["id"], msg
            assert_recent_ms(msg["ts"])
            dev_host.wait_for_event(lambda e: e == {"event": "sent", "to": "bob", "seq": 1})

            dev_host.command('send bob {"text":"again"}')
            assert_frame(await recv_frame(bob), conv="dm:bob:host", seq=2, body={"text": "again"})
            dev_host.wait_for_event(lambda e: e == {"event": "sent", "to": "bob", "seq": 2})

    run(scenario())


def test_host_reports_bad_commands_and_keeps_running(dev_host):
    bad_commands = ["frobnicate", "send", "send bob", "send bob {not json", "send not-a-user! {}"]
    for command in bad_commands:
        dev_host.command(command)
    dev_host.wait_for_events(lambda e: e.get("event") == "error", count=len(bad_commands))
    dev_host.command('send bob {"text":"still here"}')
    dev_host.wait_for_event(lambda e: e == {"event": "sent", "to": "bob", "seq": 1})


def test_client_close_is_reported_as_disconnected_with_reason(dev_host):
    async def scenario():
        alice, welcome = await login_as(dev_host.url, "alice")
        await alice.close()
        disconnected = dev_host.wait_for_event(
            lambda e: e.get("event") == "disconnected" and e.get("session") == welcome["session"]
        )
        assert_frame(disconnected, user="alice")
        assert isinstance(disconnected.get("reason"), str) and disconnected["reason"], disconnected

    run(scenario())


def test_sigterm_closes_sessions_with_1001_and_exits_0(dev_host):
    async def scenario():
        alice, welcome = await login_as(dev_host.url, "alice")
        async with alice:
            exit_code, _ = await asyncio.gather(asyncio.to_thread(dev_host.stop), expect_close(alice, 1001))
            assert exit_code == 0
        disconnected = dev_host.wait_for_event(
            lambda e: e.get("event") == "disconnected" and e.get("session") == welcome["session"]
        )
        assert_frame(disconnected, user="alice")

    run(scenario())


# --- cross-language -------------------------------------------------------------


def test_node_client_and_python_client_chat(dev_host):
    async def scenario():
        bob, _ = await login_as(dev_host.url, "bob")
        async with bob:
            # The Node peer logs in as alice, sends one message to bob, and
            # exits after three frames: welcome, its ack, and bob's reply.
            node = await asyncio.create_subprocess_exec(
                "node", str(NODE_PEER), dev_host.url, "alice", "bob", "3", str(REPLY_TIMEOUT_S * 2000),
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                from_node = await recv_frame(bob)
                assert_frame(
                    from_node,
                    type="msg",
                    conv="dm:alice:bob",
                    seq=1,
                    to="bob",
                    id="node-1",
                    body={"text": "hello bob from node"},
                    **{"from": "alice"},
                )
                reply_ack = await send_message(bob, "py-1", "alice", {"text": "hello node from python"})
                assert_frame(reply_ack, conv="dm:alice:bob", seq=2)
                stdout, _ = await asyncio.wait_for(node.communicate(), REPLY_TIMEOUT_S * 3)
            finally:
                if node.returncode is None:
                    node.kill()
                    await node.wait()
            assert node.returncode == 0, stdout

        frames = [json.loads(line) for line in stdout.decode().splitlines()]
        assert len(frames) == 3, frames
        assert_frame(frames[0], type="welcome", user="alice")
        by_type = {frame["type"]: frame for frame in frames[1:]}
        assert_frame(by_type["ack"], id="node-1", conv="dm:alice:bob", seq=1, ts=from_node["ts"])
        assert_msg(by_type["msg"], reply_ack, "bob", "alice", "py-1", {"text": "hello node from python"})

    run(scenario())
