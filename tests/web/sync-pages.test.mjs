// The page's sync in pages of conversations, without a browser: a fake
// server that answers `sync` as docs/PROTOCOL.md says (after, until, more,
// next, a reply budget), and the page's ChatState as the client's memory.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChatState } from '../../examples/web/chat-state.js';
import { PagedSync, SYNC_PAGE, SyncPage } from '../../examples/web/sync-pages.js';

const MAX_FRAME_BYTES = 65536;
const SYNC_LIMIT = 100;
const MAX_REPEATS = 5;

// A peer id of the longest kind (64 characters), numbered so that the
// conversations sort by number.
function peer(n) {
  return `peer-${String(n).padStart(5, '0')}-`.padEnd(64, 'x');
}

function dm(n) {
  return `dm:alice:${peer(n)}`;
}

// The messages of "alice", conversation name -> its newest seq, answered
// as imbed does: the conversations in the page's range, in name order, at
// most `limit` messages each, at most `budget` messages in one reply (the
// byte budget, counted in messages; a reply always carries one when any is
// due), `more` for what was left out, `next` when the range had an `until`
// and conversations follow it.
class FakeServer {
  constructor(lastSeqs, budget = Infinity) {
    this.lastSeqs = new Map(lastSeqs);
    this.budget = budget;
    this.frames = [];
  }

  // Answers a sync frame: the `msg` frames, then the `synced`.
  sync(frame) {
    const text = JSON.stringify(frame);
    assert.ok(text.length < MAX_FRAME_BYTES, `a sync frame of ${text.length} bytes would be closed with 1009`);
    this.frames.push(frame);
    const names = [...this.lastSeqs.keys()].sort();
    const inRange = names.filter(
      (conv) => (frame.after === undefined || conv > frame.after) && (frame.until === undefined || conv <= frame.until),
    );
    const msgs = [];
    const convs = {};
    for (const conv of inRange) {
      const lastSeq = this.lastSeqs.get(conv);
      const cursor = frame.cursors[conv] ?? 0;
      const due = Math.min(frame.limit, Math.max(0, lastSeq - cursor));
      const room = msgs.length === 0 ? Math.max(1, this.budget) : this.budget - msgs.length;
      const carried = Math.max(0, Math.min(due, room));
      for (let seq = cursor + 1; seq <= cursor + carried; seq += 1) msgs.push(msg(conv, seq));
      convs[conv] = { last_seq: lastSeq, more: cursor + carried < lastSeq };
    }
    const synced = { type: 'synced', id: frame.id, convs };
    if (frame.until !== undefined && names.some((conv) => conv > frame.until)) synced.next = frame.until;
    return { msgs, synced };
  }

  // The bounds of every sync so far: [after, until, number of cursors].
  get pages() {
    return this.frames.map((frame) => [frame.after ?? null, frame.until ?? null, Object.keys(frame.cursors).length]);
  }
}

function msg(conv, seq) {
  const from = conv.split(':')[2];
  return { type: 'msg', conv, seq, from, to: 'alice', id: `${from}-${seq}`, body: { text: `message ${seq}` }, ts: 1700000000000 + seq };
}

// The page's side, as app.js wires it: ChatState's cursors, each `msg`
// received, each `synced` naming conversations (new ones start at cursor 0),
// and conversations far behind skipped to their newest seq.
function pageSyncingWith(server, state = new ChatState('alice'), { beforeRequest = () => {} } = {}) {
  let requests = 0;
  const skipped = [];
  const syncer = new PagedSync({
    cursors: () => state.cursors(),
    request: async (fields) => {
      requests += 1;
      await beforeRequest(requests);
      const { msgs, synced } = server.sync({ type: 'sync', id: `s${requests}`, ...fields, limit: SYNC_LIMIT });
      msgs.forEach((frame) => state.receive(frame));
      for (const [conv, summary] of Object.entries(synced.convs)) {
        const conversation = state.conversation(conv);
        conversation.lastSeq = Math.max(conversation.lastSeq, summary.last_seq);
      }
      return synced;
    },
    skip: (behind) => {
      skipped.push(...behind);
      behind.forEach(([conv, lastSeq]) => state.conversation(conv).skipTo(lastSeq));
    },
    maxRepeats: MAX_REPEATS,
  });
  return { state, syncer, skipped };
}

// A page that holds message 1 of each of `count` conversations, in an
// order that is not the names'.
function stateKnowing(count) {
  const state = new ChatState('alice');
  for (let n = count - 1; n >= 0; n -= 1) state.receive(msg(dm(n), 1));
  return state;
}

function assertCaughtUp(state, server) {
  for (const [conv, lastSeq] of server.lastSeqs) {
    assert.equal(state.conversations.get(conv)?.cursor, lastSeq, `${conv} caught up`);
  }
}

const conversations = (count, lastSeq) => Array.from({ length: count }, (_, n) => [dm(n), lastSeq]);

