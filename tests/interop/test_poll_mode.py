"""imbed-host --poll (issue 17): events.delivery "poll", taken by the host's
one poll() loop over stdin and the server's event descriptor, with no event
thread and no callbacks, and printed exactly as the default callback mode
prints them."""
import asyncio
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EVENT_TIMEOUT_S, HOST_BINARY, REPO_ROOT, SHUTDOWN_TIMEOUT_S, _run_host, _start_host, _stop_cleanly
from test_config_file import hosted, write_config
from test_python_clients import assert_frame, expect_close, login_as, recv_frame, run, send_frame, send_message

# The engine names its event thread; a polling server has none.
EVENT_THREAD_NAME = "imbed-events"
MODES = {"callback": ["--dev-auth"], "poll": ["--dev-auth", "--poll"]}
CONSOLE_REPLIES = ("sent", "stats", "online", "ok", "members", "history", "restarted", "error")
# More than the host takes in one turn of its loop (16 batches of 64), within the engine's burst of 2000.
BURST_MESSAGES = 1500


@pytest.fixture
def poll_host():
    """imbed-host in dev auth mode with --poll."""
    yield from _run_host(MODES["poll"])


def thread_names(pid, timeout=EVENT_TIMEOUT_S):
    """The names of the threads of process pid, once each has its own.

    A thread starts with its process's name ("imbed-host") and takes its own
    a moment later, so only the main thread may keep it.
    """
    deadline = time.monotonic() + timeout
    while True:
        names = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                names.append((task / "comm").read_text().strip())
            except FileNotFoundError:  # the thread ended meanwhile
                pass
        if names.count("imbed-host") == 1 or time.monotonic() > deadline:
            return names
        time.sleep(0.01)


def is_event(name):
    return lambda event: event.get("event") == name


def reply_to(host, line, count_before):
    """Run the console command line and return its reply, the console reply after count_before others."""
    host.command(line)
    return host.wait_for_events(lambda e: e.get("event") in CONSOLE_REPLIES, count_before + 1)[-1]


@pytest.mark.parametrize("mode", MODES)
def test_connect_and_message_events_are_printed_in_order_as_in_callback_mode(mode):
    """The same chat gives the same lines in both modes: connected, then each
    message in order, then disconnected, one JSON object per line."""
    host = _start_host(MODES[mode])
    try:
        async def scenario():
            alice, alice_welcome = await login_as(host.url, "alice")
            bob, bob_welcome = await login_as(host.url, "bob")
            async with alice, bob:
                msgs = []
                for n in range(5):
                    await send_message(alice, f"a-{n}", "bob", {"n": n})
                    msgs.append(await recv_frame(bob))
            return alice_welcome, bob_welcome, msgs

        alice_welcome, bob_welcome, msgs = asyncio.run(asyncio.wait_for(scenario(), 30))
        expected = [
            {"event": "connected", "user": "alice", "session": alice_welcome["session"], "device": alice_welcome["device"]},
            {"event": "connected", "user": "bob", "session": bob_welcome["session"], "device": bob_welcome["device"]},
            *({"event": "message", "message": msg} for msg in msgs),
        ]
        assert host.wait_for_events(lambda e: e.get("event") in ("connected", "message"), len(expected)) == expected
        disconnected = host.wait_for_events(is_event("disconnected"), 2)
        assert {(e["user"], e["session"]) for e in disconnected} == {
            ("alice", alice_welcome["session"]),
            ("bob", bob_welcome["session"]),
        }
        assert all(set(e) == {"event", "user", "session", "device", "reason"} for e in disconnected), disconnected
        assert (EVENT_THREAD_NAME in thread_names(host.process.pid)) == (mode == "callback")
    finally:
        _stop_cleanly(host)


def test_a_burst_of_messages_is_printed_whole_and_in_order(poll_host):
    """More events at once than one turn of the loop takes: every one is
    printed, in seq order, and a command after them is still answered."""
    async def scenario():
        alice, _ = await login_as(poll_host.url, "alice")
        async with alice:
            for n in range(BURST_MESSAGES):
                await send_frame(alice, {"type": "send", "id": f"b-{n}", "to": "bob", "body": n})
            for _ in range(BURST_MESSAGES):
                assert_frame(await recv_frame(alice), type="ack")
    run(scenario())
    messages = poll_host.wait_for_events(is_event("message"), BURST_MESSAGES)
    assert [e["message"]["seq"] for e in messages] == list(range(1, BURST_MESSAGES + 1))
    assert [e["message"]["body"] for e in messages] == list(range(BURST_MESSAGES))
    assert_frame(reply_to(poll_host, "stats", 0), event="stats", messages_stored=BURST_MESSAGES)


