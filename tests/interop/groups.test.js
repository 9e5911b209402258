// Groups interop: three Node `ws` clients join a group and chat through the
// example host program `imbed-host`. Run with `node --test tests/interop/`.
'use strict';
const assert = require('node:assert/strict');
const { describe, test, before, after } = require('node:test');
const { Client, startHost, withTimeout, SHUTDOWN_TIMEOUT_MS, TEST_TIMEOUT_MS } = require('./imbed_host');

const MESSAGES_EACH = 10;

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
