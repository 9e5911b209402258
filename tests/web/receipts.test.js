// Ticks on one's own messages (examples/web/README.md, "Ticks"): ✓ once
// stored, read live when the reader opens the conversation, and the same
// after a reload, from the `reads` of `conversations` entries and the `read`
// frames a sync replays; in a group "Read by N" until every other member has
// read; in a group above receipts.max_group_size from a `reads` request.
// And devices: a hidden page tells the server it is in the background, so
// its user gets push requests.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');
const {
  joinGroup,
  launchBrowser,
  makeScratchDir,
  messageLocator,
  openConversation,
  openDirectChat,
  openPage,
  screenshot,
  sendMessage,
  signIn,
  startHost,
} = require('./harness');

const STEP_TIMEOUT_MS = 30000;
const FRAME_TIMEOUT_MS = 10000;

// Every frame of every WebSocket the page opens (a reload opens a new one),
// parsed, in order.
function recordFrames(page) {
  const record = { urls: [], sent: [], received: [] };
  const parse = (payload) => {
    try {
      return JSON.parse(String(payload));
    } catch {
      return null;
    }
  };
  page.on('websocket', (socket) => {
    record.urls.push(socket.url());
    socket.on('framesent', (frame) => record.sent.push(parse(frame.payload)));
    socket.on('framereceived', (frame) => record.received.push(parse(frame.payload)));
  });
  return record;
}

