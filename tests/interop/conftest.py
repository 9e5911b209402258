"""Fixtures that run the example host program `imbed-host` for the interop tests.

Each test gets its own host process on a free loopback port, so host events
and conversation sequences never leak between tests. Tests of the durable
store start hosts on a SQLite file of their own, and restart or crash them.
The cluster tests start several hosts ("nodes") on one PostgreSQL database
and one Redis (docs/CLUSTER.md), each test on a database and a Redis of its
own. JsonLinesProcess, the stdout-reading half of a host, also runs other
programs that print JSON lines, such as the example client `imbed-client`.
"""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_BINARY = Path(os.environ.get("IMBED_HOST", REPO_ROOT / "build" / "imbed-host"))

# Long enough for a loaded 2-core CI machine, short enough that a hung host
# fails the test instead of the whole run.
STARTUP_TIMEOUT_S = 10
SHUTDOWN_TIMEOUT_S = 10
EVENT_TIMEOUT_S = 5
# A fixed port freed by a killed host can be briefly refused; retry binding it this long.
REBIND_TIMEOUT_S = 10
REBIND_RETRY_INTERVAL_S = 0.2

LISTENING_LINE = re.compile(r"^listening on (wss?://127\.0\.0\.1:(\d+)/ws)$")

# A 64-byte secret: long enough for HS256 and HS512 without PyJWT warning
# about short HMAC keys, so the HS512 test fails on the algorithm alone.
JWT_SECRET = "imbed-interop-tests-hs256-secret-0123456789abcdef0123456789abcde"


class HostDidNotStart(Exception):
    """imbed-host exited or printed something else instead of its "listening on" line."""


class JsonLinesProcess:
    """A child process that takes commands on stdin and prints one JSON object per line on stdout.

    A reader thread parses the lines as they come; tests wait on them with a
    timeout. With banner=True the first line is a banner, kept apart.
    """

    def __init__(self, name, argv, banner=False):
        self.name = name
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=REPO_ROOT,  # where imbed-host finds its default web root, examples/web
        )
        self._changed = threading.Condition()
        self._expects_banner = banner
        self._first_line = None
        self._stdout_closed = False
        self._events = []
        # Lines (after the banner) that are not JSON objects: the programs
        # promise one JSON object per line, so tests assert this stays empty.
        self.unparsed_lines = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            with self._changed:
                if self._expects_banner and self._first_line is None:
                    self._first_line = line
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
        """A snapshot of the parsed events so far that match predicate, oldest first."""
        with self._changed:
            return [event for event in self._events if predicate(event)]

    def wait_for_events(self, predicate, count, timeout=EVENT_TIMEOUT_S):
        """The first count events matching predicate, waiting for them if needed.

        Once stdout is closed no more can come, so the test fails right away.
        """
        def matching():
            return [e for e in self._events if predicate(e)]

        with self._changed:
            self._changed.wait_for(lambda: len(matching()) >= count or self._stdout_closed, timeout=timeout)
            if len(matching()) < count:
                pytest.fail(
                    f"{self.name}: fewer than {count} matching events within {timeout} s "
                    f"(exit code {self.process.poll()}); events: {self._events}"
                )
            return matching()[:count]

    def wait_for_event(self, predicate, timeout=EVENT_TIMEOUT_S):
        """The first event matching predicate, waiting for it if needed."""
        return self.wait_for_events(predicate, 1, timeout)[0]

    def command(self, line):
        """Write one command line to the host's stdin."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def running(self):
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def stop(self):
        """SIGTERM the process and return its exit code (None if it did not exit in time)."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        return self.wait_for_exit()

    def wait_for_exit(self):
        """Wait for the process to exit by itself ("quit") and return its exit code (None if not in time)."""
        try:
            return self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            return None
        finally:
            self._close_pipes()

    def crash(self):
        """SIGKILL the process, as a crash or power cut would end it, and wait until it is gone."""
        self.process.kill()
        try:
            self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        finally:
            self._close_pipes()

    def _close_pipes(self):
        self._reader.join(timeout=SHUTDOWN_TIMEOUT_S)
        self.process.stdin.close()
        self.process.stdout.close()


