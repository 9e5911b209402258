// Protocol v1 interop: two Node `ws` clients chat through the example host
// program `imbed-host`. Run with `node --test tests/interop/`.
'use strict';
const assert = require('node:assert/strict');
const { describe, test, before, after } = require('node:test');
const { Client, startHost, withTimeout, SHUTDOWN_TIMEOUT_MS, TEST_TIMEOUT_MS } = require('./imbed_host');

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
