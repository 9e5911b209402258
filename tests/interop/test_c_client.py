"""The C client example `imbed-client` against `imbed-host`, across a crash.

Two clients, alice and bob, run as separate processes. alice queues 40
messages for bob; part way through, the host is killed (SIGKILL, as a crash
would end it) and started again on the same port and the same SQLite file.
The client role must make that invisible apart from its state events: alice
gets each message acknowledged exactly once, bob sees each message exactly
once, in order, and both report the disconnect and the reconnect.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import HOST_BINARY, REPO_ROOT, SHUTDOWN_TIMEOUT_S, STARTUP_TIMEOUT_S

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
# A port freed by a killed host can be briefly refused; retry binding it this long.
REBIND_TIMEOUT_S = 10
CONVERSATION = "dm:alice:bob"


def free_loopback_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LineProcess:
    """A child process that prints one JSON object per line on stdout.

    A reader thread parses the lines as they come; tests wait on them with a
    timeout. Lines that are not JSON objects are kept apart, so a test can
    assert that there were none.
    """

    def __init__(self, name, argv, first_line_is_banner=False):
        self.name = name
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.banner = None
        self._expect_banner = first_line_is_banner
        self._changed = threading.Condition()
        self._events = []
        self._stdout_closed = False
        self.unparsed_lines = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            with self._changed:
                if self._expect_banner and self.banner is None:
                    self.banner = line
                else:
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        event = None
                    if isinstance(event, dict):
                        self._events.append(event)
                    else:
                        self.unparsed_lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._stdout_closed = True
            self._changed.notify_all()

    def events(self, predicate=lambda event: True):
        """The parsed events so far that match predicate, oldest first."""
        with self._changed:
            return [event for event in self._events if predicate(event)]

    def wait_for(self, predicate, count, timeout):
        """The first count events matching predicate; fails the test if they do not come in time."""
        with self._changed:
            arrived = self._changed.wait_for(
                lambda: sum(1 for event in self._events if predicate(event)) >= count or self._stdout_closed,
                timeout=timeout,
            )
            matching = [event for event in self._events if predicate(event)]
        if not arrived or len(matching) < count:
            pytest.fail(
                f"{self.name}: {len(matching)} of {count} expected events within {timeout} s "
                f"(exit code {self.process.poll()}); last events: {self.events()[-10:]}"
            )
        return matching[:count]

    def wait_for_banner(self, timeout):
        """The first stdout line, which the host prints before any event."""
        with self._changed:
            self._changed.wait_for(lambda: self.banner is not None or self._stdout_closed, timeout=timeout)
            return self.banner

    def command(self, line):
        """Writes one command line to the process's stdin."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def end(self, how):
        """Ends the process: "quit" on stdin, SIGTERM or SIGKILL. Returns its exit code, None if it hung."""
        if self.process.poll() is None:
            if how == "quit":
                self.command("quit")
            elif how == "sigterm":
                self.process.send_signal(signal.SIGTERM)
            else:
                self.process.kill()
        try:
            return self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            return None
        finally:
            self._reader.join(timeout=SHUTDOWN_TIMEOUT_S)
            self.process.stdin.close()
            self.process.stdout.close()


def start_host(port, db):
    """imbed-host in dev auth on 127.0.0.1:port storing into db, retried while the port is not free yet."""
    deadline = time.monotonic() + REBIND_TIMEOUT_S
    while True:
        host = LineProcess(
            "imbed-host",
            [str(HOST_BINARY), "--listen", f"127.0.0.1:{port}", "--db", str(db), "--dev-auth"],
            first_line_is_banner=True,
        )
        banner = host.wait_for_banner(STARTUP_TIMEOUT_S)
        if banner == f"listening on ws://127.0.0.1:{port}/ws":
            return host
        exit_code = host.end("sigterm")
        if time.monotonic() > deadline:
            pytest.fail(f"imbed-host did not start on port {port}: first line {banner!r}, exit code {exit_code}")
        time.sleep(0.2)


def start_client(user, port, state_path):
    """imbed-client for user (dev auth: the token is the user id), keeping its state in state_path."""
    return LineProcess(
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
def processes():
    """Every process the test starts, ended at teardown if still running."""
    started = []
    yield started
    for process in reversed(started):
        if process.process.poll() is None:
            process.end("kill")


def test_client_outbox_and_sync_survive_a_host_crash(tmp_path, processes):
    for binary in (HOST_BINARY, CLIENT_BINARY):
        if not binary.is_file():
            pytest.fail(f"{binary} does not exist: run `make host client`, or set IMBED_HOST / IMBED_CLIENT")
    port = free_loopback_port()
    db = tmp_path / "s.db"

    host = start_host(port, db)
    processes.append(host)
    alice = start_client("alice", port, tmp_path / "alice.state")
    bob = start_client("bob", port, tmp_path / "bob.state")
    processes.extend([alice, bob])
    for client in (alice, bob):
        client.wait_for(is_state("connected"), 1, STARTUP_TIMEOUT_S)

    def send_all():
        for n in range(1, MESSAGE_COUNT + 1):
            alice.command(f'send bob {{"n":{n}}}')
            time.sleep(SEND_INTERVAL_S)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()

    is_ack = lambda event: event.get("event") == "ack"
    alice.wait_for(is_ack, ACKS_BEFORE_CRASH, DELIVERY_TIMEOUT_S)
    host.end("kill")
    acks_at_crash = len(alice.events(is_ack))
    assert acks_at_crash < MESSAGE_COUNT, "every message was acked before the crash: nothing was tested"

    host = start_host(port, db)
    processes.append(host)
    sender.join(timeout=DELIVERY_TIMEOUT_S)
    assert not sender.is_alive(), "alice's commands were not all written"

    queued = alice.wait_for(lambda event: event.get("event") == "queued", MESSAGE_COUNT, DELIVERY_TIMEOUT_S)
    queued_ids = [event["id"] for event in queued]
    assert len(set(queued_ids)) == MESSAGE_COUNT, f"client ids are not unique: {queued_ids}"

    is_bob_message = lambda event: (
        event.get("event") == "message" and isinstance(event.get("message"), dict) and event["message"].get("conv") == CONVERSATION
    )
    alice.wait_for(is_ack, MESSAGE_COUNT, DELIVERY_TIMEOUT_S)
    bob.wait_for(is_bob_message, MESSAGE_COUNT, DELIVERY_TIMEOUT_S)
    for client in (alice, bob):
        client.wait_for(is_state("connected"), 2, DELIVERY_TIMEOUT_S)
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
        assert client.end("quit") == 0, f"{client.name} did not exit cleanly on quit"
        assert client.unparsed_lines == [], f"{client.name} printed lines that are not JSON objects"
        assert state_names(client)[-1] == "stopped", f"{client.name} did not report stopped last"
    assert host.end("sigterm") == 0, "imbed-host did not exit cleanly on SIGTERM"
    assert host.unparsed_lines == []
