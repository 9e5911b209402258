// Protocol v1 interop: two Node `ws` clients chat through the example host
// program `imbed-host`. Run with `node --test tests/interop/`.
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
const CLOCK_TOLERANCE_MS = 60000;

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

  // Opens a connection as user and checks the welcome.
  static async login(url, user) {
    const client = new Client(url, user);
    const welcome = await client.next();
    assert.equal(welcome.type, 'welcome');
    assert.equal(welcome.user, user);
    assert.equal(typeof welcome.session, 'string');
    assert.ok(Math.abs(welcome.server_time - Date.now()) < CLOCK_TOLERANCE_MS);
    return client;
  }

  // The next frame from the server, in arrival order.
  next() {
    const waitForFrame = () => {
      if (this.failure) return Promise.reject(this.failure);
      if (this.frames.length > 0) return Promise.resolve(this.frames.shift());
      return new Promise((wake) => this.waiters.push(wake)).then(waitForFrame);
    };
    return withTimeout(waitForFrame(), REPLY_TIMEOUT_MS, 'a frame');
  }

  sendFrame(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  // Sends a direct message and returns its ack, checking its shape.
  async sendMessage(id, to, body) {
    this.sendFrame({ type: 'send', id, to, body });
    const ack = await this.next();
    assert.equal(ack.type, 'ack');
    assert.equal(ack.id, id);
    assert.ok(Number.isInteger(ack.ts) && Math.abs(ack.ts - Date.now()) < CLOCK_TOLERANCE_MS);
    return ack;
  }

  close() {
    const closed = new Promise((resolve) => this.ws.once('close', resolve));
    this.ws.close(1000);
    return withTimeout(closed, REPLY_TIMEOUT_MS, 'the close handshake');
  }
}

// Asserts msg is the message ack acknowledged, with every contract field.
function assertMsg(msg, ack, from, to, id, body) {
  assert.deepEqual(
    { type: msg.type, conv: msg.conv, seq: msg.seq, from: msg.from, to: msg.to, id: msg.id, body: msg.body, ts: msg.ts },
    { type: 'msg', conv: ack.conv, seq: ack.seq, from, to, id, body, ts: ack.ts },
  );
}

describe('two Node clients through imbed-host', () => {
  let host;

  before(async () => {
    host = await startHost();
  });

  // A safety net for a failed test: the last test stops the host and checks its exit.
  after(() => {
    if (host && host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGKILL');
  });

  test('chat both ways with acks and gapless seqs', { timeout: TEST_TIMEOUT_MS }, async () => {
    const alice = await Client.login(host.url, 'alice');
    const bob = await Client.login(host.url, 'bob');

    const first = await alice.sendMessage('a-1', 'bob', { text: 'hi bob' });
    assert.equal(first.conv, 'dm:alice:bob');
    assert.equal(first.seq, 1);
    assertMsg(await bob.next(), first, 'alice', 'bob', 'a-1', { text: 'hi bob' });

    const reply = await bob.sendMessage('b-1', 'alice', { text: 'hi alice' });
    assert.equal(reply.conv, 'dm:alice:bob');
    assert.equal(reply.seq, 2);
    assertMsg(await alice.next(), reply, 'bob', 'alice', 'b-1', { text: 'hi alice' });

    const third = await alice.sendMessage('a-2', 'bob', 'plain string body');
    assert.equal(third.seq, 3);
    assertMsg(await bob.next(), third, 'alice', 'bob', 'a-2', 'plain string body');

    await Promise.all([alice.close(), bob.close()]);
  });

  test('a burst of sends arrives in seq order', { timeout: TEST_TIMEOUT_MS }, async () => {
    const carol = await Client.login(host.url, 'carol');
    const dave = await Client.login(host.url, 'dave');
    const count = 20;
    // Every send goes out before any ack is read, so many are in flight at once.
    for (let n = 0; n < count; n += 1) carol.sendFrame({ type: 'send', id: `burst-${n}`, to: 'dave', body: n });
    const acks = [];
    for (let n = 0; n < count; n += 1) acks.push(await carol.next());
    const msgs = [];
    for (let n = 0; n < count; n += 1) msgs.push(await dave.next());

    const expectedSeqs = Array.from({ length: count }, (_, n) => n + 1);
    assert.deepEqual(acks.map((ack) => ack.seq).sort((a, b) => a - b), expectedSeqs);
    assert.deepEqual(msgs.map((msg) => msg.seq), expectedSeqs);
    const seqOfId = new Map(acks.map((ack) => [ack.id, ack.seq]));
    for (const msg of msgs) assert.equal(msg.seq, seqOfId.get(msg.id));

    await Promise.all([carol.close(), dave.close()]);
  });

  test('SIGTERM closes open sessions with 1001 and exits 0', { timeout: TEST_TIMEOUT_MS }, async () => {
    const erin = await Client.login(host.url, 'erin');
    const closeCode = new Promise((resolve) => erin.ws.once('close', resolve));
    host.child.kill('SIGTERM');
    assert.equal(await withTimeout(closeCode, SHUTDOWN_TIMEOUT_MS, 'the server to close the session'), 1001);
    assert.deepEqual(await withTimeout(host.exited, SHUTDOWN_TIMEOUT_MS, 'imbed-host to exit'), {
      code: 0,
      signal: null,
    });
  });
});
