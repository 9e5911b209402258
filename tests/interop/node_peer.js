// A one-shot Node `ws` client for the cross-language test in test_python_clients.py.
//
// usage: node node_peer.js WS_URL USER TO FRAMES [TIMEOUT_MS]
//
// Logs in as USER (dev auth, ?token=USER), sends one message with id "node-1"
// to TO once welcomed, prints every frame it receives as one JSON line, and
// after FRAMES frames closes with 1000 and exits 0 once the close completes.
// Exits 1 if TIMEOUT_MS (default 10000) passes first, 2 if the connection
// fails or closes before FRAMES frames.
'use strict';
const WebSocket = require('ws');

const [url, user, to, framesArg, timeoutArg] = process.argv.slice(2);
if (!url || !user || !to || !framesArg) {
  console.error('usage: node node_peer.js WS_URL USER TO FRAMES [TIMEOUT_MS]');
  process.exit(64);
}
const wantedFrames = Number(framesArg);
const timeoutMs = Number(timeoutArg || 10000);
let received = 0;

setTimeout(() => {
  console.error(`node_peer: not done within ${timeoutMs} ms (${received} of ${wantedFrames} frames)`);
  process.exit(1);
}, timeoutMs);

const ws = new WebSocket(`${url}?token=${encodeURIComponent(user)}`, { perMessageDeflate: false });

ws.on('message', (data, isBinary) => {
  if (isBinary) {
    console.error('node_peer: server sent a binary frame');
    process.exit(2);
  }
  const frame = JSON.parse(data.toString('utf8'));
  process.stdout.write(JSON.stringify(frame) + '\n');
  if (frame.type === 'welcome') {
    ws.send(JSON.stringify({ type: 'send', id: 'node-1', to, body: { text: `hello ${to} from node` } }));
  }
  received += 1;
  if (received === wantedFrames) ws.close(1000);
});

ws.on('close', (code) => {
  if (received < wantedFrames) {
    console.error(`node_peer: closed with ${code} after ${received} of ${wantedFrames} frames`);
    process.exit(2);
  }
  process.exit(0);
});

ws.on('error', (err) => {
  console.error(`node_peer: ${err.message}`);
  process.exit(2);
});
