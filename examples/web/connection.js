// The page's WebSocket to the imbed server: authentication by the first
// frame, requests matched to their replies by id, reconnection with backoff
// and jitter, and a liveness check that notices a dead network the browser
// would not report for minutes.

const RECONNECT_BASE_MS = 500;
const RECONNECT_MAX_MS = 15000;
const REPLY_TIMEOUT_MS = 10000;
const LIVENESS_INTERVAL_MS = 25000;
// An application close code (4000-4999 are free for private use).
const CLOSE_NO_PONG = 4000;

// Close codes after which reconnecting with the same token cannot help.
const FINAL_CLOSES = new Map([
  [1008, 'The server refused this name'],
  [4001, 'The server signed you out'],
]);

// The server answered a request with an `error` frame.
export class ServerError extends Error {
  constructor(frame) {
    super(frame.message || frame.code);
    this.code = frame.code;
  }
}

// A request that got no reply: the connection closed or the reply is late.
// Whatever it asked for may or may not have happened.
export class NoReply extends Error {}

// Random jitter spreads the reconnects of many pages after a server restart.
function backoffMs(attempt) {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

export class Connection {
  #url;
  #token;
  #device;
  #handlers;
  #socket = null;
  #replyWaiters = new Map();
  #nextRequestNumber = 1;
  #failedAttempts = 0;
  #retryTimer = null;
  #livenessTimer = null;
  #stopped = false;

  // url: the server's /ws, without credentials; token: what the `auth`
  // frame carries, with device when given. handlers: onWelcome(frame),
  // onFrame(frame) for every frame that is not a reply to a request,
  // onState(state) on every change of `state`.
  constructor(url, token, handlers, { device } = {}) {
    this.#url = url;
    this.#token = token;
    this.#device = device;
    this.#handlers = handlers;
    // name: 'connecting' | 'online' | 'waiting' (retryAt) | 'stopped' (reason).
    this.state = { name: 'connecting' };
  }

  get online() {
    return this.state.name === 'online';
  }

  start() {
    this.#stopped = false;
    this.#open();
  }

  // Closes for good: the user signed out.
  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#socket?.close(1000, 'signed out');
    this.#setState({ name: 'stopped', reason: '' });
  }

  // Skips the rest of the backoff wait, for a user who clicks "retry now"
  // or a browser that reports the network is back.
  reconnectNow() {
    if (this.state.name === 'waiting') this.#open();
  }

  // Sends a frame that expects no reply; false when there is no connection.
  send(frame) {
    if (!this.online) return false;
    this.#socket.send(JSON.stringify(frame));
    return true;
  }

  // Sends a request and resolves to its reply, or rejects with ServerError
  // or NoReply. A caller that needs a particular id (a message's
  // idempotency key) passes it in the frame.
  request(frame) {
    if (!this.online) return Promise.reject(new NoReply('not connected'));
    const id = frame.id ?? `q-${this.#nextRequestNumber++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#replyWaiters.delete(id);
        reject(new NoReply(`no reply to ${frame.type} within ${REPLY_TIMEOUT_MS} ms`));
      }, REPLY_TIMEOUT_MS);
      this.#replyWaiters.set(id, { resolve, reject, timer });
      this.#socket.send(JSON.stringify({ ...frame, id }));
    });
  }

  #open() {
    clearTimeout(this.#retryTimer);
    this.#setState({ name: 'connecting' });
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    // The server answers nothing before the `auth` frame, and closes with
    // 1008 when the token is refused.
    const auth = { type: 'auth', token: this.#token };
    if (this.#device) auth.device = this.#device;
    socket.addEventListener('open', () => socket.send(JSON.stringify(auth)));
    socket.addEventListener('message', (event) => this.#receive(event.data));
    // An `error` event is always followed by `close`, which handles both.
    socket.addEventListener('close', (event) => this.#closed(socket, event.code, event.reason));
  }

  #receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      console.warn('imbed: ignoring a frame that is not JSON', text);
      return;
    }
    if (frame.type === 'welcome') {
      this.#failedAttempts = 0;
      this.#setState({ name: 'online' });
      this.#startLivenessCheck();
      this.#handlers.onWelcome(frame);
      return;
    }
    // A `msg` carries its sender's message id, which is not a request id of ours.
    const waiter = frame.type !== 'msg' && frame.id !== undefined && this.#replyWaiters.get(frame.id);
    if (!waiter) {
      this.#handlers.onFrame(frame);
      return;
    }
    this.#replyWaiters.delete(frame.id);
    clearTimeout(waiter.timer);
    if (frame.type === 'error') waiter.reject(new ServerError(frame));
    else waiter.resolve(frame);
  }

  #closed(socket, code, reason) {
    if (socket !== this.#socket) return;
    this.#socket = null;
    clearInterval(this.#livenessTimer);
    for (const waiter of this.#replyWaiters.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new NoReply(`connection closed (${code})`));
    }
    this.#replyWaiters.clear();
    if (this.#stopped) return;
    const finalReason = FINAL_CLOSES.get(code);
    if (finalReason) {
      this.#stopped = true;
      this.#setState({ name: 'stopped', reason: reason ? `${finalReason}: ${reason}` : finalReason });
      return;
    }
    const delay = backoffMs(this.#failedAttempts++);
    this.#setState({ name: 'waiting', retryAt: Date.now() + delay });
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }

  // The server pings at the WebSocket level, but the browser answers those
  // without telling the page; an application ping proves the path works.
  #startLivenessCheck() {
    clearInterval(this.#livenessTimer);
    this.#livenessTimer = setInterval(() => {
      const socket = this.#socket;
      this.request({ type: 'ping' }).catch((error) => {
        if (!(error instanceof NoReply) || socket !== this.#socket) return;
        // A dead TCP path never completes the closing handshake: give up on
        // the socket now instead of waiting for its close event.
        socket.close(CLOSE_NO_PONG, 'no pong');
        this.#closed(socket, CLOSE_NO_PONG, 'no pong');
      });
    }, LIVENESS_INTERVAL_MS);
  }

  #setState(state) {
    this.state = state;
    this.#handlers.onState(state);
  }
}
