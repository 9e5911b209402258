"""The `imbed-host` process of the soak: start, stdin commands, SIGKILL, and
what the soak measures of it (RSS, heap in use, threads, open descriptors,
/metrics)."""

import asyncio
import ctypes
import json
import os
import re
import signal
from collections import Counter
from dataclasses import dataclass

START_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 60
QUIT_TIMEOUT_S = 60
LISTENING_LINE = re.compile(r"^listening on ws://127\.0\.0\.1:(\d+)/ws$")
PR_SET_PDEATHSIG = 1
# Looked up here, not in the child: after fork only the forking thread runs,
# and the dynamic loader's lock may be held by one that is gone.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent():
    """Runs in the child before exec: the kernel kills the host if the soak dies first."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class HostDidNotStart(Exception):
    pass


@dataclass
class Snapshot:
    """What the process holds at one moment."""

    rss_kib: int
    heap_kib: int  # in use, from heap_probe.c
    heap_free_kib: int  # kept free by glibc, from heap_probe.c
    threads: int
    fds: Counter  # kind (socket, database, other) -> open descriptors

    @property
    def fd_count(self):
        return sum(self.fds.values())


class Host:
    def __init__(self, binary, port, db, log_path, heap_probe, heap_file):
        self.argv = [
            binary,
            "--listen", f"127.0.0.1:{port}",
            "--db", db,
            "--dev-auth",
            "--no-web",
            "--quiet",
            "--log-level", "warn",
        ]  # fmt: skip
        self.env = {**os.environ, "LD_PRELOAD": heap_probe, "IMBED_SOAK_HEAP_FILE": heap_file}
        self.heap_file = heap_file
        self.port = port
        self.db = db
        self.log_path = log_path
        self.process = None
        self.replies = None
        self.events = {}  # engine event name -> how many the host printed

    async def start(self):
        """Starts the process; retries while the port is still held by a killed one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            with open(self.log_path, "ab") as log:
                self.process = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    env=self.env,
                    preexec_fn=die_with_parent,
                    limit=1 << 20,
                )
            try:
                banner = await asyncio.wait_for(self.process.stdout.readline(), START_TIMEOUT_S)
            except TimeoutError:
                banner = b""
            if LISTENING_LINE.match(banner.decode().strip()):
                break
            self.kill_now()
            await self.process.wait()
            if loop.time() > deadline:
                raise HostDidNotStart(f"imbed-host did not start; see {self.log_path}")
            await asyncio.sleep(0.5)
        self.replies = asyncio.Queue()
        asyncio.create_task(self._read_stdout(self.process, self.replies))

    async def _read_stdout(self, process, replies):
        """Keeps the pipe drained (a full one would block the engine's events) and routes command replies."""
        async for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed line"}
            name = event.get("event")
            if "command" in event or name in ("stats", "restarted"):
                await replies.put(event)
            else:
                self.events[name] = self.events.get(name, 0) + 1

    async def command(self, line, reply_event):
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        reply = await asyncio.wait_for(self.replies.get(), COMMAND_TIMEOUT_S)
        if reply.get("event") != reply_event:
            raise RuntimeError(f"imbed-host answered {line!r} with {reply}")
        return reply

    async def restart(self):
        return await self.command("restart", "restarted")

    async def stats(self):
        return await self.command("stats", "stats")

    async def kill(self):
        self.kill_now()
        await self.process.wait()

    async def quit(self):
        """Stops the host the clean way; returns its exit status (killing it after the timeout)."""
        self.process.stdin.write(b"quit\n")
        await self.process.stdin.drain()
        try:
            return await asyncio.wait_for(self.process.wait(), QUIT_TIMEOUT_S)
        except TimeoutError:
            await self.kill()
            return None

    def kill_now(self):
        if self.process is not None and self.process.returncode is None:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def snapshot(self):
        """RSS, threads and descriptors from /proc; FileNotFoundError once the process is gone."""
        proc = f"/proc/{self.process.pid}"
        with open(f"{proc}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        fds = Counter()
        for fd in os.listdir(f"{proc}/fd"):
            try:
                target = os.readlink(f"{proc}/fd/{fd}")
            except FileNotFoundError:  # closed since the listing
                continue
            fds[
                "socket" if target.startswith("socket:") else "database" if target.startswith(self.db) else "other"
            ] += 1
        with open(self.heap_file) as heap:
            in_use, free = (int(number) // 1024 for number in heap.read().split())
        return Snapshot(int(fields["VmRSS"].split()[0]), in_use, free, int(fields["Threads"]), fds)

    async def metric(self, name):
        """One value of the engine's /metrics page (0 when it is not there)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            page = (await asyncio.wait_for(reader.read(), 10)).decode()
        finally:
            writer.close()
        for line in page.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0