def test_console_commands_work_in_poll_mode(poll_host):
    """send, online, stats, groups and history answer as in callback mode,
    a line written in two pieces runs once it is whole, and the events the
    commands cause are printed too."""
    async def scenario():
        bob, bob_welcome = await login_as(poll_host.url, "bob")
        async with bob:
            replies = 0

            def console(line):
                nonlocal replies
                replies += 1
                return reply_to(poll_host, line, replies - 1)

            assert console('send bob {"text":"from host"}') == {"event": "sent", "to": "bob", "seq": 1}
            msg = await recv_frame(bob)
            assert_frame(msg, type="msg", conv="dm:bob:host", seq=1, body={"text": "from host"}, **{"from": "host"})
            poll_host.wait_for_event(lambda e: e == {"event": "message", "message": msg})

            assert console("online") == {"event": "online", "users": ["bob"]}

            # A partial line waits in the host's buffer until its newline comes.
            poll_host.process.stdin.write("sta")
            poll_host.process.stdin.flush()
            await asyncio.sleep(0.2)
            assert len(poll_host.events(lambda e: e.get("event") in CONSOLE_REPLIES)) == replies
            replies += 1
            poll_host.command("ts")
            stats = poll_host.wait_for_events(lambda e: e.get("event") in CONSOLE_REPLIES, replies)[-1]
            assert_frame(stats, event="stats", connections=1, users_online=1, messages_stored=1)

            assert console("create-group team") == {"event": "ok", "command": "create-group", "group": "team"}
            assert console("add team bob") == {"event": "ok", "command": "add", "group": "team", "user": "bob"}
            poll_host.wait_for_event(lambda e: e == {"event": "member", "group": "team", "user": "bob", "joined": True})
            assert console("members team") == {"event": "members", "group": "team", "closed": False, "members": ["bob"]}
            assert_frame(await recv_frame(bob), type="member", group="team", user="bob", joined=True)
            assert console('group team {"text":"to the team"}') == {"event": "sent", "group": "team", "seq": 1}
            assert_frame(await recv_frame(bob), type="msg", conv="g:team", body={"text": "to the team"})
            history = console("history dm:bob:host")
            assert_frame(history, event="history", conv="dm:bob:host", messages=[msg])
            assert_frame(console("frobnicate"), event="error", command="frobnicate")
        poll_host.wait_for_event(lambda e: e.get("event") == "disconnected" and e["session"] == bob_welcome["session"])
    run(scenario())


def test_restart_in_poll_mode_serves_the_new_servers_events(poll_host):
    """restart stops the server (its sessions close with 1001) after the
    events that came before it are printed, and prints the events of the stop
    itself (the closed sessions' disconnects) before its reply, as callback
    mode does; the new server's events, on its own descriptor, keep coming,
    and a second restart works the same."""
    async def chat_then_restart(url, round_number):
        alice, welcome = await login_as(url, "alice")
        async with alice:
            await send_message(alice, f"r-{round_number}", "bob", {"round": round_number})
            restarted_before = len(poll_host.events(is_event("restarted")))
            poll_host.command("restart")
            await expect_close(alice, 1001)
        restarted = poll_host.wait_for_events(is_event("restarted"), restarted_before + 1)[-1]
        events = poll_host.events()
        message_at = next(i for i, e in enumerate(events)
                          if e.get("event") == "message" and e["message"]["id"] == f"r-{round_number}")
        assert events.index(restarted) > message_at, events
        assert events.index(restarted) > events.index(
            {"event": "connected", "user": "alice", "session": welcome["session"], "device": welcome["device"]}), events
        closed_by_stop = [i for i, e in enumerate(events) if e.get("event") == "disconnected"
                          and e["session"] == welcome["session"]]
        assert closed_by_stop and closed_by_stop[0] < events.index(restarted), events
        return f"ws://127.0.0.1:{restarted['port']}/ws"

    async def scenario():
        url = poll_host.url
        for round_number in range(2):
            url = await chat_then_restart(url, round_number)
            bob, welcome = await login_as(url, "bob")
            async with bob:
                poll_host.wait_for_event(lambda e: e == {"event": "connected", "user": "bob", "session": welcome["session"], "device": welcome["device"]})
                sent_before = len(poll_host.events(is_event("sent")))
                poll_host.command('send bob {"after":"restart"}')
                msg = await recv_frame(bob)
                assert_frame(msg, type="msg", body={"after": "restart"})
                poll_host.wait_for_events(is_event("sent"), sent_before + 1)
                poll_host.wait_for_event(lambda e: e == {"event": "message", "message": msg})
        assert EVENT_THREAD_NAME not in thread_names(poll_host.process.pid)
    run(scenario())


