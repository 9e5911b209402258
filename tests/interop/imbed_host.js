// Shared by the Node interop tests: starting the example host and a client
// whose frames queue up until a test takes them.
'use strict';
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const WebSocket = require('ws');

const HOST_BINARY = process.env.IMBED_HOST || path.resolve(__dirname, '..', '..', 'build', 'imbed-host');
// One reply on loopback takes milliseconds; these only trip on a hung server.
const REPLY_TIMEOUT_MS = 5000;
const STARTUP_TIMEOUT_MS = 10000;
const SHUTDOWN_TIMEOUT_MS = 10000;
const TEST_TIMEOUT_MS = 30000;
const CLOCK_TOLERANCE_MS = 60000;

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Starts imbed-host on a free loopback port; resolves to the process and its URL.
function startHost() {
  const child = spawn(HOST_BINARY, ['--listen', '127.0.0.1:0', '--db', ':memory:', '--dev-auth'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const firstLine = new Promise((resolve, reject) => {
    child.on('error', reject);
    readline.createInterface({ input: child.stdout }).once('line', resolve);
    exited.then(({ code }) => reject(new Error(`imbed-host exited with ${code} before listening`)));
  });
  return withTimeout(firstLine, STARTUP_TIMEOUT_MS, 'the listening line').then((line) => {
    const match = /^listening on (ws:\/\/127\.0\.0\.1:\d+\/ws)$/.exec(line);
    assert.ok(match, `unexpected first line from imbed-host: ${line}`);
    return { child, exited, url: match[1] };
  });
}

// A connected client whose incoming frames queue up until a test takes them.
class Client {
  constructor(url, user) {
    this.user = user;
    this.ws = new WebSocket(`${url}?token=${encodeURIComponent(user)}`, { perMessageDeflate: false });
    this.frames = [];
    this.failure = null;
    this.waiters = [];
    const wakeAll = () => this.waiters.splice(0).forEach((wake) => wake());
    this.ws.on('message', (data, isBinary) => {
      if (isBinary) this.failure = new Error('server sent a binary frame');
      else this.frames.push(JSON.parse(data.toString('utf8')));
      wakeAll();
    });
    this.ws.on('error', (err) => {
      this.failure = err;
      wakeAll();
    });
  }

  // Opens a connection as user and checks the welcome.
  static async login(url, user) {
    const client = new Client(url, user);
    const welcome = await client.next();
    assert.equal(welcome.type, 'welcome');
    assert.equal(welcome.user, user);
    assert.equal(typeof welcome.session, 'string');
    assert.ok(Math.abs(welcome.server_time - Date.now()) < CLOCK_TOLERANCE_MS);
    return client;
  }

  // The next frame from the server, in arrival order.
  next() {
    const waitForFrame = () => {
      if (this.failure) return Promise.reject(this.failure);
      if (this.frames.length > 0) return Promise.resolve(this.frames.shift());
      return new Promise((wake) => this.waiters.push(wake)).then(waitForFrame);
    };
    return withTimeout(waitForFrame(), REPLY_TIMEOUT_MS, `a frame for ${this.user}`);
  }

  sendFrame(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  // Sends a request and returns the next frame, its reply.
  async request(frame) {
    this.sendFrame(frame);
    return this.next();
  }

  // Sends a direct message and returns its ack, checking its shape.
  async sendMessage(id, to, body) {
    this.sendFrame({ type: 'send', id, to, body });
    const ack = await this.next();
    assert.equal(ack.type, 'ack');
    assert.equal(ack.id, id);
    assert.ok(Number.isInteger(ack.ts) && Math.abs(ack.ts - Date.now()) < CLOCK_TOLERANCE_MS);
    return ack;
  }

  close() {
    const closed = new Promise((resolve) => this.ws.once('close', resolve));
    this.ws.close(1000);
    return withTimeout(closed, REPLY_TIMEOUT_MS, 'the close handshake');
  }
}

module.exports = { Client, startHost, withTimeout, SHUTDOWN_TIMEOUT_MS, TEST_TIMEOUT_MS };
