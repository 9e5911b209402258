// Shared by the web chat test and the README screenshot: the example host
// serving the page, headless Chromium, and a signed-in page per user.
'use strict';
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const HOST_BINARY = process.env.IMBED_HOST || path.join(REPO_ROOT, 'build', 'imbed-host');
// IMBED_WEB_ROOT: another copy of the page, say an older one to measure against.
const WEB_ROOT = process.env.IMBED_WEB_ROOT || path.join(REPO_ROOT, 'examples', 'web');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(__dirname, 'artifacts');
// Loopback answers in milliseconds; these only trip on something hung.
const STARTUP_TIMEOUT_MS = 10000;
const SHUTDOWN_TIMEOUT_MS = 10000;
const PAGE_TIMEOUT_MS = 10000;

// Hosts still running when this process exits (a failed assertion, an
// exception) are killed: the host keeps serving when its stdin closes.
const runningHosts = new Set();
process.on('exit', () => runningHosts.forEach((child) => child.kill('SIGKILL')));

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A directory for one run's SQLite file, removed by cleanup().
function makeScratchDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imbed-web-'));
  return { dir, db: path.join(dir, 'chat.db'), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

// Starts imbed-host serving examples/web, with dev auth and a SQLite file.
// port 0 picks a free one; a restart passes the port it had so that open
// pages find it again. extraArgs: more flags, such as --push or --config.
async function startHost({ db, port = 0, extraArgs = [] }) {
  const args = ['--listen', `127.0.0.1:${port}`, '--dev-auth', '--db', db, '--web', WEB_ROOT, '--log-level', 'warn', ...extraArgs];
  const child = spawn(HOST_BINARY, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  runningHosts.add(child);
  const exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      runningHosts.delete(child);
      resolve({ code, signal });
    }),
  );
  const lines = readline.createInterface({ input: child.stdout });
  const firstLine = new Promise((resolve, reject) => {
    child.on('error', reject);
    lines.once('line', resolve);
    exited.then(({ code }) => reject(new Error(`imbed-host exited with ${code} before listening`)));
  });
  const line = await withTimeout(firstLine, STARTUP_TIMEOUT_MS, 'the listening line of imbed-host');
  const match = /^listening on ws:\/\/127\.0\.0\.1:(\d+)\/ws$/.exec(line);
  assert.ok(match, `unexpected first line from imbed-host: ${line}`);
  // After the first line, the host prints one JSON event per line; waiters
  // take the ones they match, and the rest are read only to keep the pipe
  // draining.
  const eventWaiters = new Set();
  lines.on('line', (text) => {
    let event;
    try {
      event = JSON.parse(text);
    } catch {
      return;
    }
    for (const waiter of eventWaiters) if (waiter.matches(event)) waiter.resolve(event);
  });
  const listenPort = Number(match[1]);
  return {
    port: listenPort,
    pageUrl: `http://127.0.0.1:${listenPort}/`,
    // A console command on the host's stdin, such as `group team {"text":"hi"}`.
    command(text) {
      child.stdin.write(`${text}\n`);
    },
    // The next event line for which matches(event) is true.
    nextEvent(matches, what) {
      const waiter = { matches };
      const found = new Promise((resolve) => {
        waiter.resolve = resolve;
        eventWaiters.add(waiter);
      });
      return withTimeout(found, STARTUP_TIMEOUT_MS, what).finally(() => eventWaiters.delete(waiter));
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin.end('quit\n');
      try {
        const { code } = await withTimeout(exited, SHUTDOWN_TIMEOUT_MS, 'imbed-host to quit');
        assert.equal(code, 0, 'imbed-host exit status');
      } catch (error) {
        child.kill('SIGKILL');
        throw error;
      }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true });
}

// A page in its own browser context (its own localStorage: one user each),
// that records the page's uncaught errors and the errors it reports itself
// (prefixed "imbed:"), so a test can assert there were none. Chromium's own
// lines about refused connections while the server restarts are expected.
async function openPage(browser, url, viewport = { width: 1100, height: 720 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);
  page.errors = [];
  page.on('pageerror', (error) => page.errors.push(error));
  page.on('console', (message) => {
    if (message.type() === 'error' && message.text().startsWith('imbed:')) page.errors.push(new Error(message.text()));
  });
  await page.goto(url);
  return page;
}

async function signIn(page, user) {
  await page.getByLabel('Your name').fill(user);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#connection[data-state="online"]').waitFor();
}

async function openDirectChat(page, peer) {
  await page.getByLabel('Start a chat').fill(peer);
  await page.getByRole('button', { name: 'Message', exact: true }).click();
  await page.locator('#conversation-title', { hasText: peer }).waitFor();
}

async function joinGroup(page, group) {
  await page.getByLabel('Start a chat').fill(group);
  await page.getByRole('button', { name: 'Join group' }).click();
  await page.locator('#conversation-title', { hasText: group }).waitFor();
}

async function openConversation(page, conversationId) {
  await page.locator(`#conversation-list li[data-conv="${conversationId}"] button`).click();
  await page.locator(`#conversation-list li[data-conv="${conversationId}"] button[aria-current="page"]`).waitFor();
}

// Types like a person (so the page sends typing frames) and presses Enter.
async function sendMessage(page, text) {
  await page.getByLabel('Message', { exact: true }).pressSequentially(text);
  await page.keyboard.press('Enter');
}

// The message in the open conversation whose text is exactly `text`.
function messageLocator(page, text) {
  return page.locator('#message-list li.message').filter({ has: page.locator('.message-body').getByText(text, { exact: true }) });
}

// The message `seq` of the open conversation.
function messageRow(page, seq) {
  return page.locator(`#message-list li.message[data-seq="${seq}"]`);
}

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
async function eventually(list, matches, what, timeoutMs = PAGE_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = list().find((item) => item && matches(item));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function reloadPage(page) {
  await page.reload();
  await page.locator('#connection[data-state="online"]').waitFor();
}

async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

module.exports = {
  REPO_ROOT,
  joinGroup,
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
};
