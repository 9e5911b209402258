"""The C client example `imbed-client` against `imbed-host`, across a crash.

Two clients, alice and bob, run as separate processes. alice queues 40
messages for bob; part way through, the host is killed (SIGKILL, as a crash
would end it) and started again on the same port and the same SQLite file.
The client role must make that invisible apart from its state events: alice
gets each message acknowledged exactly once, bob sees each message exactly
once, in order, and both report the disconnect and the reconnect.
"""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import HOST_BINARY, REPO_ROOT, STARTUP_TIMEOUT_S, JsonLinesProcess

CLIENT_BINARY = Path(os.environ.get("IMBED_CLIENT", REPO_ROOT / "build" / "imbed-client"))

MESSAGE_COUNT = 40
# The host is killed once alice has this many acks: enough that some messages
# are behind the crash and some ahead of it, in flight or still queued.
ACKS_BEFORE_CRASH = 15
# alice's commands are spread out so that the crash lands mid-stream instead
# of after the last ack.
SEND_INTERVAL_S = 0.025
# Every message acked and delivered, reconnects included (the backoff starts
# at 250 ms and doubles; a restart takes well under a second).
DELIVERY_TIMEOUT_S = 30
CONVERSATION = "dm:alice:bob"


def free_loopback_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_client(user, port, state_path):
    """imbed-client for user (dev auth: the token is the user id), keeping its state in state_path."""
    return JsonLinesProcess(
        f"imbed-client {user}",
        [
            str(CLIENT_BINARY),
            "--url", f"ws://127.0.0.1:{port}/ws",
            "--token", user,
            "--state", str(state_path),
        ],
    )


def is_state(name):
    return lambda event: event.get("event") == "state" and event.get("state") == name


def state_names(client):
    return [event["state"] for event in client.events(lambda event: event.get("event") == "state")]


def assert_reconnected(client):
    """The client was connected, lost the connection, and got it back, in that order."""
    states = state_names(client)
    assert "connected" in states, f"{client.name}: states {states}"
    first_connected = states.index("connected")
    assert "disconnected" in states[first_connected:], f"{client.name}: states {states}"
    disconnected = states.index("disconnected", first_connected)
    assert "connected" in states[disconnected:], f"{client.name}: states {states}"


@pytest.fixture
def clients():
    """Every client the test starts, killed at teardown if still running."""
    started = []
    yield started
    for client in reversed(started):
        if client.running():
            client.crash()