class ImbedHost(JsonLinesProcess):
    """A running imbed-host: its URL, its stdin commands and its stdout events."""

    def __init__(self, auth_args, db=":memory:", port=0):
        self.db = db
        super().__init__(
            "imbed-host",
            [str(HOST_BINARY), "--listen", f"127.0.0.1:{port}", "--db", str(db), *auth_args],
            banner=True,
        )
        self.url, self.port = self._await_listening_line()

    def _await_listening_line(self):
        """The URL and port in the first line.

        If that is not the "listening on" line, or there is none, kills the
        host and raises HostDidNotStart, so that a caller may try again.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self._first_line is not None or self._stdout_closed,
                timeout=STARTUP_TIMEOUT_S,
            )
            first_line = self._first_line
        match = None if first_line is None else LISTENING_LINE.match(first_line)
        if match is None:
            self.process.kill()
            self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            self._close_pipes()
            if first_line is None:
                raise HostDidNotStart(f"imbed-host printed no first line (exit code {self.process.returncode})")
            raise HostDidNotStart(f"unexpected first line from imbed-host: {first_line!r}")
        return match.group(1), int(match.group(2))


def _start_host(auth_args, db=":memory:", port=0):
    """A running ImbedHost on 127.0.0.1:port (0: a free port); fails the test if it does not start.

    A fixed port is retried for REBIND_TIMEOUT_S, since the host before may
    have just been killed on it.
    """
    if not HOST_BINARY.is_file():
        pytest.fail(f"{HOST_BINARY} does not exist: run `make host` or set IMBED_HOST")
    deadline = time.monotonic() + REBIND_TIMEOUT_S
    while True:
        try:
            return ImbedHost(auth_args, db, port)
        except HostDidNotStart as failure:
            problem = str(failure)
        if port == 0:
            pytest.fail(problem)
        if time.monotonic() > deadline:
            pytest.fail(f"imbed-host did not start on port {port} within {REBIND_TIMEOUT_S} s: {problem}")
        time.sleep(REBIND_RETRY_INTERVAL_S)


def _stop_cleanly(host):
    """SIGTERM host; it must exit 0, having printed only JSON lines."""
    exit_code = host.stop()
    assert exit_code == 0, f"imbed-host exited with {exit_code} after SIGTERM (None: not within {SHUTDOWN_TIMEOUT_S} s)"
    assert host.unparsed_lines == [], "imbed-host printed lines that are not JSON objects"


def _run_host(auth_args):
    host = _start_host(auth_args)
    yield host
    _stop_cleanly(host)


@pytest.fixture
def limited_host():
    """A dev-auth host allowing 2 connections and browsers from https://good.example only."""
    yield from _run_host(["--dev-auth", "--max-connections", "2", "--allow-origin", "https://good.example"])


class DevHostFactory:
    """Starts dev-auth hosts on a given store and restarts them on the same one."""

    def __init__(self):
        self._hosts = []

    def start(self, db=":memory:", port=0):
        """A new host storing into db (a path, or ":memory:") on port (0: a free one)."""
        host = _start_host(["--dev-auth"], db, port)
        self._hosts.append(host)
        return host

    def stop(self, host):
        """SIGTERM host; it must exit 0, having printed only JSON lines."""
        self._hosts.remove(host)
        _stop_cleanly(host)

    def crash(self, host):
        """SIGKILL host, as a crash would end it; the factory no longer stops it at teardown."""
        self._hosts.remove(host)
        host.crash()

    def restart(self, host, crash=False):
        """End host (SIGTERM, or SIGKILL when crash) and start a new one on the same db."""
        if crash:
            self.crash(host)
        else:
            self.stop(host)
        return self.start(host.db)

    def stop_all(self):
        """Stop every host this factory started and did not end yet."""
        while self._hosts:
            self.stop(self._hosts[-1])


@pytest.fixture
def dev_hosts():
    """A DevHostFactory; the hosts it started that still run are stopped after the test."""
    factory = DevHostFactory()
    yield factory
    factory.stop_all()


@pytest.fixture
def dev_host():
    """imbed-host in dev auth mode: a token is the user id."""
    yield from _run_host(["--dev-auth"])


@pytest.fixture
def jwt_host():
    """imbed-host in HS256 JWT mode, signed with JWT_SECRET."""
    yield from _run_host(["--jwt-secret", JWT_SECRET])


# --- clusters: several nodes on one PostgreSQL and one Redis ------------------------

PG_TEST_SERVER = REPO_ROOT / "scripts" / "pg-test-server"
REDIS_TEST_SERVER = REPO_ROOT / "scripts" / "redis-test-server"
# pg-test-server waits up to 30 s for PostgreSQL to come up (after an initdb
# the first time), redis-test-server as long for PING; then they give up.
SERVICE_TIMEOUT_S = 90
# A node answers `ok` on /healthz once it is subscribed to Redis; on a loaded
# machine the first node also creates the schema first.
HEALTHY_TIMEOUT_S = 15
HEALTHY_POLL_INTERVAL_S = 0.05
PSQL_TIMEOUT_S = 30


def _service(script, command, directory):
    """Run scripts/pg-test-server or scripts/redis-test-server; returns what it printed (a URL for start)."""
    try:
        result = subprocess.run(
            [str(script), command, str(directory)], check=False, capture_output=True, text=True, timeout=SERVICE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script.name} {command} {directory} did not finish within {SERVICE_TIMEOUT_S} s")
    if result.returncode != 0:
        pytest.fail(f"{script.name} {command} {directory} exited with {result.returncode}: {result.stderr}")
    return result.stdout.strip()