def test_quit_exits_0_in_poll_mode():
    host = _start_host(MODES["poll"])
    host.command("quit")
    assert host.wait_for_exit() == 0
    assert host.unparsed_lines == []


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_end_of_input_keeps_serving_events_until_a_stop_signal(stop_signal):
    """As in callback mode, end of input only ends the commands: the loop
    keeps printing events, and SIGINT or SIGTERM exits 0."""
    host = _start_host(MODES["poll"])
    try:
        host.process.stdin.close()

        async def scenario():
            alice, welcome = await login_as(host.url, "alice")
            async with alice:
                host.wait_for_event(lambda e: e == {"event": "connected", "user": "alice", "session": welcome["session"], "device": welcome["device"]})
                await send_message(alice, "c-1", "bob", "after the end of input")
            host.wait_for_event(lambda e: e.get("event") == "message" and e["message"]["id"] == "c-1")
        run(scenario())
        host.process.send_signal(stop_signal)
        assert host.wait_for_exit() == 0
        assert host.unparsed_lines == []
    finally:
        if host.running():
            host.crash()


def run_until_quit(args):
    """Run imbed-host with args until "quit" (after its banner); returns (banner port, stderr)."""
    process = subprocess.Popen([str(HOST_BINARY), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    banner = process.stdout.readline()
    port = re.fullmatch(r"listening on ws://127\.0\.0\.1:(\d+)/ws\n", banner)
    assert port is not None, banner
    _, stderr = process.communicate("quit\n", timeout=SHUTDOWN_TIMEOUT_S)
    assert process.returncode == 0, stderr
    return port.group(1), stderr


def test_log_records_go_to_stderr_as_in_callback_mode():
    """IMBED_EVENT_LOG records are printed as on_log prints them."""
    for mode in MODES:
        port, stderr = run_until_quit([*MODES[mode], "--listen", "127.0.0.1:0"])
        assert stderr.splitlines()[0] == f"imbed-host: [INFO] imbed::server: listening address=127.0.0.1:{port}", mode


@pytest.mark.parametrize("file_events, flags, polls", [
    ({"delivery": "poll"}, [], True),
    ({"delivery": "poll"}, ["--quiet"], True),
    ({"delivery": "callback", "queue_capacity": 1000}, ["--poll"], True),
    ({"queue_capacity": 1000}, [], False),
], ids=["file", "file-and-quiet", "flag-over-file", "callback"])
def test_the_delivery_comes_from_the_merged_configuration(tmp_path, file_events, flags, polls):
    """A file's "events":{"delivery":"poll"} runs the host in poll mode as
    --poll does (no event thread, events still printed); --quiet sets only
    events.messages, and --poll wins over the file."""
    path = write_config(tmp_path, {"auth": {"mode": "dev"}, "events": file_events})
    with hosted("--config", str(path), "--listen", "127.0.0.1:0", *flags) as host:
        assert (EVENT_THREAD_NAME in thread_names(host.process.pid)) != polls

        async def scenario():
            alice, welcome = await login_as(host.url, "alice")
            await alice.close()
            host.wait_for_event(lambda e: e == {"event": "connected", "user": "alice", "session": welcome["session"], "device": welcome["device"]})
        run(scenario())


def test_help_documents_poll():
    result = subprocess.run([str(HOST_BINARY), "--help"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    assert "--poll" in result.stdout