// The first element of list() for which matches(element) is true, once there is one.
async function eventually(list, matches, what) {
  const deadline = Date.now() + FRAME_TIMEOUT_MS;
  for (;;) {
    const found = list().find((item) => item && matches(item));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

// The page believes it is hidden (or visible again) and hears of it, as it
// would when its tab goes to the background: the page reads
// document.visibilityState, which headless Chromium keeps at "visible".
function setHidden(page, hidden) {
  return page.evaluate((hide) => {
    if (hide) {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    } else {
      delete document.visibilityState;
      delete document.hidden;
    }
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

// The message `text` in the open conversation, once it shows `status`
// (and, given, that many readers).
function withStatus(page, text, status, readCount) {
  const count = readCount === undefined ? '' : `[data-read-count="${readCount}"]`;
  return messageLocator(page, text).and(page.locator(`[data-status="${status}"]${count}`)).waitFor();
}

async function reload(page) {
  await page.reload();
  await page.locator('#connection[data-state="online"]').waitFor();
}

function statusLabel(page, text) {
  return messageLocator(page, text).locator('.status-mark').getAttribute('aria-label');
}

// The host's answer to a console command, such as {"event":"devices",...}.
async function hostAnswer(host, command, event) {
  const answer = host.nextEvent((line) => line.event === event || (line.event === 'error' && line.command === command), `the answer to ${command}`);
  host.command(command);
  const line = await answer;
  assert.equal(line.event, event, `${command}: ${JSON.stringify(line)}`);
  return line;
}

describe('read ticks and devices', () => {
  let scratch;
  let host;
  let browser;
  const pages = {};
  const frames = {};

  async function userPage(user, url = host.pageUrl) {
    const page = await openPage(browser, url);
    frames[user] = recordFrames(page);
    await signIn(page, user);
    pages[user] = page;
    return page;
  }

  before(async () => {
    scratch = makeScratchDir();
    // --push: a message for a user with no session in the foreground
    // records a push request, printed as a "push" event.
    host = await startHost({ db: scratch.db, extraArgs: ['--push'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await host?.stop();
    scratch?.cleanup();
  });

  test('three users sign in', { timeout: STEP_TIMEOUT_MS }, async () => {
    for (const user of ['alice', 'bob', 'carol']) await userPage(user);
  });

  test('a direct chat: ✓ once stored, read live when bob opens it, and after a reload', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, bob } = pages;
    const text = 'Are you there?';
    await openDirectChat(alice, 'bob');
    await sendMessage(alice, text);
    await withStatus(alice, text, 'sent', 0);
    assert.equal(await statusLabel(alice, text), 'Sent');
    assert.equal(await messageLocator(alice, text).locator('.status-mark').textContent(), '✓');
    // Bob has no conversation open: the message waits unread.
    await bob.locator('#conversation-list li[data-conv="dm:alice:bob"][data-unread="1"]').waitFor();

    // Not read yet, after a reload too.
    await reload(alice);
    await withStatus(alice, text, 'sent', 0);

    await openConversation(bob, 'dm:alice:bob');
    await eventually(() => frames.bob.sent, (frame) => frame.type === 'read' && frame.conv === 'dm:alice:bob' && frame.seq === 1, 'bob\'s read');
    await withStatus(alice, text, 'read', 1);
    assert.equal(await statusLabel(alice, text), 'Read');
    assert.equal(await messageLocator(alice, text).locator('.status-mark').textContent(), '✓✓');

    const heardBefore = frames.alice.received.length;
    await reload(alice);
    await withStatus(alice, text, 'read', 1);
    await screenshot(alice, '12-direct-read-after-reload');
    // What the page had to go on: bob's position in the conversations
    // entry, and replayed by the sync before its synced.
    const heard = frames.alice.received.slice(heardBefore);
    const listing = heard.find((frame) => frame?.type === 'conversations');
    assert.deepEqual(listing.conversations.find((entry) => entry.conv === 'dm:alice:bob').reads, { bob: 1 });
    const replayed = heard.findIndex((frame) => frame?.type === 'read' && frame.conv === 'dm:alice:bob' && frame.user === 'bob');
    const synced = heard.findIndex((frame) => frame?.type === 'synced');
    assert.ok(replayed !== -1 && replayed < synced, 'the sync replays bob\'s position before synced');
  });

  test('a group of three: read by 1, then read by all, after a reload too', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, bob, carol } = pages;
    const text = 'Standup in five minutes';
    for (const page of [alice, bob, carol]) await joinGroup(page, 'trio');
    await alice.locator('#conversation-subtitle', { hasText: 'alice, bob, carol' }).waitFor();
    // Bob and carol look elsewhere, so they do not read it as it comes.
    await openConversation(bob, 'dm:alice:bob');
    await openDirectChat(carol, 'alice');

    await sendMessage(alice, text);
    await withStatus(alice, text, 'sent', 0);
    for (const page of [bob, carol]) await page.locator('#conversation-list li[data-conv="g:trio"][data-unread="1"]').waitFor();

    await openConversation(bob, 'g:trio');
    await withStatus(alice, text, 'partly-read', 1);
    assert.equal(await messageLocator(alice, text).locator('.read-count').textContent(), 'Read by 1');
    assert.equal(await statusLabel(alice, text), 'Read by 1 of 2: bob');
    await screenshot(alice, '13-group-read-by-1');

    await reload(alice);
    await withStatus(alice, text, 'partly-read', 1);
    assert.equal(await messageLocator(alice, text).locator('.read-count').textContent(), 'Read by 1');

    await openConversation(carol, 'g:trio');
    await withStatus(alice, text, 'read', 2);
    assert.equal(await statusLabel(alice, text), 'Read by everyone: bob, carol');

    await reload(alice);
    await withStatus(alice, text, 'read', 2);
    assert.equal(await messageLocator(alice, text).locator('.read-count').count(), 0);
    await screenshot(alice, '14-group-read-by-all');
  });

  test('hiding the page sends device background, showing it foreground; hidden, its user gets pushes', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, bob } = pages;
    // One id per browser, kept in localStorage, named on the WebSocket URL.
    const device = await bob.evaluate(() => localStorage.getItem('imbed.device'));
    assert.match(device, /^web-[0-9a-f]{16}$/);
    assert.ok(frames.bob.urls.every((url) => url.endsWith(`/ws?device=${device}`)), frames.bob.urls.join(' '));
    assert.notEqual(device, await alice.evaluate(() => localStorage.getItem('imbed.device')), 'another browser, another device');

    await setHidden(bob, true);
    const background = await eventually(() => frames.bob.sent, (frame) => frame.type === 'device', 'the device frame');
    assert.equal(background.state, 'background');
    await eventually(() => frames.bob.received, (frame) => frame.type === 'ok' && frame.id === background.id, 'the server\'s ok to background');
    let devices = await hostAnswer(host, 'devices', 'devices');
    assert.deepEqual(devices.devices.bob, [{ device, state: 'background', sessions: 1 }]);

    // Bob's only session is in the background: a message for him is pushed.
    await openDirectChat(alice, 'bob');
    const pushed = host.nextEvent((event) => event.event === 'push' && event.user === 'bob' && event.kind === 'message', 'the push for bob');
    await sendMessage(alice, 'Ping while you are away');
    const push = await pushed;
    assert.equal(push.conv, 'dm:alice:bob');
    assert.deepEqual(push.devices, [{ device, state: 'background' }]);

    await setHidden(bob, false);
    const sentBefore = frames.bob.sent.indexOf(background);
    const foreground = await eventually(
      () => frames.bob.sent.slice(sentBefore + 1),
      (frame) => frame.type === 'device',
      'the second device frame',
    );
    assert.equal(foreground.state, 'foreground');
    await eventually(() => frames.bob.received, (frame) => frame.type === 'ok' && frame.id === foreground.id, 'the server\'s ok to foreground');
    devices = await hostAnswer(host, 'devices', 'devices');
    assert.deepEqual(devices.devices.bob, [{ device, state: 'foreground', sessions: 1 }]);

    // In the foreground again: a message is stored with no push request.
    const stored = host.nextEvent((event) => event.event === 'message' && event.message.body.text === 'Back now?', 'the second message');
    await sendMessage(alice, 'Back now?');
    const { message } = await stored;
    const pending = JSON.stringify(await hostAnswer(host, 'pushes', 'pushes'));
    assert.ok(pending.includes(`"conv":"dm:alice:bob","seq":${push.seq}`), pending);
    assert.ok(!pending.includes(`"conv":"dm:alice:bob","seq":${message.seq}`), `no push for seq ${message.seq}: ${pending}`);

    // A reload is the same device. One loaded hidden says so right after
    // its welcome (a new session counts as foreground).
    await bob.addInitScript(() => {
      if (sessionStorage.getItem('test.hidden') !== 'yes') return;
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    });
    await bob.evaluate(() => sessionStorage.setItem('test.hidden', 'yes'));
    const connected = host.nextEvent((event) => event.event === 'connected' && event.user === 'bob', 'bob connecting again');
    const sentBeforeReload = frames.bob.sent.length;
    await bob.reload();
    assert.equal((await connected).device, device);
    const atWelcome = await eventually(() => frames.bob.sent.slice(sentBeforeReload), (frame) => frame.type === 'device', 'the device frame after the reload');
    assert.equal(atWelcome.state, 'background');
    await eventually(() => frames.bob.received, (frame) => frame.type === 'ok' && frame.id === atWelcome.id, 'the server\'s ok after the reload');
    devices = await hostAnswer(host, 'devices', 'devices');
    assert.deepEqual(devices.devices.bob, [{ device, state: 'background', sessions: 1 }]);
    await bob.evaluate(() => sessionStorage.removeItem('test.hidden'));
    await setHidden(bob, false);
    await eventually(() => frames.bob.sent.slice(sentBeforeReload), (frame) => frame.type === 'device' && frame.state === 'foreground', 'foreground after the reload');
  });

  test('a group above receipts.max_group_size: read positions from a reads request when opened', { timeout: STEP_TIMEOUT_MS }, async () => {
    // A host of its own where groups of more than two share no positions.
    const config = path.join(scratch.dir, 'small-receipts.json');
    fs.writeFileSync(config, JSON.stringify({ receipts: { max_group_size: 2 } }));
    const big = await startHost({ db: path.join(scratch.dir, 'big.db'), extraArgs: ['--config', config] });
    try {
      const users = ['dave', 'erin', 'fay'];
      const opened = {};
      for (const user of users) {
        opened[user] = await openPage(browser, big.pageUrl);
        frames[user] = recordFrames(opened[user]);
        await signIn(opened[user], user);
        pages[user] = opened[user];
        await joinGroup(opened[user], 'crowd');
      }
      const text = 'Three is a crowd';
      const page = opened.dave;
      await page.locator('#conversation-subtitle', { hasText: 'dave, erin, fay' }).waitFor();
      await openDirectChat(opened.erin, 'dave');
      await openDirectChat(opened.fay, 'dave');
      await sendMessage(page, text);
      await withStatus(page, text, 'sent', 0);

      await openConversation(opened.erin, 'g:crowd');
      const read = await eventually(() => frames.erin.sent, (frame) => frame.type === 'read' && frame.conv === 'g:crowd', 'erin\'s read');
      await eventually(() => frames.erin.received, (frame) => frame.type === 'ok' && frame.id === read.id, 'the server\'s ok to erin\'s read');
      // No live read frame in such a group (given a moment to arrive if it
      // were sent); opening it again asks.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(frames.dave.received.some((frame) => frame?.type === 'read' && frame.conv === 'g:crowd'), false);
      await withStatus(page, text, 'sent', 0);
      const asked = frames.dave.sent.length;
      await openDirectChat(page, 'erin');
      await openConversation(page, 'g:crowd');
      await eventually(() => frames.dave.sent.slice(asked), (frame) => frame.type === 'reads' && frame.conv === 'g:crowd', 'dave\'s reads request');
      await withStatus(page, text, 'partly-read', 1);

      await openConversation(opened.fay, 'g:crowd');
      await eventually(() => frames.fay.sent, (frame) => frame.type === 'read' && frame.conv === 'g:crowd', 'fay\'s read');
      await reload(page);
      await withStatus(page, text, 'read', 2);
      const listing = frames.dave.received.findLast((frame) => frame?.type === 'conversations');
      assert.equal(listing.conversations.find((entry) => entry.conv === 'g:crowd').reads, undefined, 'no reads in the entry of a big group');
      for (const user of users) await opened[user].context().close();
    } finally {
      await big.stop();
    }
  });

  test('no page had an uncaught error', () => {
    for (const [user, page] of Object.entries(pages)) assert.deepEqual(page.errors.map(String), [], user);
  });
});