def _private_service(script, prefix):
    """Start script's server in a new temporary directory; yields its URL, then stops it and removes the directory."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield _service(script, "start", directory / "server")
    finally:
        try:
            _service(script, "stop", directory / "server")
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def _psql(url, sql):
    """Run one statement as the URL's role (the imbed role may create databases)."""
    result = subprocess.run(
        ["psql", url, "-XqAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=False,
        capture_output=True,
        text=True,
        timeout=PSQL_TIMEOUT_S,
    )
    if result.returncode != 0:
        pytest.fail(f"psql {sql!r} exited with {result.returncode}: {result.stderr}")
    return result.stdout


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server: IMBED_TEST_POSTGRES's, or a private one for the whole run."""
    shared = os.environ.get("IMBED_TEST_POSTGRES")
    if shared:
        yield shared
    else:
        yield from _private_service(PG_TEST_SERVER, "imbed-interop-pg.")


@pytest.fixture
def postgres_database(postgres_server):
    """The URL of a new, empty database on postgres_server, dropped after the test."""
    name = f"interop_{uuid.uuid4().hex[:12]}"
    _psql(postgres_server, f"CREATE DATABASE {name}")
    try:
        yield postgres_server.rsplit("/", 1)[0] + "/" + name
    finally:
        # The nodes are stopped by now; FORCE ends the connections of a killed one.
        _psql(postgres_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def redis_server():
    """The URL of a private Redis for this test only.

    Not IMBED_TEST_REDIS's: every node publishes on one channel, imbed:bus,
    whatever its database (docs/CLUSTER.md), so a Redis shared between tests
    would mix their live messages and presence. A private one starts in a
    fraction of a second.
    """
    yield from _private_service(REDIS_TEST_SERVER, "imbed-interop-redis.")


class ClusterNode(ImbedHost):
    """imbed-host as one node of a cluster: dev auth, a free port, --postgres, --redis and --node-id.

    Started, it is healthy: /healthz answered `ok` (it is subscribed to Redis).
    """

    def __init__(self, node_id, postgres, redis, config=None):
        self.db = None
        self.node_id = node_id
        argv = [str(HOST_BINARY), "--listen", "127.0.0.1:0", "--dev-auth"]
        if config is not None:
            argv += ["--config", str(config)]
        argv += ["--postgres", postgres, "--redis", redis, "--node-id", node_id]
        JsonLinesProcess.__init__(self, f"imbed-host {node_id}", argv, banner=True)
        self.url, self.port = self._await_listening_line()

    def healthz(self):
        """GET /healthz: (status, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=EVENT_TIMEOUT_S)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def wait_healthy(self):
        """Wait until /healthz answers 200 `ok`; fails the test if it does not within HEALTHY_TIMEOUT_S."""
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        last = None
        while time.monotonic() < deadline and self.running():
            try:
                last = self.healthz()
            except OSError as error:
                last = error
            if last == (200, "ok\n"):
                return
            time.sleep(HEALTHY_POLL_INTERVAL_S)
        pytest.fail(
            f"{self.name} not healthy within {HEALTHY_TIMEOUT_S} s (exit code {self.process.poll()}); "
            f"last /healthz: {last!r}"
        )


class Cluster:
    """Starts nodes on one PostgreSQL database and one Redis; stops or kills them."""

    def __init__(self, postgres, redis, directory):
        self.postgres = postgres
        self.redis = redis
        self._directory = directory  # for the nodes' --config files
        self._nodes = []

    def start(self, node_id, config=None, redis=None):
        """A new healthy node named node_id; config, a dict, is its --config file (docs/C-API.md keys).

        redis overrides the cluster's Redis URL for this node (a proxy to it, say).
        """
        if not HOST_BINARY.is_file():
            pytest.fail(f"{HOST_BINARY} does not exist: run `make host` or set IMBED_HOST")
        config_file = None
        if config is not None:
            config_file = self._directory / f"{node_id}.json"
            config_file.write_text(json.dumps(config))
        try:
            node = ClusterNode(node_id, self.postgres, redis or self.redis, config_file)
        except HostDidNotStart as failure:
            pytest.fail(f"node {node_id}: {failure}")
        self._nodes.append(node)
        node.wait_healthy()
        return node

    def start_many(self, count, config=None, prefix="n"):
        """count nodes, prefix1..prefixN, each started once the one before is healthy."""
        return [self.start(f"{prefix}{n}", config) for n in range(1, count + 1)]

    def stop(self, node):
        """SIGTERM node; it must exit 0, having printed only JSON lines."""
        self._nodes.remove(node)
        _stop_cleanly(node)

    def crash(self, node):
        """SIGKILL node, as a crash would end it, unless it is gone already; it is no longer stopped at teardown."""
        if node in self._nodes:
            self._nodes.remove(node)
            node.crash()

    def stop_all(self):
        """Stop every node still running, all of them even when one fails; then report the first failure."""
        failures = []
        while self._nodes:
            try:
                self.stop(self._nodes[-1])
            except AssertionError as failure:
                failures.append(failure)
        if failures:
            raise failures[0]


@pytest.fixture
def cluster(postgres_database, redis_server):
    """A Cluster on a new database and a private Redis; its nodes still running are stopped after the test."""
    directory = Path(tempfile.mkdtemp(prefix="imbed-cluster."))
    nodes = Cluster(postgres_database, redis_server, directory)
    try:
        yield nodes
    finally:
        try:
            nodes.stop_all()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
