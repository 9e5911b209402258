// A WebSocket client on a bare TCP socket, for tests that must send faster
// than a browser: a thousand frames go out in one write. Text frames only;
// it answers pings and ignores everything else a client of imbed never gets.
'use strict';
const crypto = require('node:crypto');
const net = require('node:net');

const OPCODE_TEXT = 0x1;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

// One client frame: FIN, the opcode, masked as RFC 6455 requires of clients.
function encodeFrame(opcode, payload) {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const header = Buffer.alloc(2 + lengthBytes + 4);
  header[0] = 0x80 | opcode;
  if (lengthBytes === 0) header[1] = 0x80 | length;
  else if (lengthBytes === 2) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  const mask = crypto.randomBytes(4);
  mask.copy(header, 2 + lengthBytes);
  const masked = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) masked[index] = payload[index] ^ mask[index & 3];
  return Buffer.concat([header, masked]);
}

// Server frames are unmasked; returns the frames complete in `buffer` and
// the bytes left over.
function decodeFrames(buffer) {
  const frames = [];
  let offset = 0;
  while (buffer.length - offset >= 2) {
    const opcode = buffer[offset] & 0x0f;
    let length = buffer[offset + 1] & 0x7f;
    let header = 2;
    if (length === 126) {
      if (buffer.length - offset < 4) break;
      length = buffer.readUInt16BE(offset + 2);
      header = 4;
    } else if (length === 127) {
      if (buffer.length - offset < 10) break;
      length = Number(buffer.readBigUInt64BE(offset + 2));
      header = 10;
    }
    if (buffer.length - offset < header + length) break;
    frames.push({ opcode, payload: buffer.subarray(offset + header, offset + header + length) });
    offset += header + length;
  }
  return { frames, rest: buffer.subarray(offset) };
}

class RawClient {
  #socket;
  #received = Buffer.alloc(0);
  #onText;

  constructor(socket, leftover, onText) {
    this.#socket = socket;
    this.#onText = onText;
    socket.on('data', (chunk) => this.#receive(chunk));
    if (leftover.length) this.#receive(leftover);
  }

  // Connects to ws://127.0.0.1:port/ws as `user` (dev auth: the name is the
  // token, in the Authorization header). onText(text) gets the text of every
  // frame from the server, the welcome first: a client that gets thousands
  // can skip parsing those it does not need.
  static connect(port, user, onText) {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.write(
          [
            'GET /ws HTTP/1.1',
            `Host: 127.0.0.1:${port}`,
            'Upgrade: websocket',
            'Connection: Upgrade',
            `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}`,
            'Sec-WebSocket-Version: 13',
            `Authorization: Bearer ${user}`,
            '',
            '',
          ].join('\r\n'),
        );
      });
      let response = Buffer.alloc(0);
      const readHandshake = (chunk) => {
        response = Buffer.concat([response, chunk]);
        const end = response.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', readHandshake);
        const status = response.subarray(0, response.indexOf('\r\n')).toString();
        if (!status.startsWith('HTTP/1.1 101')) {
          socket.destroy();
          reject(new Error(`the upgrade of ${user} was refused: ${status}`));
          return;
        }
        resolve(new RawClient(socket, response.subarray(end + 4), onText));
      };
      socket.on('data', readHandshake);
    });
  }

  // Sends every frame of `frames` in one write.
  send(...frames) {
    this.#socket.write(Buffer.concat(frames.map((frame) => encodeFrame(OPCODE_TEXT, Buffer.from(JSON.stringify(frame))))));
  }

  close() {
    this.#socket.end(encodeFrame(OPCODE_CLOSE, Buffer.from([0x03, 0xe8])));
  }

  #receive(chunk) {
    const { frames, rest } = decodeFrames(Buffer.concat([this.#received, chunk]));
    this.#received = rest;
    for (const { opcode, payload } of frames) {
      if (opcode === OPCODE_TEXT) this.#onText(payload.toString());
      else if (opcode === OPCODE_PING) this.#socket.write(encodeFrame(OPCODE_PONG, payload));
    }
  }
}

module.exports = { RawClient };
