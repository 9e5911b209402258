// Replies, edits, deletes and reactions in the page (examples/web/README.md):
// alice on two devices (two browser contexts) and bob. What one device does
// shows on the other and on bob's page, live, after a reload (history) and
// after being away (sync), and each page shows the same; events never show
// as messages of their own.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');
const {
  eventually,
  launchBrowser,
  makeScratchDir,
  messageLocator,
  messageRow,
  openConversation,
  openDirectChat,
  openPage,
  recordFrames,
  reloadPage,
  screenshot,
  sendMessage,
  signIn,
  startHost,
} = require('./harness');
const { RawClient } = require('./raw-client');

const STEP_TIMEOUT_MS = 30000;
const CONVERGE_TIMEOUT_MS = 10000;
const DM = 'dm:alice:bob';
const QUESTION = 'What time is lunch?';
const EDITED = 'What time is lunch today?';
const ANSWER = 'At noon';

// What the page shows of each message row of the open conversation.
function shownState(page) {
  return page.locator('#message-list li.message').evaluateAll((rows) =>
    rows.map((row) => ({
      seq: Number(row.dataset.seq),
      text: row.querySelector('.message-body')?.textContent,
      edited: row.dataset.edited === 'true',
      deleted: row.dataset.deleted === 'true',
      quote: row.querySelector('.quote')?.textContent ?? null,
      reactions: [...row.querySelectorAll('.reaction')].map((chip) => `${chip.textContent}${chip.getAttribute('aria-pressed') === 'true' ? ' (mine)' : ''}`),
    })),
  );
}

