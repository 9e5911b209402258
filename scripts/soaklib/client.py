"""One simulated user of the soak.

A client connects with dev auth, joins its groups, catches up with `sync`,
then sends direct and group messages at random while it reads everything the
server pushes. Whenever its connection ends (a random disconnect, a server
restart, a 1013 after a stall) it reconnects, syncs from its cursors and
re-sends every message it has no ack for, with the same id: the protocol's
recipe for never losing or doubling a message.

It keeps what the final checks need: every message it sent (conversation and
body), every ack, and every message it kept (`have`), applying the
protocol's rule that a message at or below the cursor is a repeat.
"""

import asyncio
import json
import random
import socket
from collections import Counter, defaultdict, deque

import websockets
from websockets.exceptions import ConnectionClosed, WebSocketException

CONNECT_TIMEOUT_S = 10
# A join's `ok` or a sync's `synced` later than this ends the session.
REPLY_TIMEOUT_S = 30
# A send unacknowledged this long ends the session; the next one re-sends it.
ACK_TIMEOUT_S = 30
MAX_IN_FLIGHT = 16
SYNC_LIMIT = 1000
MAX_BACKOFF_S = 2.0
# A fixed receive buffer: Linux would otherwise grow it (to several MiB for a
# client that has been reading fast), and a stalled client would hide that
# much before the server's queue even starts to fill.
RECEIVE_BUFFER = 64 * 1024
# Refusals the protocol says to retry with the same id.
RETRYABLE = {"internal", "rate_limited"}
RETRY_AFTER_S = 1.0
# Frames a client expects and has nothing to do with.
IGNORED = {"welcome", "member", "presence", "typing", "read", "pong"}


class SessionEnded(Exception):
    """The server misbehaved: the client ends the session and reconnects."""


class Disconnected(Exception):
    """The connection ended while the client waited for a reply."""


def conv_of(sender, target):
    """The conversation a send to `target` ({"to": user} or {"group": g}) lands in."""
    if "group" in target:
        return f"g:{target['group']}"
    # Ids are ASCII, so Python's string order is the protocol's bytewise order.
    low, high = sorted((sender, target["to"]))
    return f"dm:{low}:{high}"


def body_of(message_id, pad):
    """The body of message `message_id`: its id, to spot doubles in the store, and padding."""
    return {"n": message_id, "pad": "x" * pad}


