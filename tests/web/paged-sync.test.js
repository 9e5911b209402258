// A user in more conversations than one `sync` frame has room for cursors:
// 1,500 DMs with peers of 64-character ids make 118 KB of cursors, over
// limits.max_frame_bytes (64 KiB), which the server closes with 1009. Anyone
// can do that to anyone by DMing them from many accounts. The page lists its
// conversations page by page and syncs in pages of 500 (sync-pages.js): it
// signs in, and after the server restarts it catches up on one connection.
'use strict';
const assert = require('node:assert/strict');
const { describe, test, before, after } = require('node:test');
const { launchBrowser, makeScratchDir, messageLocator, openConversation, openPage, screenshot, signIn, startHost } = require('./harness');
const { RawClient } = require('./raw-client');

const CONVERSATIONS = 1500;
const SYNC_PAGE = 500;
const MAX_FRAME_BYTES = 65536;
// limits.max_watches: a `watch` past it is refused whole.
const MAX_WATCHES = 1000;
const STEP_TIMEOUT_MS = 60000;
const ME = 'victim';
// Peers of the longest ids; "stranger" sorts before "victim", so the
// conversations are dm:<peer>:victim and sort by number.
const peer = (n) => `stranger-${String(n).padStart(4, '0')}-`.padEnd(64, 'x');
const conversationOf = (n) => `dm:${peer(n)}:${ME}`;

// Sends one frame per peer in one write (within the message burst of 2,000)
// as `user`, and resolves when each has its ack.
async function sendToEach(port, user, frames) {
  let acked = 0;
  let done;
  const allAcked = new Promise((resolve, reject) => {
    done = { resolve, reject };
  });
  const client = await RawClient.connect(port, user, (text) => {
    const frame = JSON.parse(text);
    if (frame.type === 'error') done.reject(new Error(`${user}: ${text}`));
    if (frame.type === 'ack' && ++acked === frames.length) done.resolve();
  });
  client.send(...frames);
  try {
    await allAcked;
  } finally {
    client.close();
  }
}

describe(`a user in ${CONVERSATIONS} conversations`, () => {
  let scratch;
  let host;
  let browser;
  let page;
  // Every WebSocket of the page: the frames it sent, and whether it closed.
  const sockets = [];

  const syncsOf = (socket) => socket.sent.filter((text) => text.startsWith('{"type":"sync"'));

  // Every frame of a connection fits (the sync and watch frames would not,
  // whole); its syncs go in pages of at most 500 conversations in name
  // order that together name every conversation.
  function assertPagedSyncs(socket) {
    const largest = Math.max(...socket.sent.map((text) => text.length));
    assert.ok(largest < MAX_FRAME_BYTES, `the page sent a frame of ${largest} bytes (limit ${MAX_FRAME_BYTES})`);
    const watched = socket.sent.filter((text) => text.startsWith('{"type":"watch"')).flatMap((text) => JSON.parse(text).users);
    assert.equal(watched.length, MAX_WATCHES, 'presence of as many peers as a session may watch');
    const syncs = syncsOf(socket);
    assert.ok(syncs.length >= CONVERSATIONS / SYNC_PAGE, `${syncs.length} sync frames`);
    const named = new Set();
    for (const text of syncs) {
      assert.ok(text.length < MAX_FRAME_BYTES, `a sync frame of ${text.length} bytes (limit ${MAX_FRAME_BYTES})`);
      const frame = JSON.parse(text);
      const convs = Object.keys(frame.cursors);
      assert.ok(convs.length <= SYNC_PAGE, `${convs.length} cursors in one sync`);
      assert.ok(convs.every((conv) => (frame.after === undefined || conv > frame.after) && (frame.until === undefined || conv <= frame.until)));
      convs.forEach((conv) => named.add(conv));
    }
    assert.equal(named.size, CONVERSATIONS, 'the pages named every conversation');
    assert.deepEqual(
      syncs.map((text) => JSON.parse(text)).map(({ after, until }) => [after ?? null, until ?? null]),
      [
        [null, conversationOf(499)],
        [conversationOf(499), conversationOf(999)],
        [conversationOf(999), null],
      ],
    );
  }

  // Waits until `count` conversations show their peer's presence (a dot).
  const presenceShownOf = (count) =>
    page.waitForFunction((shown) => document.querySelectorAll('#conversation-list li[data-presence]').length === shown, count);

  before(async () => {
    scratch = makeScratchDir();
    host = await startHost({ db: scratch.db });
    const sends = Array.from({ length: CONVERSATIONS }, (_, n) => ({
      type: 'send',
      id: `hello-${n}`,
      to: peer(n),
      body: { text: `hello ${n}` },
    }));
    await sendToEach(host.port, ME, sends);
    browser = await launchBrowser();
    page = await openPage(browser, host.pageUrl);
    page.on('websocket', (socket) => {
      const record = { sent: [], closed: false };
      sockets.push(record);
      socket.on('framesent', (frame) => record.sent.push(String(frame.payload)));
      socket.on('close', () => (record.closed = true));
    });
  });

  after(async () => {
    await browser?.close();
    await host?.stop();
    scratch?.cleanup();
  });

  test('signs in and lists every conversation, syncing in pages on one connection', { timeout: STEP_TIMEOUT_MS }, async () => {
    await signIn(page, ME);
    // The list comes in pages of 1,000 (`next`): the last conversation is on the second.
    const last = conversationOf(CONVERSATIONS - 1);
    await openConversation(page, last);
    await messageLocator(page, `hello ${CONVERSATIONS - 1}`).waitFor();
    await page.waitForFunction((count) => document.querySelectorAll('#conversation-list li[data-conv]').length === count, CONVERSATIONS);
    await presenceShownOf(MAX_WATCHES);
    assert.equal(sockets.length, 1, 'one connection: no sync frame was closed with 1009');
    assert.equal(sockets[0].closed, false);
    assertPagedSyncs(sockets[0]);
  });

  test('after a server restart it catches up through the paged sync', { timeout: STEP_TIMEOUT_MS }, async () => {
    const last = CONVERSATIONS - 1;
    await host.stop();
    await page.locator('#connection[data-state="waiting"]').waitFor();

    // Stored by a host on a port the page does not know, with the same
    // database: only sync can bring it, in the last page.
    const unseen = await startHost({ db: scratch.db });
    await sendToEach(unseen.port, peer(last), [{ type: 'send', id: 'away', to: ME, body: { text: 'Stored while you were away' } }]);
    await unseen.stop();

    const before = sockets.length;
    host = await startHost({ db: scratch.db, port: host.port });
    await messageLocator(page, 'Stored while you were away').waitFor();
    await presenceShownOf(MAX_WATCHES);
    await screenshot(page, '11-paged-sync');
    const reconnected = sockets.slice(before);
    // Refused attempts while the host was down open no socket the page sees.
    const live = reconnected.filter((socket) => socket.sent.length > 0);
    assert.equal(live.length, 1, 'caught up on the first connection after the restart');
    assert.equal(live[0].closed, false);
    assertPagedSyncs(live[0]);
    assert.equal(await messageLocator(page, `hello ${last}`).count(), 1);
    await page.locator(`#conversation-list li[data-conv="${conversationOf(last)}"]`).waitFor();
  });

  test('no page had an uncaught error', () => {
    assert.deepEqual(page.errors.map(String), []);
  });
});
