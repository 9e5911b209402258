// The web chat page end to end: two users in headless Chromium, each in its
// own browser context, talk through the example host that serves the page.
// Screenshots of every step go to tests/web/artifacts/.
'use strict';
const assert = require('node:assert/strict');
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
// More than two history pages (50 each): one comes by scrolling to the top,
// one by the button.
const BACKLOG = 110;
const GREETING = 'Morning! Is the release branch green?';

// Waits until the open conversation's list counts `count` messages. Only the
// rows near the viewport are in the DOM; each tells its place among all
// (aria-posinset of aria-setsize).
function heldMessages(page, count) {
  return page.locator(`#message-list li.message[aria-setsize="${count}"]`).first().waitFor();
}

// Where a row is, in pixels from the top of the message list's viewport.
function placeInScroller(row) {
  return row.evaluate((node) => node.getBoundingClientRect().top - node.closest('#message-scroller').getBoundingClientRect().top);
}

describe('web chat in two browsers', () => {
  let scratch;
  let host;
  let browser;
  let alice;
  let bob;

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

  test('the host serves the page and both users sign in', { timeout: STEP_TIMEOUT_MS }, async () => {
    alice = await openPage(browser, host.pageUrl);
    bob = await openPage(browser, host.pageUrl);
    await screenshot(alice, '01-sign-in');
    await signIn(alice, 'alice');
    await signIn(bob, 'bob');
    assert.equal(await alice.locator('#me-name').textContent(), 'alice');
    assert.equal(await bob.locator('#me-name').textContent(), 'bob');
  });

  test('a group: join, typing indicator, delivery both ways, read ticks', { timeout: STEP_TIMEOUT_MS }, async () => {
    await joinGroup(alice, 'team');
    await joinGroup(bob, 'team');
    await alice.locator('#conversation-subtitle', { hasText: 'alice, bob' }).waitFor();

    await sendMessage(alice, GREETING);
    await messageLocator(bob, GREETING).waitFor();
    assert.equal(await messageLocator(bob, GREETING).locator('.sender').textContent(), 'alice');
    // Bob has the group open, so he reads it at once and alice sees it read.
    await messageLocator(alice, GREETING).and(alice.locator('[data-status="read"]')).waitFor();

    await bob.getByLabel('Message', { exact: true }).pressSequentially('Almost');
    await alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
    await screenshot(alice, '02-group-typing');
    await bob.getByLabel('Message', { exact: true }).pressSequentially(', one flaky test left.');
    await bob.keyboard.press('Enter');
    await messageLocator(alice, 'Almost, one flaky test left.').waitFor();
    // The message ends the indicator; so would its 3 s running out.
    await alice.locator('#typing:empty').waitFor();
    await messageLocator(bob, 'Almost, one flaky test left.').and(bob.locator('[data-status="read"]')).waitFor();
    await screenshot(bob, '03-group-chat');
  });

  test('a direct chat: presence dot, unread count, delivery, read tick', { timeout: STEP_TIMEOUT_MS }, async () => {
    await openDirectChat(alice, 'bob');
    await alice.locator('#conversation-list li[data-conv="dm:alice:bob"][data-presence="online"]').waitFor();
    await alice.locator('#conversation-subtitle', { hasText: 'Online' }).waitFor();

    await sendMessage(alice, 'Lunch at 12:30?');
    // Bob is in the group: the new chat shows up unread in his sidebar.
    const bobsEntry = bob.locator('#conversation-list li[data-conv="dm:alice:bob"]');
    await bobsEntry.and(bob.locator('[data-unread="1"]')).waitFor();
    await messageLocator(alice, 'Lunch at 12:30?').and(alice.locator('[data-status="sent"]')).waitFor();
    await screenshot(bob, '04-direct-unread');

    await openConversation(bob, 'dm:alice:bob');
    await messageLocator(bob, 'Lunch at 12:30?').waitFor();
    await bobsEntry.and(bob.locator('[data-unread="0"]')).waitFor();
    await messageLocator(alice, 'Lunch at 12:30?').and(alice.locator('[data-status="read"]')).waitFor();
    await sendMessage(bob, 'Sure, see you there');
    await messageLocator(alice, 'Sure, see you there').waitFor();
    await screenshot(alice, '05-direct-read');
  });

  test('a reload signs in again, shows the history and pages older messages', { timeout: STEP_TIMEOUT_MS }, async () => {
    for (let n = 1; n <= BACKLOG; n += 1) host.command(`group team {"text":"backlog ${n}"}`);
    await openConversation(bob, 'g:team');
    await messageLocator(bob, `backlog ${BACKLOG}`).waitFor();

    // Bob goes away: alice sees his dot turn grey. He comes back with a reload.
    await bob.goto('about:blank');
    await alice.locator('#conversation-list li[data-conv="dm:alice:bob"][data-presence="offline"]').waitFor();
    await bob.goto(host.pageUrl);
    await bob.locator('#connection[data-state="online"]').waitFor();
    await alice.locator('#conversation-list li[data-conv="dm:alice:bob"][data-presence="online"]').waitFor();
    assert.equal(await bob.locator('#me-name').textContent(), 'bob', 'signed in again from localStorage');

    await openConversation(bob, 'g:team');
    await messageLocator(bob, `backlog ${BACKLOG}`).waitFor();
    // The newest page is held; the chat from the start needs older pages.
    await heldMessages(bob, 50);
    assert.equal(await messageLocator(bob, GREETING).count(), 0);

    // A page loaded while the reader looks at the oldest messages held grows
    // above them, and they stay where they were. (Scrolled short of the top,
    // where scrolling would load the page itself.)
    const inView = messageLocator(bob, `backlog ${BACKLOG - 40}`);
    await bob.locator('#message-scroller').evaluate((scroller) => (scroller.scrollTop = 120));
    await inView.waitFor();
    const placeBefore = await placeInScroller(inView);
    await bob.locator('#load-older').evaluate((button) => button.click());
    await heldMessages(bob, 100);
    const placeAfter = await placeInScroller(inView);
    // Scroll positions snap to device pixels: within one pixel is in place.
    assert.ok(Math.abs(placeAfter - placeBefore) < 1, `a message in view stays in place (${placeBefore} px, then ${placeAfter} px)`);

    // Scrolling to the top loads the page before.
    await bob.locator('#message-scroller').evaluate((scroller) => (scroller.scrollTop = 0));
    await heldMessages(bob, BACKLOG + 2);
    await bob.getByRole('button', { name: 'Load older messages' }).waitFor({ state: 'hidden' });
    await bob.locator('#message-scroller').evaluate((scroller) => (scroller.scrollTop = 0));
    await messageLocator(bob, GREETING).waitFor();
    await screenshot(bob, '06-reloaded-history');

    await openConversation(bob, 'dm:alice:bob');
    await messageLocator(bob, 'Lunch at 12:30?').waitFor();
    await messageLocator(bob, 'Sure, see you there').waitFor();
  });

  test('after a server restart the pages reconnect, resend and sync', { timeout: STEP_TIMEOUT_MS }, async () => {
    await openConversation(alice, 'g:team');
    await openConversation(bob, 'g:team');
    await host.stop();
    await alice.locator('#connection[data-state="waiting"]').waitFor();
    await bob.locator('#connection[data-state="waiting"]').waitFor();

    // Sent while the server is down: it waits in bob's outbox.
    await sendMessage(bob, 'Written while the server was down');
    await messageLocator(bob, 'Written while the server was down').and(bob.locator('[data-status="sending"]')).waitFor();
    await screenshot(bob, '07-offline-outbox');

    // A message stored while both pages are away, by a host on a port they
    // do not know, with the same database: only sync can bring it to them.
    const unseen = await startHost({ db: scratch.db });
    const stored = unseen.nextEvent((event) => event.event === 'sent' && event.group === 'team', 'the host message to be stored');
    unseen.command('group team {"text":"Stored while you were away"}');
    await stored;
    await unseen.stop();

    // The server is back on its port, with the same database.
    host = await startHost({ db: scratch.db, port: host.port });
    await alice.locator('#connection[data-state="online"]').waitFor();
    await bob.locator('#connection[data-state="online"]').waitFor();

    for (const page of [alice, bob]) {
      await messageLocator(page, 'Stored while you were away').waitFor();
      await messageLocator(page, 'Written while the server was down').waitFor();
    }
    await messageLocator(bob, 'Written while the server was down').and(bob.locator('[data-status="read"]')).waitFor();

    await sendMessage(alice, 'Back online');
    await messageLocator(bob, 'Back online').waitFor();
    // Nothing arrived twice, and the gapless seqs run on from before the restart.
    for (const page of [alice, bob]) {
      for (const text of ['Stored while you were away', 'Written while the server was down', 'Back online']) {
        assert.equal(await messageLocator(page, text).count(), 1, `${text} once`);
      }
    }
    // The page holds BACKLOG + 5 distinct seqs, the newest of them BACKLOG + 5.
    await heldMessages(bob, BACKLOG + 5);
    const newestSeq = await bob.locator('#message-list li.message').last().getAttribute('data-seq');
    assert.equal(Number(newestSeq), BACKLOG + 5);
    await screenshot(alice, '08-after-restart');
  });

  test('no page had an uncaught error', () => {
    assert.deepEqual(alice.errors.map(String), []);
    assert.deepEqual(bob.errors.map(String), []);
  });
});