// Waits until every page shows the same, and `expected` when given;
// returns what they show.
async function converge(pages, expected) {
  const deadline = Date.now() + CONVERGE_TIMEOUT_MS;
  for (;;) {
    const states = await Promise.all(pages.map(shownState));
    const want = expected ?? states[0];
    const differing = states.find((state) => JSON.stringify(state) !== JSON.stringify(want));
    if (!differing) return want;
    if (Date.now() > deadline) assert.deepEqual(differing, want, 'the pages converge');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// Clicks the action `name` (Reply, React, Edit, Delete) of message `seq`,
// shown on hover.
async function act(page, seq, name) {
  const row = messageRow(page, seq);
  await row.hover();
  await row.getByRole('button', { name, exact: true }).click();
}

async function react(page, seq, name) {
  await act(page, seq, 'React');
  await page.locator('#reaction-picker').getByRole('button', { name: `React with ${name}` }).click();
}

function chip(page, seq, emoji) {
  return messageRow(page, seq).locator('.reaction').filter({ hasText: emoji });
}

// The seq of the message `text`, once it is stored.
async function seqOf(page, text) {
  const stored = messageLocator(page, text).and(page.locator('[data-seq]'));
  await stored.waitFor();
  return Number(await stored.getAttribute('data-seq'));
}

// The page's WebSocket through a route the test can cut: while cut, the
// page's connections reach nothing, as on a train in a tunnel.
async function cuttable(page) {
  const control = { cutOff: false, open: new Set(), held: new Set() };
  await page.routeWebSocket(/\/ws/, (route) => {
    if (control.cutOff) {
      control.held.add(route);
      return;
    }
    control.open.add({ route, server: route.connectToServer() });
  });
  control.cut = () => {
    control.cutOff = true;
    for (const { route, server } of control.open) {
      route.close({ code: 1012, reason: 'cut off' });
      server.close();
    }
    control.open.clear();
  };
  control.restore = () => {
    control.cutOff = false;
    for (const route of control.held) route.close({ code: 1012, reason: 'back' });
    control.held.clear();
  };
  return control;
}

describe('replies, edits, deletes and reactions', () => {
  let scratch;
  let host;
  let browser;
  const pages = {};
  let bobFrames;
  let tunnel;
  let question;

  before(async () => {
    scratch = makeScratchDir();
    host = await startHost({ db: scratch.db });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await host?.stop();
    scratch?.cleanup();
  });

  test('alice on two devices and bob', { timeout: STEP_TIMEOUT_MS }, async () => {
    pages.alice = await openPage(browser, host.pageUrl);
    pages.aliceToo = await openPage(browser, host.pageUrl);
    tunnel = await cuttable(pages.aliceToo);
    pages.bob = await openPage(browser, host.pageUrl);
    bobFrames = recordFrames(pages.bob);
    await signIn(pages.alice, 'alice');
    await signIn(pages.aliceToo, 'alice');
    await signIn(pages.bob, 'bob');
    await openDirectChat(pages.alice, 'bob');
    await sendMessage(pages.alice, QUESTION);
    question = await seqOf(pages.alice, QUESTION);
    await openConversation(pages.aliceToo, DM);
    await openConversation(pages.bob, DM);
    await messageLocator(pages.bob, QUESTION).waitFor();
  });

  test('a reply carries reply_to and shows a quote of its target on every page', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, aliceToo, bob } = pages;
    await messageRow(bob, question).hover();
    // Past the bar's fade-in.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await screenshot(bob, '15-message-actions');
    await act(bob, question, 'Reply');
    await bob.locator('#composer-context', { hasText: 'Replying to alice' }).waitFor();
    await sendMessage(bob, ANSWER);
    await bob.locator('#composer-context').waitFor({ state: 'hidden' });
    const send = await eventually(() => bobFrames.sent, (frame) => frame.type === 'send' && frame.body?.text === ANSWER, 'bob\'s send');
    assert.equal(send.reply_to, question);
    for (const page of [alice, aliceToo, bob]) {
      const reply = messageLocator(page, ANSWER);
      await reply.locator('.quote-text', { hasText: QUESTION }).waitFor();
      assert.equal(await reply.getAttribute('data-reply-to'), String(question));
    }
    assert.equal(await messageLocator(bob, ANSWER).locator('.quote-from').textContent(), 'alice');
    assert.equal(await messageLocator(alice, ANSWER).locator('.quote-from').textContent(), 'You');
    await screenshot(bob, '16-reply');
  });

  test('an edit shows on the other device and on bob\'s page, marked edited, and after a reload', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, aliceToo, bob } = pages;
    await act(alice, question, 'Edit');
    const composer = alice.getByLabel('Message', { exact: true });
    assert.equal(await composer.inputValue(), QUESTION, 'the editor starts from the text');
    await alice.locator('#composer-context', { hasText: 'Editing your message' }).waitFor();
    await composer.fill(EDITED);
    await composer.press('Enter');
    for (const page of [alice, aliceToo, bob]) {
      await messageRow(page, question).and(page.locator('[data-edited="true"]')).locator('.message-body', { hasText: EDITED }).waitFor();
      await messageRow(page, question).locator('.edited', { hasText: 'edited' }).waitFor();
      // The reply quotes the text as it is now.
      await messageLocator(page, ANSWER).locator('.quote-text', { hasText: EDITED }).waitFor();
    }
    assert.equal(await composer.inputValue(), '', 'the composer is empty again');
    const state = await converge([alice, aliceToo]);
    assert.deepEqual(state.map((row) => row.seq), [question, question + 1], 'two messages; the edit is no row of its own');
    await reloadPage(aliceToo);
    await openConversation(aliceToo, DM);
    await converge([aliceToo], state);
    await screenshot(bob, '17-edited');
  });

  test('reactions: chips with counts, one\'s own highlighted, the same on both devices and after a reload', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, aliceToo, bob } = pages;
    await react(bob, question, 'thumbs up');
    await chip(alice, question, '👍').and(alice.locator('[aria-pressed="false"]')).filter({ hasText: '👍 1' }).waitFor();
    // Alice adds hers from the chip, and a heart from her other device.
    await chip(alice, question, '👍').click();
    await chip(aliceToo, question, '👍').and(aliceToo.locator('[aria-pressed="true"]')).filter({ hasText: '👍 2' }).waitFor();
    await react(aliceToo, question, 'heart');
    await chip(alice, question, '❤️').and(alice.locator('[aria-pressed="true"]')).waitFor();
    await chip(bob, question, '❤️').and(bob.locator('[aria-pressed="false"]')).waitFor();
    await react(bob, question + 1, 'party');
    await chip(alice, question + 1, '🎉').waitFor();
    const expected = await converge([alice, aliceToo]);
    assert.deepEqual(expected.find((row) => row.seq === question).reactions, ['❤️ 1 (mine)', '👍 2 (mine)'], 'in code point order, whatever came first');
    assert.deepEqual(expected.find((row) => row.seq === question + 1).reactions, ['🎉 1']);
    await screenshot(aliceToo, '18-reactions');

    // Taken back on one device: gone on the other.
    await chip(alice, question, '👍').click();
    for (const page of [alice, aliceToo]) await chip(page, question, '👍').and(page.locator('[aria-pressed="false"]')).filter({ hasText: '👍 1' }).waitFor();
    await chip(bob, question, '👍').and(bob.locator('[aria-pressed="true"]')).filter({ hasText: '👍 1' }).waitFor();
    const after = await converge([alice, aliceToo]);
    await reloadPage(alice);
    await openConversation(alice, DM);
    await converge([alice], after);
    assert.equal(await alice.locator('#message-list li.message').count(), 2, 'no reaction shows as a message');
    assert.equal(await alice.locator('#conversation-list li[data-conv="dm:alice:bob"]').getAttribute('data-unread'), '0');
  });

  test('a device away while things change catches up by sync to the same state', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, aliceToo, bob } = pages;
    tunnel.cut();
    await aliceToo.locator('#connection:not([data-state="online"])').waitFor();
    await sendMessage(alice, 'Meeting moved to 3');
    const moved = await seqOf(alice, 'Meeting moved to 3');
    await react(bob, moved, 'surprised');
    await chip(alice, moved, '😮').waitFor();
    await act(alice, moved, 'Edit');
    await alice.getByLabel('Message', { exact: true }).fill('Meeting moved to 4');
    await alice.keyboard.press('Enter');
    for (const page of [alice, bob]) await messageLocator(page, 'Meeting moved to 4').waitFor();
    await chip(alice, question, '❤️').click();
    for (const page of [alice, bob]) await chip(page, question, '❤️').waitFor({ state: 'detached' });
    const expected = await converge([alice]);
    // The other device has not heard any of it.
    assert.equal(await messageLocator(aliceToo, 'Meeting moved to 4').count(), 0);
    tunnel.restore();
    await aliceToo.locator('#connection[data-state="online"]').waitFor();
    await converge([aliceToo], expected);
  });

  test('a delete leaves a tombstone everywhere, and the reply says its target was deleted', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, aliceToo, bob } = pages;
    await act(alice, question, 'Delete');
    await alice.getByRole('dialog').getByRole('button', { name: 'Delete for everyone' }).click();
    for (const page of [alice, aliceToo, bob]) {
      const row = messageRow(page, question);
      await row.and(page.locator('[data-deleted="true"]')).waitFor();
      assert.equal(await row.locator('.message-body').textContent(), 'Message deleted');
      assert.equal(await row.locator('.reaction').count(), 0, 'its reactions went with it');
      assert.equal(await row.getByRole('button', { name: 'Reply', exact: true }).count(), 0, 'a tombstone has no actions');
      await messageLocator(page, ANSWER).locator('.quote', { hasText: 'Message deleted' }).waitFor();
    }
    const expected = await converge([alice, aliceToo]);
    await reloadPage(bob);
    await openConversation(bob, DM);
    await messageRow(bob, question).and(bob.locator('[data-deleted="true"]')).waitFor();
    await reloadPage(aliceToo);
    await openConversation(aliceToo, DM);
    await converge([aliceToo], expected);
    await screenshot(bob, '19-deleted');
  });

  test('the host deletes any message (moderation): a tombstone on every page', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice, aliceToo, bob } = pages;
    const answer = await seqOf(bob, ANSWER);
    host.command(`delete ${DM} ${answer}`);
    for (const page of [alice, aliceToo, bob]) await messageRow(page, answer).and(page.locator('[data-deleted="true"]')).waitFor();
  });

  test('a reply to a message the page does not hold says so, and going to it loads it', { timeout: STEP_TIMEOUT_MS }, async () => {
    const { alice } = pages;
    let acked = 0;
    let allAcked;
    const done = new Promise((resolve) => (allAcked = resolve));
    const carol = await RawClient.connect(host.port, 'carol', (text) => {
      if (JSON.parse(text).type === 'ack' && ++acked === 61) allAcked();
    });
    try {
      const frames = [{ type: 'send', id: 'c-1', to: 'alice', body: { text: 'The first of many' } }];
      for (let n = 2; n <= 60; n += 1) frames.push({ type: 'send', id: `c-${n}`, to: 'alice', body: { text: `filler ${n}` } });
      frames.push({ type: 'send', id: 'c-61', to: 'alice', body: { text: 'Back to the first' }, reply_to: 1 });
      carol.send(...frames);
      await done;
    } finally {
      carol.close();
    }
    // Heard live, the page would hold all 61; after a reload it holds the
    // newest page.
    await reloadPage(alice);
    await openConversation(alice, 'dm:alice:carol');
    const reply = messageLocator(alice, 'Back to the first');
    await reply.locator('.quote', { hasText: 'Message not loaded' }).waitFor();
    assert.equal(await messageRow(alice, 1).count(), 0, 'the newest page does not reach seq 1');
    await screenshot(alice, '20-reply-to-a-message-not-loaded');
    await reply.locator('.quote').click();
    const first = messageRow(alice, 1);
    await first.locator('.message-body', { hasText: 'The first of many' }).waitFor();
    const inView = await first.evaluate((row) => {
      const box = row.getBoundingClientRect();
      const scroller = row.closest('#message-scroller').getBoundingClientRect();
      return box.top >= scroller.top && box.bottom <= scroller.bottom;
    });
    assert.ok(inView, 'the target is scrolled into view');
    // Back at the bottom, the reply quotes it now.
    await alice.locator('#message-scroller').evaluate((scroller) => (scroller.scrollTop = scroller.scrollHeight));
    await reply.locator('.quote-text', { hasText: 'The first of many' }).waitFor();
  });

  test('an edit after messages.edit_window_ms is refused, and the page says so', { timeout: STEP_TIMEOUT_MS }, async () => {
    const config = path.join(scratch.dir, 'short-window.json');
    fs.writeFileSync(config, JSON.stringify({ messages: { edit_window_ms: 1000 } }));
    const strict = await startHost({ db: path.join(scratch.dir, 'strict.db'), extraArgs: ['--config', config] });
    try {
      const page = await openPage(browser, strict.pageUrl);
      pages.dave = page;
      await signIn(page, 'dave');
      await openDirectChat(page, 'erin');
      await sendMessage(page, 'Too late to change');
      const seq = await seqOf(page, 'Too late to change');
      await messageRow(page, seq).and(page.locator('[data-status="sent"]')).waitFor();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await act(page, seq, 'Edit');
      await page.getByLabel('Message', { exact: true }).fill('Changed');
      await page.keyboard.press('Enter');
      await page.locator('#notice', { hasText: 'This message can no longer be edited.' }).waitFor();
      assert.equal(await messageRow(page, seq).locator('.message-body').textContent(), 'Too late to change');
      assert.equal(await messageRow(page, seq).getAttribute('data-edited'), null);
      await page.context().close();
    } finally {
      await strict.stop();
    }
  });

  test('no page had an uncaught error', () => {
    for (const [name, page] of Object.entries(pages)) assert.deepEqual(page.errors.map(String), [], name);
  });
});