def test_client_outbox_and_sync_survive_a_host_crash(tmp_path, dev_hosts, clients):
    for binary in (HOST_BINARY, CLIENT_BINARY):
        if not binary.is_file():
            pytest.fail(f"{binary} does not exist: run `make host client`, or set IMBED_HOST / IMBED_CLIENT")
    port = free_loopback_port()
    db = tmp_path / "s.db"

    host = dev_hosts.start(db, port)
    alice = start_client("alice", port, tmp_path / "alice.state")
    bob = start_client("bob", port, tmp_path / "bob.state")
    clients.extend([alice, bob])
    for client in (alice, bob):
        client.wait_for_events(is_state("connected"), 1, STARTUP_TIMEOUT_S)

    def send_all():
        for n in range(1, MESSAGE_COUNT + 1):
            alice.command(f'send bob {{"n":{n}}}')
            time.sleep(SEND_INTERVAL_S)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()

    is_ack = lambda event: event.get("event") == "ack"
    alice.wait_for_events(is_ack, ACKS_BEFORE_CRASH, DELIVERY_TIMEOUT_S)
    dev_hosts.crash(host)
    acks_at_crash = len(alice.events(is_ack))
    assert acks_at_crash < MESSAGE_COUNT, "every message was acked before the crash: nothing was tested"

    host = dev_hosts.start(db, port)
    sender.join(timeout=DELIVERY_TIMEOUT_S)
    assert not sender.is_alive(), "alice's commands were not all written"

    queued = alice.wait_for_events(lambda event: event.get("event") == "queued", MESSAGE_COUNT, DELIVERY_TIMEOUT_S)
    queued_ids = [event["id"] for event in queued]
    assert len(set(queued_ids)) == MESSAGE_COUNT, f"client ids are not unique: {queued_ids}"

    is_bob_message = lambda event: (
        event.get("event") == "message" and isinstance(event.get("message"), dict) and event["message"].get("conv") == CONVERSATION
    )
    alice.wait_for_events(is_ack, MESSAGE_COUNT, DELIVERY_TIMEOUT_S)
    bob.wait_for_events(is_bob_message, MESSAGE_COUNT, DELIVERY_TIMEOUT_S)
    for client in (alice, bob):
        client.wait_for_events(is_state("connected"), 2, DELIVERY_TIMEOUT_S)
    # Anything extra (a duplicate ack or message) would arrive right behind the
    # last one; give it the time to show before counting.
    time.sleep(1)

    acks = alice.events(is_ack)
    assert len(acks) == MESSAGE_COUNT, f"{len(acks)} ack events for {MESSAGE_COUNT} messages: {acks}"
    assert len({ack["id"] for ack in acks}) == MESSAGE_COUNT, f"duplicate acks: {acks}"
    ack_seq_by_id = {ack["id"]: ack["seq"] for ack in acks}
    assert set(ack_seq_by_id) == set(queued_ids), "acks for ids alice never queued"
    assert [ack_seq_by_id[client_id] for client_id in queued_ids] == list(range(1, MESSAGE_COUNT + 1)), (
        "the outbox did not store the messages in the order they were queued"
    )
    assert all(ack["conv"] == CONVERSATION for ack in acks), acks

    messages = [event["message"] for event in bob.events(is_bob_message)]
    assert [message["seq"] for message in messages] == list(range(1, MESSAGE_COUNT + 1)), (
        f"bob's messages are not seq 1..{MESSAGE_COUNT} exactly once in order: {[m['seq'] for m in messages]}"
    )
    assert [message["body"] for message in messages] == [{"n": n} for n in range(1, MESSAGE_COUNT + 1)]
    assert all(message["from"] == "alice" for message in messages), messages

    for client in (alice, bob):
        assert_reconnected(client)

    for client in (alice, bob):
        client.command("quit")
        assert client.wait_for_exit() == 0, f"{client.name} did not exit cleanly on quit"
        assert client.unparsed_lines == [], f"{client.name} printed lines that are not JSON objects"
        assert state_names(client)[-1] == "stopped", f"{client.name} did not report stopped last"
    dev_hosts.stop(host)  # SIGTERM; asserts a clean exit and only JSON lines


def test_client_moves_to_the_next_node_when_one_is_down(tmp_path, dev_hosts, clients):
    """Two --url flags, the first one down: the client connects to the second,
    and when that one crashes and the first comes up, it moves back."""
    first, second = free_loopback_port(), free_loopback_port()
    db = tmp_path / "s.db"
    host = dev_hosts.start(db, second)
    alice = JsonLinesProcess(
        "imbed-client alice",
        [str(CLIENT_BINARY), "--url", f"ws://127.0.0.1:{first}/ws", "--url", f"ws://127.0.0.1:{second}/ws",
         "--token", "alice", "--state", str(tmp_path / "alice.state")],
    )
    clients.append(alice)
    connected = alice.wait_for_events(is_state("connected"), 1, STARTUP_TIMEOUT_S)[-1]
    assert connected["server"] == f"ws://127.0.0.1:{second}/ws", connected
    dev_hosts.crash(host)
    dev_hosts.start(db, first)
    again = alice.wait_for_events(is_state("connected"), 2, DELIVERY_TIMEOUT_S)[-1]
    assert again["server"] == f"ws://127.0.0.1:{first}/ws", again
    alice.command('send bob {"n":1}')
    alice.wait_for_events(lambda event: event.get("event") == "ack", 1, DELIVERY_TIMEOUT_S)
