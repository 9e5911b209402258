// Files in the page (examples/web/README.md, "Files"): a file chosen in
// the composer is uploaded with the session's token, the message names it,
// the other user's page shows a photo's preview and saves any other file
// under its name; uploads the server refuses (files.max_bytes: 413, the
// user's quota: 507) say so.
'use strict';
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const { describe, test, before, after } = require('node:test');
const {
  eventually,
  launchBrowser,
  makeScratchDir,
  messageLocator,
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

const STEP_TIMEOUT_MS = 30000;
const MAX_BYTES = 20000;
const QUOTA_BYTES = 50000;
const DM = 'dm:alice:bob';

// A PNG of width × height pixels in two colours: a real image the browser decodes.
function png(width, height) {
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = [0];
    for (let x = 0; x < width; x += 1) row.push(...(x < width / 2 ? [79, 70, 229] : [250, 204, 21]));
    rows.push(Buffer.from(row));
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function attach(page, name, mimeType, buffer) {
  return page.locator('#composer-file').setInputFiles({ name, mimeType, buffer });
}

function attachment(page, name) {
  return page.locator('#composer-files li').filter({ hasText: name });
}

describe('files', () => {
  let scratch;
  let host;
  let browser;
  let alice;
  let bob;
  let frames;
  const photo = png(64, 48);

  before(async () => {
    scratch = makeScratchDir();
    const config = path.join(scratch.dir, 'files.json');
    fs.writeFileSync(config, JSON.stringify({ files: { max_bytes: MAX_BYTES, quota_bytes: QUOTA_BYTES } }));
    host = await startHost({ db: scratch.db, extraArgs: ['--files', path.join(scratch.dir, 'files'), '--config', config] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await host?.stop();
    scratch?.cleanup();
  });

  test('a photo: uploaded, sent, and previewed on the other user\'s page', { timeout: STEP_TIMEOUT_MS }, async () => {
    alice = await openPage(browser, host.pageUrl);
    frames = recordFrames(alice);
    bob = await openPage(browser, host.pageUrl);
    await signIn(alice, 'alice');
    await signIn(bob, 'bob');
    await openDirectChat(alice, 'bob');
    await openDirectChat(bob, 'alice');

    const upload = alice.waitForRequest((request) => request.url().endsWith('/files') && request.method() === 'POST');
    await attach(alice, 'photo.png', 'image/png', photo);
    const request = await upload;
    assert.equal(request.headers().authorization, 'Bearer alice', 'the token goes in a header');
    await attachment(alice, 'photo.png').and(alice.locator('[data-state="ready"]')).waitFor();
    await sendMessage(alice, 'Look at this');
    await alice.locator('#composer-files').waitFor({ state: 'hidden' });

    const send = await eventually(() => frames.sent, (frame) => frame.type === 'send' && frame.body?.text === 'Look at this', 'the send');
    assert.equal(send.body.files.length, 1);
    const [file] = send.body.files;
    assert.match(file.id, /^[0-9a-f]{64}$/);
    assert.equal(file.id, crypto.createHash('sha256').update(photo).digest('hex'), 'the id is the SHA-256 of the bytes');
    assert.deepEqual({ name: file.name, type: file.type, size: file.size }, { name: 'photo.png', type: 'image/png', size: photo.length });

    for (const page of [bob, alice]) {
      const message = messageLocator(page, 'Look at this');
      await message.locator('.file-image[data-state="shown"]').waitFor();
      const image = await message.locator('.file-image img').evaluate((img) => ({ src: img.src, width: img.naturalWidth, height: img.naturalHeight, alt: img.alt }));
      assert.match(image.src, /^blob:/);
      assert.deepEqual({ width: image.width, height: image.height, alt: image.alt }, { width: 64, height: 48, alt: 'photo.png' });
    }
    await bob.locator('#conversation-list li[data-conv="dm:alice:bob"] .preview-text', { hasText: '📎 Look at this' }).waitFor();
    await screenshot(bob, '23-photo');

    // After a reload, from history.
    await reloadPage(bob);
    await openConversation(bob, DM);
    await messageLocator(bob, 'Look at this').locator('.file-image[data-state="shown"]').waitFor();
  });

  test('any other file is a link that saves it under its name', { timeout: STEP_TIMEOUT_MS }, async () => {
    const notes = Buffer.from('Agenda:\n1. lunch\n2. the release\n');
    await attach(alice, 'notes.txt', 'text/plain', notes);
    await attachment(alice, 'notes.txt').and(alice.locator('[data-state="ready"]')).waitFor();
    // A file alone, without text.
    await alice.getByRole('button', { name: 'Send', exact: true }).click();
    const link = bob.getByRole('button', { name: /^Download notes\.txt/ });
    await link.waitFor();
    const downloading = bob.waitForEvent('download');
    await link.click();
    const download = await downloading;
    assert.equal(download.suggestedFilename(), 'notes.txt');
    const saved = await download.path();
    assert.deepEqual(fs.readFileSync(saved), notes);
  });

  test('an upload over files.max_bytes, or past the quota, shows an error and sends nothing', { timeout: STEP_TIMEOUT_MS }, async () => {
    const sendsBefore = frames.sent.filter((frame) => frame?.type === 'send').length;
    await attach(alice, 'huge.bin', 'application/octet-stream', crypto.randomBytes(MAX_BYTES + 1000));
    const failed = attachment(alice, 'huge.bin').and(alice.locator('[data-state="failed"]'));
    await failed.waitFor();
    assert.match(await failed.textContent(), /too large/);
    await alice.locator('#notice', { hasText: '“huge.bin” is too large' }).waitFor();
    await screenshot(alice, '24-upload-too-large');
    await alice.getByRole('button', { name: 'Remove huge.bin' }).click();
    await alice.locator('#composer-files').waitFor({ state: 'hidden' });

    // Two files fit in the quota; the third does not.
    for (const name of ['one.bin', 'two.bin']) {
      await attach(alice, name, 'application/octet-stream', crypto.randomBytes(MAX_BYTES - 1000));
      await attachment(alice, name).and(alice.locator('[data-state="ready"]')).waitFor();
    }
    await attach(alice, 'three.bin', 'application/octet-stream', crypto.randomBytes(MAX_BYTES - 1000));
    const overQuota = attachment(alice, 'three.bin').and(alice.locator('[data-state="failed"]'));
    await overQuota.waitFor();
    assert.match(await overQuota.textContent(), /storage on this server is full/);
    assert.equal(frames.sent.filter((frame) => frame?.type === 'send').length, sendsBefore, 'nothing was sent');
  });

  test('no page had an uncaught error', () => {
    assert.deepEqual(alice.errors.map(String), []);
    assert.deepEqual(bob.errors.map(String), []);
  });
});
