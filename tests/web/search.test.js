// Search in the page (examples/web/README.md, "Search"): the search box
// sends `search`, lists what the server found across the user's
// conversations (and nothing of other users'), pages with "More results",
// and a result opens its conversation at the message, loading the history
// between when the page does not hold it.
'use strict';
const assert = require('node:assert/strict');
const { describe, test, before, after } = require('node:test');
const {
  eventually,
  joinGroup,
  launchBrowser,
  makeScratchDir,
  messageLocator,
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
const GIRAFFES = 25;
const FILLERS = 60;

async function search(page, query) {
  const field = page.getByRole('searchbox', { name: 'Search messages' });
  await field.fill(query);
  await field.press('Enter');
}

function results(page) {
  return page.locator('#search-result-list li');
}

// True when the row lies within the message list's viewport.
function inView(row) {
  return row.evaluate((node) => {
    const box = node.getBoundingClientRect();
    const scroller = node.closest('#message-scroller').getBoundingClientRect();
    return box.top >= scroller.top && box.bottom <= scroller.bottom;
  });
}

describe('search', () => {
  let scratch;
  let host;
  let browser;
  let alice;
  let bob;
  let frames;

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

  test('finds one\'s own messages, and not another user\'s', { timeout: STEP_TIMEOUT_MS }, async () => {
    alice = await openPage(browser, host.pageUrl);
    frames = recordFrames(alice);
    bob = await openPage(browser, host.pageUrl);
    await signIn(alice, 'alice');
    await signIn(bob, 'bob');
    await openDirectChat(alice, 'bob');
    await sendMessage(alice, 'The zebra crossing is closed');
    await sendMessage(alice, 'Take the bridge instead');
    await messageLocator(alice, 'Take the bridge instead').and(alice.locator('[data-status="sent"]')).waitFor();

    // Carol and dave talk about a zebra too, in a conversation alice is not in.
    let acked;
    const stored = new Promise((resolve) => (acked = resolve));
    const carol = await RawClient.connect(host.port, 'carol', (text) => {
      if (JSON.parse(text).type === 'ack') acked();
    });
    carol.send({ type: 'send', id: 'z-1', to: 'dave', body: { text: 'A zebra in our garden' } });
    await stored;
    carol.close();

    await search(alice, 'Zèbra');
    const request = await eventually(() => frames.sent, (frame) => frame.type === 'search', 'the search request');
    assert.equal(request.query, 'Zèbra');
    await alice.locator('#search-summary', { hasText: '1 message with “Zèbra”' }).waitFor();
    assert.equal(await results(alice).count(), 1);
    assert.equal(await results(alice).first().getAttribute('data-conv'), 'dm:alice:bob');
    assert.equal(await results(alice).first().locator('mark').textContent(), 'zebra', 'the word found is marked');
    assert.equal(await alice.locator('#conversation-list').isVisible(), false, 'the results take the list\'s place');
    await screenshot(alice, '21-search');

    // A word nobody wrote.
    await search(alice, 'okapi');
    await alice.locator('#search-summary', { hasText: 'No messages with “okapi”' }).waitFor();
    assert.equal(await results(alice).count(), 0);

    // A query without a word is not sent.
    const sentBefore = frames.sent.length;
    await search(alice, '?!');
    await alice.locator('#search-error', { hasText: 'Type a word to search for.' }).waitFor();
    assert.equal(frames.sent.slice(sentBefore).some((frame) => frame?.type === 'search'), false);

    await alice.getByRole('button', { name: 'Close', exact: true }).click();
    await alice.locator('#conversation-list').waitFor();
    assert.equal(await alice.locator('#search-results').isVisible(), false);
  });

  test('more results page by page; a result opens its conversation at the message, loading the history before it', { timeout: STEP_TIMEOUT_MS }, async () => {
    await joinGroup(alice, 'team');
    await joinGroup(bob, 'team');
    const last = host.nextEvent((event) => event.event === 'sent' && event.group === 'team' && event.seq === GIRAFFES + FILLERS, 'the host\'s messages');
    for (let n = 1; n <= GIRAFFES; n += 1) host.command(`group team {"text":"giraffe number ${n}"}`);
    for (let n = 1; n <= FILLERS; n += 1) host.command(`group team {"text":"filler ${n}"}`);
    await last;
    // Heard live, the page holds them all; after a reload, the newest page.
    await reloadPage(alice);
    await alice.locator('#conversation-list li[data-conv="g:team"]').waitFor();

    await search(alice, 'giraffe');
    await alice.locator('#search-summary', { hasText: '20+ messages with “giraffe”' }).waitFor();
    assert.equal(await results(alice).count(), 20);
    assert.match(await results(alice).first().textContent(), /giraffe number 25/, 'newest first');
    const page = frames.sent.findLast((frame) => frame?.type === 'search');
    await alice.getByRole('button', { name: 'More results' }).click();
    await alice.locator('#search-summary', { hasText: `${GIRAFFES} messages with “giraffe”` }).waitFor();
    const next = frames.sent.findLast((frame) => frame?.type === 'search');
    assert.notEqual(next, page);
    assert.equal(typeof next.after, 'string');
    assert.equal(await results(alice).count(), GIRAFFES);
    assert.equal(await alice.getByRole('button', { name: 'More results' }).isVisible(), false);

    // The oldest result is far below the newest page the page holds.
    assert.equal(await messageLocator(alice, 'giraffe number 1').count(), 0);
    await results(alice).last().getByRole('button').click();
    await alice.locator('#conversation-title', { hasText: 'team' }).waitFor();
    const found = messageLocator(alice, 'giraffe number 1');
    await found.waitFor();
    assert.ok(await inView(found), 'the message is scrolled into view');
    await screenshot(alice, '22-search-result-opened');

    // And one in another conversation.
    await search(alice, 'zebra');
    await alice.locator('#search-summary', { hasText: '1 message with “zebra”' }).waitFor();
    await results(alice).first().getByRole('button').click();
    await alice.locator('#conversation-title', { hasText: 'bob' }).waitFor();
    const zebra = messageLocator(alice, 'The zebra crossing is closed');
    await zebra.waitFor();
    assert.ok(await inView(zebra));
  });

  test('no page had an uncaught error', () => {
    assert.deepEqual(alice.errors.map(String), []);
    assert.deepEqual(bob.errors.map(String), []);
  });
});