class Client:
    def __init__(
        self, user, address, seed, contacts=(), groups=(), send_rate=0.0, group_share=0.0, disconnect_mean_s=None
    ):
        self.user = user
        self.address = address  # (host, port)
        self.url = f"ws://{address[0]}:{address[1]}/ws?token={user}"
        self.contacts = list(contacts)
        self.groups = list(groups)
        self.send_rate = send_rate
        self.group_share = group_share
        self.disconnect_mean_s = disconnect_mean_s
        self.rng = random.Random(seed)

        # What it sent: id -> (conv, pad), the unacknowledged ones in send
        # order (id -> [frame, time sent]), and every ack (id -> (conv, seq)).
        self.sent = {}
        self.pending = {}
        self.acks = {}
        self.refused = {}  # pending id -> when a retryable refusal came
        self.refused_for_good = {}  # id -> error code
        self.backlog = deque()  # (target, pad) of sends asked for by flood()
        self.next_message = 0

        # What it kept: conv -> seq -> id; the highest seq below which it has
        # every message (the sync cursor), and the highest seq it has.
        self.have = defaultdict(dict)
        self.cursor = defaultdict(int)
        self.top = defaultdict(int)
        self.server_convs = set()  # the conversations the last sync named

        self.counts = Counter()
        self.problems = []

        # Set by the soak: `load` allows sending on its own and random
        # disconnects; a cleared `reading` is a stall.
        self.load = False
        self.reading = asyncio.Event()
        self.reading.set()
        self.stopping = False
        self.wake = asyncio.Event()

        self.ws = None
        self.ready = False  # this session has joined and synced
        self.need_sync = False
        self.syncs_done = 0
        self.closing = False  # this side decided to end the session
        self.ends = []  # how each session ended: the server's close code, or "client"
        self.waiting = {}  # request id -> future of its reply
        self.next_request = 0
        self.joined = set()

    def problem(self, text):
        self.counts["problems"] += 1
        if len(self.problems) < 20:
            self.problems.append(text)

    # --- the soak's controls

    def set_load(self, on):
        self.load = on
        self.wake.set()

    def stall(self):
        self.reading.clear()
        self.counts["stalls"] += 1

    def resume(self):
        self.reading.set()
        self.wake.set()

    def request_sync(self):
        self.need_sync = True
        self.wake.set()

    def stop(self):
        self.stopping = True
        self.reading.set()
        self.wake.set()

    def settled(self):
        """Connected, caught up and with nothing unacknowledged."""
        return self.ready and not self.pending and not self.backlog and not self.need_sync and self.reading.is_set()

    async def flood(self, to, count, pad, timeout_s):
        """Sends `count` messages of `pad` bytes to `to`; True once all are acknowledged."""
        self.backlog.extend([({"to": to}, pad)] * count)
        self.wake.set()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.backlog or self.pending:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    # --- connections

    async def run(self):
        backoff = 0.1
        while not self.stopping:
            try:
                ws = await self.connect()
            except (OSError, TimeoutError, WebSocketException):
                self.counts["connect failures"] += 1
                await asyncio.sleep(backoff * (0.5 + self.rng.random()))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.1
            await self.session(ws)
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))

    async def connect(self):
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, self.address), CONNECT_TIMEOUT_S)
            return await websockets.connect(
                self.url,
                sock=sock,
                open_timeout=CONNECT_TIMEOUT_S,
                close_timeout=2,
                ping_interval=None,  # its pongs would not come back during a stall
                max_queue=16,  # a stalled client stops reading from the socket soon
            )
        except BaseException:
            sock.close()
            raise

    async def session(self, ws):
        self.ws, self.ready, self.closing = ws, False, False
        self.counts["sessions"] += 1
        reader = asyncio.create_task(self.read(ws))
        try:
            for group in self.groups:
                if group not in self.joined:
                    await self.request({"type": "join", "group": group})
                    self.joined.add(group)
            await self.sync()
            self.ready = True
            for mid in list(self.pending):
                await self.transmit(mid)
            await self.talk(ws, reader)
        except TimeoutError:
            self.counts["reply timeouts"] += 1
            self.closing = True
        except SessionEnded:
            self.closing = True
        except (ConnectionClosed, Disconnected):
            pass
        finally:
            self.ready = False
            if not reader.done():
                await ws.close()
            await asyncio.wait([reader], timeout=5)
            reader.cancel()
            self.ws = None
            if self.closing:
                self.ends.append("client")
            else:
                received = ws.protocol.close_rcvd
                code = received.code if received else 1006
                self.ends.append(code)
                self.counts[f"closed by server ({code})"] += 1

    async def read(self, ws):
        try:
            while True:
                await self.reading.wait()
                self.on_frame(json.loads(await ws.recv()))
        except ConnectionClosed:
            pass
        except Exception as failure:  # a frame this client cannot handle: report it, do not hide it
            self.problem(f"reading failed: {failure!r}")
            self.closing = True
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(Disconnected())
            self.wake.set()

    async def talk(self, ws, reader):
        """Sends and watches the session until it should end."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_send = now + self.rng.expovariate(self.send_rate) if self.send_rate else float("inf")
        end_at = now + self.rng.expovariate(1 / self.disconnect_mean_s) if self.disconnect_mean_s else float("inf")
        while not reader.done():
            self.wake.clear()  # before looking, so that nothing set after is missed
            now = loop.time()
            if self.stopping:
                self.closing = True
                return
            if not self.reading.is_set():  # stalled: a frozen app sends nothing either
                end_at = float("inf")  # and the server, not chance, is to end this session
                await self.idle(1.0)
                continue
            if self.need_sync:
                await self.sync()
                continue
            if self.load and now >= end_at:
                self.counts["random disconnects"] += 1
                self.closing = True
                if self.rng.random() < 0.5:
                    ws.transport.abort()  # a dropped network: no close frame
                return
            if self.pending and now - next(iter(self.pending.values()))[1] > ACK_TIMEOUT_S:
                self.counts["ack timeouts"] += 1
                self.closing = True
                return
            for mid, refused_at in list(self.refused.items()):
                if now - refused_at >= RETRY_AFTER_S:
                    del self.refused[mid]
                    await self.transmit(mid)
            while self.backlog and len(self.pending) < MAX_IN_FLIGHT:
                await self.post(*self.backlog.popleft())
            if self.load and now >= next_send:
                if len(self.pending) < MAX_IN_FLIGHT:
                    await self.send_random()
                next_send = now + self.rng.expovariate(self.send_rate)
            wait = min(next_send, end_at) if self.load else float("inf")
            await self.idle(min(max(wait - now, 0.01), 1.0))

    async def idle(self, seconds):
        """Waits until woken (a frame, a control) or `seconds` pass."""
        try:
            await asyncio.wait_for(self.wake.wait(), seconds)
        except TimeoutError:
            pass

    # --- requests

    async def request(self, frame):
        self.next_request += 1
        rid = f"r{self.next_request}"
        future = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        try:
            await self.ws.send(json.dumps({**frame, "id": rid}))
            reply = await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        finally:
            del self.waiting[rid]
        if reply["type"] == "error":
            self.problem(f"{frame['type']} refused: {reply['code']} {reply.get('message')}")
            raise SessionEnded()
        return reply

    async def sync(self):
        """Syncs from the cursors until nothing is left out."""
        self.need_sync = False
        # A reply full of messages may leave out conversations with nothing
        # new; together the rounds name them all.
        named = set()
        while True:
            before = dict(self.cursor)
            reply = await self.request({"type": "sync", "cursors": before, "limit": SYNC_LIMIT})
            self.counts["sync rounds"] += 1
            named.update(reply["convs"])
            if not any(info["more"] for info in reply["convs"].values()):
                break
            if dict(self.cursor) == before:
                self.problem(f"sync: `more` without progress at cursors {before}")
                raise SessionEnded()
        self.server_convs = named
        self.syncs_done += 1

    async def send_random(self):
        if self.groups and self.rng.random() < self.group_share:
            # Group messages are the larger ones, so that a stalled member
            # of a busy group falls behind by more bytes.
            await self.post({"group": self.rng.choice(self.groups)}, self.rng.randint(0, 2000))
        else:
            await self.post({"to": self.rng.choice(self.contacts)}, self.rng.randint(0, 200))

    async def post(self, target, pad):
        self.next_message += 1
        mid = f"{self.user}-{self.next_message}"
        frame = {"type": "send", "id": mid, **target, "body": body_of(mid, pad)}
        self.sent[mid] = (conv_of(self.user, target), pad)
        self.pending[mid] = [json.dumps(frame), 0.0]
        self.counts["sent"] += 1
        await self.transmit(mid)

    async def transmit(self, mid):
        entry = self.pending[mid]
        entry[1] = asyncio.get_running_loop().time()
        await self.ws.send(entry[0])

    # --- what the server sends

    def on_frame(self, frame):
        kind = frame.get("type")
        if kind == "msg":
            self.counts["msg frames"] += 1
            self.keep(frame["conv"], frame["seq"], frame["id"], frame["from"], live=True)
        elif kind == "ack":
            self.on_ack(frame)
        elif frame.get("id") in self.waiting:
            self.waiting[frame["id"]].set_result(frame)
        elif kind == "error" and frame.get("id") in self.pending:
            self.on_refused(frame)
        elif kind not in IGNORED:
            self.problem(f"unexpected frame {frame}")

    def on_ack(self, frame):
        mid, key = frame["id"], (frame["conv"], frame["seq"])
        if mid not in self.sent:
            self.problem(f"ack for an id never sent: {frame}")
            return
        if self.acks.get(mid, key) != key:
            self.problem(f"ack of {mid} changed from {self.acks[mid]} to {key}")
        if key[0] != self.sent[mid][0]:
            self.problem(f"ack of {mid} names {key[0]}, not {self.sent[mid][0]}")
        self.acks[mid] = key
        self.pending.pop(mid, None)
        self.refused.pop(mid, None)
        self.keep(key[0], key[1], mid, self.user, live=False)

    def on_refused(self, frame):
        mid, code = frame["id"], frame.get("code")
        if code in RETRYABLE:
            self.counts[f"sends refused ({code}), retried"] += 1
            self.refused[mid] = asyncio.get_running_loop().time()
        else:
            self.problem(f"send {mid} refused: {code} {frame.get('message')}")
            self.refused_for_good[mid] = code
            del self.pending[mid]

    def keep(self, conv, seq, mid, sender, live):
        if mid.rpartition("-")[0] != sender:
            self.problem(f"{conv}#{seq}: id {mid} from {sender}")
        have = self.have[conv]
        known = have.get(seq)
        if known is not None:
            if known != mid:
                self.problem(f"{conv}#{seq} was {known}, now {mid}")
            self.counts["repeats"] += 1
            return
        have[seq] = mid
        if live and self.ready and seq > self.top[conv] + 1 and not self.sending_to(conv):
            # After the first sync, a session gets every message of its
            # conversations in order: a hole means a push went missing.
            self.counts["live gaps"] += 1
            self.request_sync()
        self.top[conv] = max(self.top[conv], seq)
        cursor = self.cursor[conv]
        while cursor + 1 in have:
            cursor += 1
        self.cursor[conv] = cursor

    def sending_to(self, conv):
        """Whether one of its own sends to `conv` awaits an ack (whose seq may fill a hole)."""
        return any(self.sent[mid][0] == conv for mid in self.pending)
