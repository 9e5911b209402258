// Groups interop: three Node `ws` clients join a group and chat through the
// example host program `imbed-host`. Run with `node --test tests/interop/`.
'use strict';
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const { describe, test, before, after } = require('node:test');
const WebSocket = require('ws');

const HOST_BINARY = process.env.IMBED_HOST || path.resolve(__dirname, '..', '..', 'build', 'imbed-host');
// One reply on loopback takes milliseconds; these only trip on a hung server.
const REPLY_TIMEOUT_MS = 5000;
const STARTUP_TIMEOUT_MS = 10000;
const SHUTDOWN_TIMEOUT_MS = 10000;
const TEST_TIMEOUT_MS = 30000;
const MESSAGES_EACH = 10;

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Starts imbed-host on a free loopback port; resolves to the process and its URL.
function startHost() {
  const child = spawn(HOST_BINARY, ['--listen', '127.0.0.1:0', '--db', ':memory:', '--dev-auth'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const firstLine = new Promise((resolve, reject) => {
    child.on('error', reject);
    readline.createInterface({ input: child.stdout }).once('line', resolve);
    exited.then(({ code }) => reject(new Error(`imbed-host exited with ${code} before listening`)));
  });
  return withTimeout(firstLine, STARTUP_TIMEOUT_MS, 'the listening line').then((line) => {
    const match = /^listening on (ws:\/\/127\.0\.0\.1:\d+\/ws)$/.exec(line);
    assert.ok(match, `unexpected first line from imbed-host: ${line}`);
    return { child, exited, url: match[1] };
  });
}

// A connected client whose incoming frames queue up until a test takes them.
class Client {
  constructor(url, user) {
    this.user = user;
    this.ws = new WebSocket(`${url}?token=${encodeURIComponent(user)}`, { perMessageDeflate: false });
    this.frames = [];
    this.failure = null;
    this.waiters = [];
    const wakeAll = () => this.waiters.splice(0).forEach((wake) => wake());
    this.ws.on('message', (data, isBinary) => {
      if (isBinary) this.failure = new Error('server sent a binary frame');
      else this.frames.push(JSON.parse(data.toString('utf8')));
      wakeAll();
    });
    this.ws.on('error', (err) => {
      this.failure = err;
      wakeAll();
    });
  }

  static async login(url, user) {
    const client = new Client(url, user);
    const welcome = await client.next();
    assert.equal(welcome.type, 'welcome');
    assert.equal(welcome.user, user);
    return client;
  }

  // The next frame from the server, in arrival order.
  next() {
    const waitForFrame = () => {
      if (this.failure) return Promise.reject(this.failure);
      if (this.frames.length > 0) return Promise.resolve(this.frames.shift());
      return new Promise((wake) => this.waiters.push(wake)).then(waitForFrame);
    };
    return withTimeout(waitForFrame(), REPLY_TIMEOUT_MS, `a frame for ${this.user}`);
  }

  sendFrame(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  // Sends a request and returns the next frame, its reply.
  async request(frame) {
    this.sendFrame(frame);
    return this.next();
  }

  close() {
    const closed = new Promise((resolve) => this.ws.once('close', resolve));
    this.ws.close(1000);
    return withTimeout(closed, REPLY_TIMEOUT_MS, 'the close handshake');
  }
}

describe('three Node clients in a group through imbed-host', () => {
  let host;

  before(async () => {
    host = await startHost();
  });

  after(() => {
    if (host && host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGKILL');
  });

  test('join, chat, and see the others in seq order', { timeout: TEST_TIMEOUT_MS }, async () => {
    const users = ['ann', 'ben', 'cat'];
    const clients = [];
    for (const user of users) {
      const client = await Client.login(host.url, user);
      const ok = await client.request({ type: 'join', id: `j-${user}`, group: 'room' });
      assert.deepEqual({ type: ok.type, id: ok.id }, { type: 'ok', id: `j-${user}` });
      // Each earlier member is told of this join; the joiner itself only gets the ok.
      for (const earlier of clients) {
        const notice = await earlier.next();
        assert.deepEqual(
          { type: notice.type, group: notice.group, user: notice.user, joined: notice.joined },
          { type: 'member', group: 'room', user, joined: true },
        );
      }
      clients.push(client);
    }
    const members = await clients[0].request({ type: 'members', id: 'm1', group: 'room' });
    assert.deepEqual(members.members, users);
    assert.equal(members.closed, false);

    // Everyone sends at once, so the server interleaves three senders.
    for (const client of clients) {
      for (let n = 0; n < MESSAGES_EACH; n += 1) {
        client.sendFrame({ type: 'send', id: `${client.user}-${n}`, group: 'room', body: { from: client.user, n } });
      }
    }
    const total = MESSAGES_EACH * users.length;
    const received = await Promise.all(
      clients.map(async (client) => {
        const frames = [];
        for (let n = 0; n < total; n += 1) frames.push(await client.next());
        return frames;
      }),
    );

    const allSeqs = Array.from({ length: total }, (_, n) => n + 1);
    const ackedSeqs = [];
    const sent = new Map(); // seq -> { from, id, ts }
    received.forEach((frames, index) => {
      const acks = frames.filter((frame) => frame.type === 'ack');
      assert.deepEqual(
        acks.map((ack) => ack.id).sort(),
        Array.from({ length: MESSAGES_EACH }, (_, n) => `${users[index]}-${n}`).sort(),
      );
      for (const ack of acks) {
        assert.equal(ack.conv, 'g:room');
        ackedSeqs.push(ack.seq);
        sent.set(ack.seq, { from: users[index], id: ack.id, ts: ack.ts });
      }
    });
    assert.deepEqual([...ackedSeqs].sort((a, b) => a - b), allSeqs);

    received.forEach((frames, index) => {
      const msgs = frames.filter((frame) => frame.type !== 'ack');
      // The others' messages, and only theirs, in ascending seq order.
      assert.equal(msgs.length, total - MESSAGES_EACH, users[index]);
      const seqs = msgs.map((msg) => msg.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${users[index]} got messages out of seq order`);
      for (const msg of msgs) {
        const origin = sent.get(msg.seq);
        assert.deepEqual(
          { type: msg.type, conv: msg.conv, group: msg.group, from: msg.from, id: msg.id, ts: msg.ts },
          { type: 'msg', conv: 'g:room', group: 'room', from: origin.from, id: origin.id, ts: origin.ts },
        );
        assert.equal('to' in msg, false, 'a group message carries group instead of to');
        assert.notEqual(msg.from, users[index]);
        assert.deepEqual(msg.body, { from: origin.from, n: Number(origin.id.split('-')[1]) });
      }
    });

    await Promise.all(clients.map((client) => client.close()));
  });

  test('SIGTERM stops the host cleanly', { timeout: TEST_TIMEOUT_MS }, async () => {
    host.child.kill('SIGTERM');
    assert.deepEqual(await withTimeout(host.exited, SHUTDOWN_TIMEOUT_MS, 'imbed-host to exit'), {
      code: 0,
      signal: null,
    });
  });
});
