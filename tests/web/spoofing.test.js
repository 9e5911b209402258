// What a stranger can put on the page: message bodies with bidi overrides
// and stacked combining marks, which must neither reorder nor draw over
// anything else; and what the page puts in URLs: no token.
'use strict';
const assert = require('node:assert/strict');
const { describe, test, before, after } = require('node:test');
const { launchBrowser, makeScratchDir, messageLocator, openConversation, openPage, screenshot, signIn, startHost } = require('./harness');
const { RawClient } = require('./raw-client');

const RLO_FILE_NAME = 'invoice\u202Efdp.exe';
// A Z with 40 acute accents above and 40 grave accents below: stacked, their
// ink reaches some 150 px above and below the line, over the messages
// around it.
const STACKED_MARKS = `Z${'\u0301'.repeat(40)}${'\u0316'.repeat(40)} stacked`;
const AFTER = 'the message after';

// The computed styles and attributes that decide how a text is drawn, and
// how the box that holds it (its paragraph, for a body) clips it.
function look(text) {
  return text.evaluate((node) => {
    const clipping = getComputedStyle(node.closest('.text') ?? node);
    return {
      dir: node.getAttribute('dir'),
      unicodeBidi: getComputedStyle(node).unicodeBidi,
      overflowX: clipping.overflowX,
      overflowY: clipping.overflowY,
      maxHeight: clipping.maxHeight,
      text: node.textContent,
    };
  });
}

describe('what a stranger sends cannot spoof the page', () => {
  let scratch;
  let host;
  let browser;
  let victim;
  let mallory;
  const sockets = [];

  before(async () => {
    scratch = makeScratchDir();
    host = await startHost({ db: scratch.db });
    browser = await launchBrowser();
    victim = await openPage(browser, host.pageUrl);
    victim.on('websocket', (socket) => {
      const record = { url: socket.url(), sent: [] };
      sockets.push(record);
      socket.on('framesent', (frame) => record.sent.push(String(frame.payload)));
    });
    await signIn(victim, 'victim');
    mallory = await RawClient.connect(host.port, 'mallory', () => {});
  });

  after(async () => {
    mallory?.close();
    await browser?.close();
    await host?.stop();
    scratch?.cleanup();
  });

  test('the page authenticates with its first frame, and its URL has no token', () => {
    assert.equal(sockets.length, 1);
    // Only the device id, which is no secret (examples/web/README.md, Devices).
    assert.match(sockets[0].url, new RegExp(`^ws://127\\.0\\.0\\.1:${host.port}/ws\\?device=web-[0-9a-f]{16}$`));
    const auth = JSON.parse(sockets[0].sent[0]);
    assert.deepEqual(auth, { type: 'auth', token: 'victim', device: new URL(sockets[0].url).searchParams.get('device') });
  });

  test('a body with a right-to-left override is isolated, shows the override and does not apply it; names are isolated', async () => {
    mallory.send(
      { type: 'send', id: 'rlo', to: 'victim', body: { text: RLO_FILE_NAME } },
      { type: 'send', id: 'marks', to: 'victim', body: { text: STACKED_MARKS } },
      { type: 'send', id: 'after', to: 'victim', body: { text: AFTER } },
    );
    await openConversation(victim, 'dm:mallory:victim');
    const body = victim.locator('#message-list li.message[data-seq="1"] .message-body');
    const bodyLook = await look(body);
    assert.equal(bodyLook.dir, 'auto');
    assert.equal(bodyLook.unicodeBidi, 'isolate');
    // The override is replaced by a visible mark: the name reads as it is stored.
    assert.equal(bodyLook.text, 'invoiceRLOfdp.exe');
    assert.match(await body.locator('abbr.bidi-control').getAttribute('title'), /U\+202E/);

    // The sidebar's preview of the newest message is isolated too, and so
    // is every name, in the sidebar and over the conversation.
    mallory.send({ type: 'send', id: 'rlo-again', to: 'victim', body: { text: RLO_FILE_NAME } });
    const preview = victim.locator('#conversation-list li[data-conv="dm:mallory:victim"] .preview-text');
    await preview.filter({ hasText: 'invoiceRLOfdp.exe' }).waitFor();
    for (const text of [preview, victim.locator('li[data-conv="dm:mallory:victim"] .conversation-name'), victim.locator('#conversation-title')]) {
      const textLook = await look(text);
      assert.equal(textLook.dir, 'auto');
      assert.equal(textLook.unicodeBidi, 'isolate');
    }
  });

  test('stacked combining marks are clipped to their message', async () => {
    const marks = victim.locator('#message-list li.message[data-seq="2"]');
    await messageLocator(victim, AFTER).waitFor();
    const marksLook = await look(marks.locator('.message-body'));
    assert.equal(marksLook.unicodeBidi, 'isolate');
    assert.notEqual(marksLook.overflowX, 'visible');
    assert.notEqual(marksLook.overflowY, 'visible');
    assert.notEqual(marksLook.maxHeight, 'none');
    // The paragraph (where the body's ink is cut off) lies inside its own
    // bubble, and the bubbles around it do not overlap it.
    const boxes = await victim.locator('#message-list li.message').evaluateAll((rows) =>
      rows.map((row) => {
        const bubble = row.querySelector('.bubble').getBoundingClientRect();
        const body = row.querySelector('.text').getBoundingClientRect();
        return { seq: row.dataset.seq, bubbleTop: bubble.top, bubbleBottom: bubble.bottom, bodyTop: body.top, bodyBottom: body.bottom };
      }),
    );
    const index = boxes.findIndex((box) => box.seq === '2');
    const [previous, own, next] = boxes.slice(index - 1, index + 2);
    assert.ok(own.bodyTop >= own.bubbleTop && own.bodyBottom <= own.bubbleBottom, JSON.stringify(own));
    assert.ok(previous.bubbleBottom <= own.bubbleTop && own.bubbleBottom <= next.bubbleTop, JSON.stringify(boxes));
    await screenshot(victim, '11-spoofing');
  });

  test('no page had an uncaught error', () => {
    assert.deepEqual(victim.errors.map(String), []);
  });
});