describe('sync in pages', () => {
  test('up to 500 known conversations: one sync, without after or until, as before', async () => {
    const server = new FakeServer(conversations(SYNC_PAGE, 3));
    const { state, syncer } = pageSyncingWith(server, stateKnowing(SYNC_PAGE));
    await syncer.sync();
    assert.deepEqual(server.pages, [[null, null, SYNC_PAGE]]);
    assert.equal('after' in server.frames[0] || 'until' in server.frames[0], false);
    assertCaughtUp(state, server);
  });

  test('1,500 conversations of 64-character ids: pages of 500 in name order, each frame under 64 KiB', async () => {
    const count = 1500;
    const allCursors = JSON.stringify({ type: 'sync', id: 's1', cursors: stateKnowing(count).cursors(), limit: SYNC_LIMIT });
    assert.ok(allCursors.length > MAX_FRAME_BYTES, `one frame of all cursors is ${allCursors.length} bytes: it would be closed`);

    const server = new FakeServer(conversations(count, 2));
    const { state, syncer } = pageSyncingWith(server, stateKnowing(count));
    await syncer.sync();
    assert.deepEqual(server.pages, [
      [null, dm(499), 500],
      [dm(499), dm(999), 500],
      // 500 left after dm(999): not more than a page, so no end.
      [dm(999), null, 500],
    ]);
    // Each page's cursors are exactly its conversations.
    assert.deepEqual(Object.keys(server.frames[1].cursors).sort(), conversations(1000, 0).slice(500).map(([conv]) => conv));
    assertCaughtUp(state, server);
  });

  test('one more than a page after `after` gets an end at the 500th', () => {
    const cursors = Object.fromEntries(conversations(SYNC_PAGE + 1, 1));
    const page = new SyncPage();
    const first = page.fields(cursors);
    assert.equal(first.until, dm(SYNC_PAGE - 1));
    assert.equal(Object.keys(first.cursors).length, SYNC_PAGE);
    assert.equal(page.moveTo(first.until), true);
    const second = page.fields(cursors);
    assert.deepEqual(second, { cursors: { [dm(SYNC_PAGE)]: 1 }, after: dm(SYNC_PAGE - 1) });
  });

  test('a page repeats with the same bounds while any `more`, then moves to `next`', async () => {
    // 1,200 conversations, 3 new messages each, 1,000 messages a reply: the
    // first page's 1,500 messages take two syncs.
    const server = new FakeServer(conversations(1200, 4));
    const { state, syncer } = pageSyncingWith(server, stateKnowing(1200));
    server.budget = 1000;
    await syncer.sync();
    assert.deepEqual(server.pages, [
      [null, dm(499), 500],
      [null, dm(499), 500],
      [dm(499), dm(999), 500],
      [dm(499), dm(999), 500],
      [dm(999), null, 200],
    ]);
    assertCaughtUp(state, server);
  });

  test('a page without an end that learns of more than 500 conversations gets one on its repeat', async () => {
    // A page that knows nothing (a user DMed by 1,600 strangers) asks for
    // everything; each reply carries 400 messages and names the rest.
    const server = new FakeServer(conversations(1600, 1), 400);
    const { state, syncer } = pageSyncingWith(server, new ChatState('alice'));
    await syncer.sync();
    const pages = server.pages;
    // The first reply names all 1,600: the repeat of that page has an end.
    assert.deepEqual(pages.slice(0, 3), [
      [null, null, 0],
      [null, dm(499), 500],
      [dm(499), dm(999), 500],
    ]);
    assert.deepEqual(pages.at(-1), [dm(1499), null, 100]);
    assert.ok(pages.every(([, , cursors]) => cursors <= SYNC_PAGE), JSON.stringify(pages));
    assertCaughtUp(state, server);
  });

  test('a page still `more` after 5 syncs skips what is behind and the round moves on', async () => {
    // dm(3) has 10,000 new messages: 100 a sync; the rest is far behind.
    const server = new FakeServer(conversations(1200, 2));
    const { state, syncer, skipped } = pageSyncingWith(server, stateKnowing(1200));
    server.lastSeqs.set(dm(3), 10001);
    await syncer.sync();
    assert.deepEqual(server.pages, [
      ...Array(MAX_REPEATS).fill([null, dm(499), 500]),
      [dm(499), dm(999), 500],
      [dm(999), null, 200],
    ]);
    assert.deepEqual(skipped, [[dm(3), 10001]]);
    const far = state.conversations.get(dm(3));
    assert.equal(far.cursor, 10001);
    assert.equal(far.messages.size, 0, 'history pages it back in when shown');
    assertCaughtUp(state, server);
  });

  test('a sync asked for while a round runs (a gap) goes round once more from the first page', async () => {
    const server = new FakeServer(conversations(1200, 1));
    let during = null;
    const { syncer } = pageSyncingWith(server, stateKnowing(1200), {
      beforeRequest: (request) => {
        if (request === 2) during = syncer.sync();
      },
    });
    await syncer.sync();
    // The gap's sync() returned at once: the running round goes again.
    assert.equal(await Promise.race([during, 'pending']), undefined);
    const round = [
      [null, dm(499), 500],
      [dm(499), dm(999), 500],
      [dm(999), null, 200],
    ];
    assert.deepEqual(server.pages, [...round, ...round]);
    assert.equal(syncer.running, false);
  });

  test('a failed request rejects the sync, and the next sync starts at the first page', async () => {
    const server = new FakeServer(conversations(1200, 1));
    let fail = true;
    const { syncer } = pageSyncingWith(server, stateKnowing(1200), {
      beforeRequest: (request) => {
        if (request === 2 && fail) throw new Error('connection closed (1006)');
      },
    });
    await assert.rejects(syncer.sync(), /connection closed/);
    assert.equal(syncer.running, false);
    fail = false;
    await syncer.sync();
    assert.deepEqual(
      server.pages.map(([after, until]) => [after, until]),
      [
        [null, dm(499)],
        [null, dm(499)],
        [dm(499), dm(999)],
        [dm(999), null],
      ],
    );
  });

  test('a `next` that does not move forward ends the round', () => {
    const page = new SyncPage();
    assert.equal(page.moveTo(undefined), false);
    assert.equal(page.moveTo('dm:alice:bob'), true);
    assert.equal(page.moveTo('dm:alice:bob'), false);
    assert.equal(page.moveTo('dm:alice:al'), false);
    assert.equal(page.moveTo('dm:alice:carol'), true);
    assert.equal(page.after, 'dm:alice:carol');
  });
});
