// Cluster interop: Node `ws` clients on two `imbed-host` nodes that share one
// PostgreSQL database and one Redis (docs/CLUSTER.md). Run with
// `node --test tests/interop/`.
//
// The database is a new one on IMBED_TEST_POSTGRES's server when that is
// set, else on a private server (scripts/pg-test-server); Redis is always a
// private one (scripts/redis-test-server): every node publishes on one
// channel, whatever its database, so a shared Redis would mix runs.
'use strict';
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { describe, test, before, after } = require('node:test');
const { Client, withTimeout, SHUTDOWN_TIMEOUT_MS, TEST_TIMEOUT_MS } = require('./imbed_host');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const HOST_BINARY = process.env.IMBED_HOST || path.join(REPO_ROOT, 'build', 'imbed-host');
// pg-test-server waits up to 30 s for PostgreSQL (after an initdb the first time).
const SERVICE_TIMEOUT_MS = 90000;
// A node answers `ok` on /healthz once it is subscribed to Redis.
const HEALTHY_TIMEOUT_MS = 15000;
const BURST = 20;

// Runs scripts/<script> start|stop DIR; returns what it printed (a URL for start).
function service(script, command, dir) {
  return execFileSync(path.join(REPO_ROOT, 'scripts', script), [command, dir], {
    encoding: 'utf8',
    timeout: SERVICE_TIMEOUT_MS,
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

function psql(url, sql) {
  execFileSync('psql', [url, '-XqAt', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    timeout: SERVICE_TIMEOUT_MS,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

// GET /healthz of the node on port: { status, body }.
function healthz(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('healthz timed out')));
    req.on('error', reject);
  });
}

// Starts a node named nodeId on a free loopback port; resolves once it is
// healthy, to the process, its URL and port.
async function startNode(nodeId, postgres, redis) {
  const args = ['--listen', '127.0.0.1:0', '--dev-auth', '--postgres', postgres, '--redis', redis, '--node-id', nodeId];
  const child = spawn(HOST_BINARY, args, { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const node = { nodeId, child };
  node.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const firstLine = new Promise((resolve, reject) => {
    child.on('error', reject);
    readline.createInterface({ input: child.stdout }).once('line', resolve);
    node.exited.then(({ code }) => reject(new Error(`node ${nodeId} exited with ${code} before listening`)));
  });
  const line = await withTimeout(firstLine, HEALTHY_TIMEOUT_MS, `the listening line of node ${nodeId}`);
  const match = /^listening on (ws:\/\/127\.0\.0\.1:(\d+)\/ws)$/.exec(line);
  assert.ok(match, `unexpected first line from node ${nodeId}: ${line}`);
  node.url = match[1];
  node.port = Number(match[2]);
  const deadline = Date.now() + HEALTHY_TIMEOUT_MS;
  let last;
  for (;;) {
    last = await healthz(node.port).catch((err) => err.message);
    if (last.status === 200 && last.body === 'ok\n') return node;
    assert.ok(Date.now() < deadline, `node ${nodeId} not healthy: ${JSON.stringify(last)}`);
    assert.equal(child.exitCode, null, `node ${nodeId} exited`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function running(node) {
  return node.child.exitCode === null && node.child.signalCode === null;
}

// The next frame of client, which must be a msg from `from` to `to` that ack acknowledged.
async function assertNextMsg(client, ack, from, to, id, body) {
  const msg = await client.next();
  assert.deepEqual(
    { type: msg.type, conv: msg.conv, seq: msg.seq, from: msg.from, to: msg.to, id: msg.id, body: msg.body, ts: msg.ts },
    { type: 'msg', conv: ack.conv, seq: ack.seq, from, to, id, body, ts: ack.ts },
  );
}

// Nothing is waiting for client: the pong of a ping is its next frame.
async function assertQuiet(client, id) {
  assert.deepEqual(await client.request({ type: 'ping', id }), { type: 'pong', id });
}

describe('Node clients on two imbed-host nodes of one cluster', () => {
  const nodes = [];
  let tmp;
  let postgresServer;
  let database;
  let pgDir;
  let redisDir;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imbed-cluster-js.'));
    postgresServer = process.env.IMBED_TEST_POSTGRES;
    if (!postgresServer) {
      pgDir = path.join(tmp, 'pg');
      postgresServer = service('pg-test-server', 'start', pgDir);
    }
    redisDir = path.join(tmp, 'redis');
    const redis = service('redis-test-server', 'start', redisDir);
    database = `interop_js_${crypto.randomBytes(6).toString('hex')}`;
    psql(postgresServer, `CREATE DATABASE ${database}`);
    const postgres = `${postgresServer.slice(0, postgresServer.lastIndexOf('/'))}/${database}`;
    for (const nodeId of ['js1', 'js2']) nodes.push(await startNode(nodeId, postgres, redis));
  });

  // The last test stops the nodes and checks their exits; this also cleans
  // up after a failed one: nodes, database, servers, directory.
  after(async () => {
    for (const node of nodes) {
      if (running(node)) node.child.kill('SIGKILL');
      await withTimeout(node.exited, SHUTDOWN_TIMEOUT_MS, `node ${node.nodeId} to exit`).catch(() => {});
    }
    const steps = [
      () => database && !pgDir && psql(postgresServer, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`),
      () => pgDir && service('pg-test-server', 'stop', pgDir),
      () => redisDir && service('redis-test-server', 'stop', redisDir),
      () => tmp && fs.rmSync(tmp, { recursive: true, force: true }),
    ];
    const failures = [];
    for (const step of steps) {
      try {
        step();
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length > 0) throw failures[0];
  });

  test('users on two nodes chat both ways with gapless seqs, in order, once', { timeout: TEST_TIMEOUT_MS }, async () => {
    const alice = await Client.login(nodes[0].url, 'alice');
    const bob = await Client.login(nodes[1].url, 'bob');

    const first = await alice.sendMessage('a-1', 'bob', { text: 'hi bob' });
    assert.equal(first.conv, 'dm:alice:bob');
    assert.equal(first.seq, 1);
    await assertNextMsg(bob, first, 'alice', 'bob', 'a-1', { text: 'hi bob' });

    const reply = await bob.sendMessage('b-1', 'alice', { text: 'hi alice' });
    assert.equal(reply.seq, 2);
    await assertNextMsg(alice, reply, 'bob', 'alice', 'b-1', { text: 'hi alice' });

    // Bursts from both nodes at once, every send out before any reply is read.
    for (let n = 0; n < BURST; n += 1) {
      alice.sendFrame({ type: 'send', id: `a-burst-${n}`, to: 'bob', body: n });
      bob.sendFrame({ type: 'send', id: `b-burst-${n}`, to: 'alice', body: n });
    }
    const frames = async (client) => {
      const got = { acks: [], msgs: [] };
      for (let n = 0; n < 2 * BURST; n += 1) {
        const frame = await client.next();
        assert.ok(frame.type === 'ack' || frame.type === 'msg', JSON.stringify(frame));
        got[`${frame.type}s`].push(frame);
      }
      return got;
    };
    const [atAlice, atBob] = await Promise.all([frames(alice), frames(bob)]);
    for (const got of [atAlice, atBob]) assert.equal(got.acks.length, BURST);
    const allSeqs = [...atAlice.acks, ...atBob.acks].map((ack) => ack.seq).sort((a, b) => a - b);
    assert.deepEqual(allSeqs, Array.from({ length: 2 * BURST }, (_, n) => n + 3), 'one gapless sequence');
    for (const [msgs, acks, from, to] of [
      [atBob.msgs, atAlice.acks, 'alice', 'bob'],
      [atAlice.msgs, atBob.acks, 'bob', 'alice'],
    ]) {
      // Each message once, in seq order, as acked.
      assert.deepEqual(
        msgs.map((msg) => msg.seq),
        acks.map((ack) => ack.seq).sort((a, b) => a - b),
      );
      const ackOf = new Map(acks.map((ack) => [ack.id, ack]));
      for (const msg of msgs) {
        const ack = ackOf.get(msg.id);
        assert.deepEqual(
          { seq: msg.seq, ts: msg.ts, from: msg.from, to: msg.to, body: msg.body },
          { seq: ack.seq, ts: ack.ts, from, to, body: Number(msg.id.split('-')[2]) },
        );
      }
    }

    // Nothing comes twice: each side's next message is the next frame on the other.
    const last = await alice.sendMessage('a-last', 'bob', 'last');
    assert.equal(last.seq, 2 * BURST + 3);
    await assertNextMsg(bob, last, 'alice', 'bob', 'a-last', 'last');
    await assertQuiet(alice, 'p-alice');
    await assertQuiet(bob, 'p-bob');

    // The other node reads the same history from the store.
    const history = await bob.request({ type: 'history', id: 'h1', conv: 'dm:alice:bob', limit: 100 });
    assert.deepEqual(
      history.messages.map((msg) => msg.seq),
      Array.from({ length: 2 * BURST + 3 }, (_, n) => n + 1),
    );
    await Promise.all([alice.close(), bob.close()]);
  });

  test('a watch on one node sees a user come and go on the other', { timeout: TEST_TIMEOUT_MS }, async () => {
    const carol = await Client.login(nodes[0].url, 'carol');
    const watched = await carol.request({ type: 'watch', id: 'w1', users: ['dave', 'eve'] });
    assert.deepEqual(watched, { type: 'ok', id: 'w1', online: { dave: false, eve: false } });

    const dave = await Client.login(nodes[1].url, 'dave');
    assert.deepEqual(await carol.next(), { type: 'presence', user: 'dave', online: true });
    // A second session of dave's, on carol's node, changes nothing: eve's
    // arrival there, after it came and went, is the next thing carol hears.
    const davePhone = await Client.login(nodes[0].url, 'dave');
    await davePhone.close();
    const eve = await Client.login(nodes[0].url, 'eve');
    assert.deepEqual(await carol.next(), { type: 'presence', user: 'eve', online: true });
    await assertQuiet(carol, 'p1');
    // ...until the last one ends.
    await dave.close();
    assert.deepEqual(await carol.next(), { type: 'presence', user: 'dave', online: false });
    await assertQuiet(carol, 'p2');
    await Promise.all([carol.close(), eve.close()]);
  });

  test('SIGTERM on a node closes its sessions with 1001, the other node hears them leave, both exit 0', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const frank = await Client.login(nodes[1].url, 'frank');
    const watched = await frank.request({ type: 'watch', id: 'w1', users: ['erin'] });
    assert.deepEqual(watched, { type: 'ok', id: 'w1', online: { erin: false } });
    const erin = await Client.login(nodes[0].url, 'erin');
    assert.deepEqual(await frank.next(), { type: 'presence', user: 'erin', online: true });

    const closeCode = new Promise((resolve) => erin.ws.once('close', resolve));
    nodes[0].child.kill('SIGTERM');
    assert.equal(await withTimeout(closeCode, SHUTDOWN_TIMEOUT_MS, 'node js1 to close the session'), 1001);
    // The stopping node announces its users' departure at once.
    assert.deepEqual(await frank.next(), { type: 'presence', user: 'erin', online: false });
    assert.deepEqual(await withTimeout(nodes[0].exited, SHUTDOWN_TIMEOUT_MS, 'node js1 to exit'), {
      code: 0,
      signal: null,
    });

    await frank.close();
    nodes[1].child.kill('SIGTERM');
    assert.deepEqual(await withTimeout(nodes[1].exited, SHUTDOWN_TIMEOUT_MS, 'node js2 to exit'), {
      code: 0,
      signal: null,
    });
  });
});
