// The imbed web chat: signs in with dev auth, keeps one connection to the
// server it was loaded from, and catches up after every reconnect with the
// protocol's sync (docs/PROTOCOL.md). README.md describes the page: its
// ticks (✓ stored, read by some, read by all), its device frames, replies,
// edits, deletes and reactions, search, and files.
import { ChatState, ID_PATTERN, directConversationId, groupConversationId, newMessageId } from './chat-state.js';
import { Composer } from './composer.js';
import { Connection, NoReply, ServerError } from './connection.js';
import { FileUrls, filesOf, messageBody } from './files.js';
import { QUICK_REACTIONS, hasReacted } from './message-events.js';
import { MessageItems } from './message-items.js';
import { MessageListView } from './message-list-view.js';
import { avatar, conversationRow, messageText, previewText, reconcileChildren, searchResultRow, typingText } from './render.js';
import { SearchResults, queryProblem } from './search.js';
import { PagedSync } from './sync-pages.js';

const USER_KEY = 'imbed.user';
// This browser's device id (spec: Devices), kept across reloads and
// sign-outs and shared by its tabs: one browser is one device.
const DEVICE_KEY = 'imbed.device';
const HISTORY_PAGE = 50;
const SYNC_LIMIT = 100;
// Past this many syncs of one page of conversations (sync-pages.js) a
// conversation still `more` is far behind: it skips to its newest message
// and history pages the rest back in when wanted.
const MAX_SYNC_ROUNDS = 5;
// The server relays at most 5 typing frames per second; one every 2 s is
// plenty for an indicator that stays up for 3 s.
const TYPING_SEND_INTERVAL_MS = 2000;
const INTERNAL_RETRY_MS = 3000;
const NOTICE_SHOWN_MS = 6000;
// Going to a message (a search result, a quote) loads the history between
// it and what the page holds: pages of up to 1000 (the server's most), at
// most this many of them.
const REVEAL_PAGE = 1000;
const MAX_REVEAL_PAGES = 10;
// Presence: a session may watch limits.max_watches users (1000 by default;
// the server refuses a whole `watch` past it), and a batch of 500 ids of 64
// characters is a 34 KB frame, well under limits.max_frame_bytes (64 KiB).
const MAX_WATCHES = 1000;
const WATCH_BATCH = 500;
// A hidden tab runs no animation frames; its title still counts unread.
const HIDDEN_RENDER_DELAY_MS = 250;
// Read positions in groups above receipts.max_group_size come from `reads`
// requests, this many a page, for at most this many pages (their count is
// then a lower bound).
const READS_PAGE = 1000;
const MAX_READS_PAGES = 10;

const byId = (id) => document.getElementById(id);
const ui = {
  signIn: byId('sign-in'),
  signInForm: byId('sign-in-form'),
  signInName: byId('sign-in-name'),
  signInError: byId('sign-in-error'),
  chat: byId('chat'),
  connection: byId('connection'),
  connectionText: byId('connection-text'),
  connectionRetry: byId('connection-retry'),
  reconnect: byId('reconnect'),
  newChat: byId('new-chat'),
  newChatName: byId('new-chat-name'),
  newChatError: byId('new-chat-error'),
  search: byId('search'),
  searchQuery: byId('search-query'),
  searchError: byId('search-error'),
  searchResults: byId('search-results'),
  searchSummary: byId('search-summary'),
  searchClose: byId('search-close'),
  searchResultList: byId('search-result-list'),
  searchMore: byId('search-more'),
  conversationNav: byId('conversation-nav'),
  conversationList: byId('conversation-list'),
  noConversations: byId('no-conversations'),
  meAvatar: byId('me-avatar'),
  meName: byId('me-name'),
  signOut: byId('sign-out'),
  emptyState: byId('empty-state'),
  conversationPane: byId('conversation-pane'),
  back: byId('back'),
  conversationAvatar: byId('conversation-avatar'),
  conversationTitle: byId('conversation-title'),
  conversationSubtitle: byId('conversation-subtitle'),
  leaveGroup: byId('leave-group'),
  messageScroller: byId('message-scroller'),
  loadOlder: byId('load-older'),
  messageList: byId('message-list'),
  arrivals: byId('arrivals'),
  typing: byId('typing'),
  composer: byId('composer'),
  composerText: byId('composer-text'),
  composerContext: byId('composer-context'),
  composerContextText: byId('composer-context-text'),
  composerContextCancel: byId('composer-context-cancel'),
  composerFiles: byId('composer-files'),
  attach: byId('attach'),
  composerFile: byId('composer-file'),
  reactionPicker: byId('reaction-picker'),
  deleteDialog: byId('delete-dialog'),
  notice: byId('notice'),
};

// No token in the URL: URLs end up in logs and proxies. The connection
// authenticates with its first frame instead. The URL names the device
// (not a secret): the server keeps each device's sessions together, and
// sends push requests for a user none of whose sessions is in the foreground.
// The `auth` frame names it too: imbed df91721 drops `?device=` when the
// token comes in the first frame, and takes the frame's `device` instead.
function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws?device=${encodeURIComponent(deviceId())}`;
}

// The id kept in localStorage, made on first use: `web-` and 16 hex digits,
// which device-id rules ([A-Za-z0-9_.@-], 1 to 64) accept. Without storage,
// one for the life of the page.
let pageDeviceId = null;

function deviceId() {
  if (pageDeviceId) return pageDeviceId;
  const random = crypto.getRandomValues(new Uint8Array(8));
  const fresh = `web-${Array.from(random, (byte) => byte.toString(16).padStart(2, '0')).join('')}`;
  try {
    const kept = localStorage.getItem(DEVICE_KEY);
    if (kept && ID_PATTERN.test(kept)) pageDeviceId = kept;
    else {
      localStorage.setItem(DEVICE_KEY, fresh);
      pageDeviceId = fresh;
    }
  } catch {
    pageDeviceId = fresh;
  }
  return pageDeviceId;
}

// Live regions announce every write, so only a change is written.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function isVisible() {
  return document.visibilityState === 'visible';
}

// A conversation id from the URL, accepted only when it can be this user's.
function conversationFromHash(me) {
  const id = decodeURIComponent(location.hash.slice(1));
  const [kind, first, second] = id.split(':');
  if (kind === 'g' && ID_PATTERN.test(first ?? '') && second === undefined) return id;
  if (kind === 'dm' && [first, second].includes(me) && [first, second].every((part) => ID_PATTERN.test(part ?? ''))) {
    return directConversationId(first, second);
  }
  return null;
}

let noticeTimer = null;

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (ui.notice.hidden = true), NOTICE_SHOWN_MS);
}

// A failure worth telling the user about. NoReply is not: the connection
// dropped, and the next catch-up redoes the work.
function reportFailure(error) {
  if (error instanceof NoReply) return;
  console.error('imbed:', error);
  showNotice(error instanceof ServerError ? `The server said: ${error.message}` : String(error));
}

// One signed-in user: the state, the connection, and everything that
// happens on it.
class ChatSession {
  #syncer;
  #inFlight = new Set();
  // Conversation id -> the history request on its way.
  #loadingPages = new Map();
  // `${conv} ${seq} ${emoji}` of reactions on their way, so that a double
  // click does not send a second react before the first is applied.
  #reactionsInFlight = new Set();
  #lastTypingSent = new Map();
  #readsInFlight = new Set();
  // The device state this session's server last heard ('foreground' or
  // 'background'), or null when unknown (a request failed).
  #deviceState = 'foreground';
  // False once the server refused a `reads` request (an older server).
  #readsAnswered = true;

  constructor(user) {
    this.state = new ChatState(user);
    this.activeId = null;
    // Dev auth: the name is the token, for the WebSocket and for /files.
    this.token = user;
    this.files = new FileUrls(this.token);
    this.search = new SearchResults();
    // { conv, seq } of a message to scroll to once it is rendered.
    this.pendingReveal = null;
    this.connection = new Connection(
      socketUrl(),
      this.token,
      {
        onWelcome: () => this.#welcomed(),
        onFrame: (frame) => this.#handleFrame(frame),
        onState: (state) => this.#onConnectionState(state),
      },
      { device: deviceId() },
    );
    this.#syncer = new PagedSync({
      cursors: () => this.state.cursors(),
      request: (fields) => this.#syncPage(fields),
      skip: (behind) => behind.forEach(([id, lastSeq]) => this.state.conversation(id).skipTo(lastSeq)),
      maxRepeats: MAX_SYNC_ROUNDS,
    });
  }

  get me() {
    return this.state.me;
  }

  get active() {
    return this.state.conversations.get(this.activeId) ?? null;
  }

  start() {
    this.connection.start();
  }

  stop() {
    this.connection.stop();
    this.files.clear();
  }

  // Presence is known only while connected: the watches end with the session.
  #onConnectionState(state) {
    if (state.name !== 'online') {
      this.state.online.clear();
      this.state.watched.clear();
    }
    view.update();
  }

  // A new session starts in the foreground; a hidden page says at once
  // that it is not, before catching up.
  #welcomed() {
    this.#deviceState = 'foreground';
    this.reportDeviceState();
    this.#catchUp();
  }

  // Tells the server whether the page is visible: `device` foreground or
  // background (spec: Devices). A user whose sessions are all in the
  // background gets push requests for new messages. Called on every
  // visibilitychange and welcome; sends only a change.
  reportDeviceState() {
    const state = isVisible() ? 'foreground' : 'background';
    if (state === this.#deviceState || !this.connection.online) return;
    this.#deviceState = state;
    this.connection.request({ type: 'device', state }).catch((error) => {
      // Sent again on the next change or welcome.
      if (this.#deviceState === state) this.#deviceState = null;
      // A server older than devices refuses the frame type: nothing to tell.
      if (!(error instanceof ServerError && error.code === 'bad_request')) reportFailure(error);
    });
  }

  // After every welcome: the conversation list, presence, everything missed
  // while away, then the messages that were waiting for a connection.
  async #catchUp() {
    try {
      await this.#refreshConversations();
      // The open group may be one the user left while away.
      if (this.activeId && !this.active) this.close();
      await this.sync();
      // The open chat's peer first: past MAX_WATCHES peers, the rest show no dot.
      await this.#watch([this.active?.peer, ...this.state.directPeers()].filter(Boolean));
      this.#resendOutbox();
      await this.#prepareActive();
      await this.#loadNewestPages();
    } catch (error) {
      reportFailure(error);
    }
  }

  // The whole list, page by page (`next`): a group missing from it is
  // dropped. Its entries carry the other members' read positions (`reads`),
  // which a sync then replays as `read` frames too: ticks are right after a
  // reload.
  async #refreshConversations() {
    const entries = [];
    let after = null;
    for (;;) {
      const request = { type: 'conversations' };
      if (after !== null) request.after = after;
      const reply = await this.connection.request(request);
      entries.push(...reply.conversations);
      // A `next` that does not move forward would never end.
      if (typeof reply.next !== 'string' || (after !== null && reply.next <= after)) break;
      after = reply.next;
    }
    this.state.applyConversationList(entries);
    view.update();
  }

  // Everything missed, in pages of conversations (sync-pages.js). One sync
  // at a time (the server refuses a second); asking while one runs makes it
  // go round once more.
  sync() {
    return this.#syncer.sync();
  }

  // One page's `sync`; its `msg` frames came before the `synced`.
  async #syncPage(fields) {
    const reply = await this.connection.request({ type: 'sync', ...fields, limit: SYNC_LIMIT });
    for (const [id, summary] of Object.entries(reply.convs)) {
      const conversation = this.state.conversation(id);
      conversation.lastSeq = Math.max(conversation.lastSeq, summary.last_seq);
    }
    view.update();
    return reply;
  }

  // Watches the presence of as many of users as the session may.
  async #watch(users) {
    const room = Math.max(0, MAX_WATCHES - this.state.watched.size);
    const fresh = [...new Set(users)].filter((user) => user !== this.me && !this.state.watched.has(user)).slice(0, room);
    fresh.forEach((user) => this.state.watched.add(user));
    for (let start = 0; start < fresh.length; start += WATCH_BATCH) {
      let reply;
      try {
        reply = await this.connection.request({ type: 'watch', users: fresh.slice(start, start + WATCH_BATCH) });
      } catch (error) {
        // A host with a lower limits.max_watches: these users show no dot.
        if (!(error instanceof ServerError && error.code === 'bad_request')) throw error;
        fresh.slice(start).forEach((user) => this.state.watched.delete(user));
        return;
      }
      for (const [user, online] of Object.entries(reply.online)) this.state.online.set(user, online);
      view.update();
    }
  }

  // The newest page of every conversation the page holds nothing of, for
  // the sidebar's previews and order.
  async #loadNewestPages() {
    for (const conversation of [...this.state.conversations.values()]) {
      if (conversation.messages.size === 0) await this.#loadPage(conversation);
    }
  }

  // The page of messages just below what the conversation holds; while one
  // is on its way, that one.
  #loadPage(conversation, limit = HISTORY_PAGE) {
    const loading = this.#loadingPages.get(conversation.id);
    if (loading) return loading;
    if (!conversation.hasOlder || !this.connection.online) return Promise.resolve();
    const load = (async () => {
      try {
        const before = conversation.oldestSeq;
        const request = { type: 'history', conv: conversation.id, limit };
        if (before !== null) request.before = before;
        const reply = await this.connection.request(request);
        this.state.receivePage(conversation, reply.messages);
        this.#markRead(conversation);
      } finally {
        this.#loadingPages.delete(conversation.id);
        view.update();
      }
    })();
    this.#loadingPages.set(conversation.id, load);
    return load;
  }

  loadOlder() {
    if (this.active) this.#loadPage(this.active).catch(reportFailure);
  }

  // Opens the conversation and scrolls to its message `seq`, loading the
  // history between (a search result, the target of a reply). A message the
  // page cannot reach in MAX_REVEAL_PAGES pages is not gone to.
  async reveal(conversationId, seq) {
    if (this.activeId !== conversationId) this.open(conversationId);
    const conversation = this.active;
    try {
      for (let page = 0; page < MAX_REVEAL_PAGES && !conversation.heldAt(seq); page += 1) {
        const oldest = conversation.oldestSeq;
        if (!conversation.hasOlder || (oldest !== null && oldest <= seq)) break;
        const limit = oldest === null ? HISTORY_PAGE : Math.min(REVEAL_PAGE, Math.max(HISTORY_PAGE, oldest - seq + 10));
        await this.#loadPage(conversation, limit);
        if (conversation.oldestSeq === oldest) break;
      }
    } catch (error) {
      reportFailure(error);
    }
    if (this.activeId !== conversationId) return;
    if (!conversation.messages.has(seq)) {
      showNotice('That message is not available here any more.');
      return;
    }
    this.pendingReveal = { conv: conversationId, seq };
    view.update();
  }

  open(conversationId) {
    this.activeId = conversationId;
    this.state.conversation(conversationId);
    history.replaceState(null, '', `#${encodeURIComponent(conversationId)}`);
    view.update();
    this.#prepareActive();
  }

  close() {
    this.activeId = null;
    history.replaceState(null, '', location.pathname);
    view.update();
  }

  // What the open conversation needs: its peer's presence or its members,
  // its newest messages, a read receipt, and in a group the read positions
  // as they are now. Never rejects.
  async #prepareActive() {
    const conversation = this.active;
    if (!conversation) return;
    try {
      if (conversation.isGroup) await this.#loadMembers(conversation);
      else await this.#watch([conversation.peer]);
      if (conversation.messages.size === 0) await this.#loadPage(conversation);
      this.#markRead(conversation);
      if (conversation.isGroup) await this.#loadReads(conversation);
    } catch (error) {
      // A group from an old link that this user is not (or no longer) in.
      if (error instanceof ServerError && error.code === 'forbidden' && conversation.isGroup) {
        this.state.remove(conversation.id);
        if (this.activeId === conversation.id) this.close();
      }
      reportFailure(error);
    }
  }

  // Groups above receipts.max_group_size have no `reads` in their
  // `conversations` entry, no `read` frames in a sync and no live ones: the
  // page asks with `reads` when a group is opened (and after each reconnect
  // while it is open), and shows what that said until the next time. The
  // page does not know the size (a config key), and a group may grow past it
  // while the page runs, so it asks in every group: one request, in a small
  // group. Pages of READS_PAGE, at most MAX_READS_PAGES of them.
  async #loadReads(conversation) {
    if (!this.#readsAnswered) return;
    let after = null;
    for (let page = 0; page < MAX_READS_PAGES; page += 1) {
      const request = { type: 'reads', conv: conversation.id, limit: READS_PAGE };
      if (after !== null) request.after = after;
      let reply;
      try {
        reply = await this.connection.request(request);
      } catch (error) {
        // A server without `reads`: such groups show ✓ only.
        if (!(error instanceof ServerError && error.code === 'bad_request')) throw error;
        this.#readsAnswered = false;
        return;
      }
      if (reply.reads && typeof reply.reads === 'object') this.state.applyReads(conversation, reply.reads);
      view.update();
      if (typeof reply.next !== 'string' || (after !== null && reply.next <= after)) return;
      after = reply.next;
    }
  }

  async #loadMembers(conversation) {
    const reply = await this.connection.request({ type: 'members', group: conversation.group });
    conversation.members = reply.members;
    view.update();
  }

  openDirect(peer) {
    this.open(directConversationId(this.me, peer));
  }

  async joinGroup(group) {
    await this.connection.request({ type: 'join', group });
    await this.#refreshConversations();
    this.open(groupConversationId(group));
  }

  async leaveActiveGroup() {
    const conversation = this.active;
    if (!conversation?.isGroup) return;
    await this.connection.request({ type: 'leave', group: conversation.group });
    this.state.remove(conversation.id);
    this.close();
  }

  // A new message from the composer: its text, the files it attached
  // (uploaded already), and the seq it replies to, or null.
  sendMessage({ text, files = [], replyTo = null }) {
    const conversation = this.active;
    if (!conversation) return;
    const entry = this.state.outbox.add(conversation, messageBody(text, files), replyTo);
    // The message ends the indicator on the other side; typing on at once
    // must start it again.
    this.#lastTypingSent.delete(conversation.id);
    view.update({ scrollToBottom: true });
    this.#transmit(entry);
  }

  #resendOutbox() {
    this.state.outbox.entries.forEach((entry) => this.#transmit(entry));
  }

  // Sends one outbox entry. Without an ack it stays in the outbox and goes
  // again after the next reconnect, with the same id: the server
  // deduplicates, so it is stored once whatever happened to the first try.
  async #transmit(entry) {
    if (this.#inFlight.has(entry.id) || !this.connection.online) return;
    this.#inFlight.add(entry.id);
    const target = entry.group ? { group: entry.group } : { to: entry.to };
    const reply = entry.reply_to === undefined ? {} : { reply_to: entry.reply_to };
    try {
      const ack = await this.connection.request({ type: 'send', id: entry.id, ...target, body: entry.body, ...reply });
      const { conversation } = this.state.acknowledge(entry, ack);
      this.#markRead(conversation);
    } catch (error) {
      if (!(error instanceof ServerError)) {
        reportFailure(error);
        return;
      }
      if (error.code === 'internal') setTimeout(() => this.#transmit(entry), INTERNAL_RETRY_MS);
      else this.state.refuse(entry, error.message);
    } finally {
      this.#inFlight.delete(entry.id);
      view.update();
    }
  }

  // Edits the user's message `seq` of the open conversation: its text
  // changes, its files (and anything else in its body) stay.
  editMessage(seq, text) {
    const conversation = this.active;
    const message = conversation?.messages.get(seq);
    if (!message) return;
    // Deleted (on another device, say) while it was being edited.
    if (message.deleted === true) {
      showNotice('That message was deleted.');
      return;
    }
    const body = message.body && typeof message.body === 'object' && !Array.isArray(message.body) ? { ...message.body, text } : { text };
    this.#sendEvent(conversation, { type: 'edit', seq, body });
  }

  deleteMessage(seq) {
    const conversation = this.active;
    const message = conversation?.messages.get(seq);
    if (message && message.deleted !== true) this.#sendEvent(conversation, { type: 'delete', seq });
  }

  // Adds the user's reaction `emoji` to message `seq`, or takes it back.
  toggleReaction(seq, emoji) {
    const conversation = this.active;
    const message = conversation?.messages.get(seq);
    const key = `${conversation?.id} ${seq} ${emoji}`;
    if (!message || message.deleted === true || this.#reactionsInFlight.has(key)) return;
    this.#reactionsInFlight.add(key);
    const type = hasReacted(message, emoji, this.me) ? 'unreact' : 'react';
    this.#sendEvent(conversation, { type, seq, emoji }).finally(() => this.#reactionsInFlight.delete(key));
  }

  // Sends an event of the user's (edit, delete, react, unreact) and, on its
  // ack, applies it as the other sessions do with their `msg` of it. Events
  // are not kept in the outbox: one that cannot go now is reported, and the
  // user does it again.
  async #sendEvent(conversation, fields) {
    if (!this.connection.online) {
      showNotice('You are offline; try again when connected.');
      return;
    }
    const request = { ...fields, id: newMessageId(), conv: conversation.id };
    try {
      const ack = await this.connection.request(request);
      const { conversation: changed } = this.state.acknowledgeEvent(request, ack);
      this.#markRead(changed);
      if (changed.hasGap) this.sync().catch(reportFailure);
    } catch (error) {
      if (error instanceof NoReply) showNotice('No answer from the server; if it did not happen, try again.');
      else if (error instanceof ServerError && error.code === 'forbidden' && request.type === 'edit') showNotice('This message can no longer be edited.');
      else reportFailure(error);
    } finally {
      view.update();
    }
  }

  // Starts a search for `query` (search.js), or clears it when empty.
  runSearch(query) {
    if (query.trim() === '') {
      this.search.clear();
      view.update();
      return;
    }
    this.#searchPage(this.search.begin(query.trim()));
  }

  moreResults() {
    const page = this.search.nextPage();
    if (page) this.#searchPage(page);
  }

  async #searchPage({ fields, token }) {
    view.update();
    try {
      const reply = await this.connection.request({ type: 'search', ...fields });
      this.search.accept(token, reply);
    } catch (error) {
      const message = error instanceof NoReply ? 'You are offline; try again when connected.' : error instanceof ServerError ? error.message : String(error);
      this.search.fail(token, message);
    } finally {
      view.update();
    }
  }

  noteComposing() {
    const conversation = this.active;
    if (!conversation || conversation.peer === this.me) return;
    const now = Date.now();
    if (now - (this.#lastTypingSent.get(conversation.id) ?? 0) < TYPING_SEND_INTERVAL_MS) return;
    if (this.connection.send({ type: 'typing', ...conversation.target })) this.#lastTypingSent.set(conversation.id, now);
  }

  markActiveRead() {
    if (this.active) this.#markRead(this.active);
  }

  // Notes what the user has seen: the count drops at once, and a `read`
  // receipt tells the server.
  #markRead(conversation) {
    const onScreen = conversation.id === this.activeId && isVisible();
    const seq = conversation.readableSeq(this.me, onScreen);
    if (seq <= conversation.readSeq || !this.connection.online) return;
    const confirmed = conversation.readSeq;
    conversation.readSeq = seq;
    view.update();
    this.#sendReads(conversation, confirmed);
  }

  // One receipt in flight per conversation, each for everything read when
  // it goes: a flood read as it arrives would otherwise cost one receipt per
  // message, past the server's rate limit. A receipt that fails puts the
  // count back to what the server has.
  async #sendReads(conversation, confirmed) {
    if (this.#readsInFlight.has(conversation.id)) return;
    this.#readsInFlight.add(conversation.id);
    try {
      while (conversation.readSeq > confirmed) {
        const seq = conversation.readSeq;
        await this.connection.request({ type: 'read', conv: conversation.id, seq });
        confirmed = seq;
      }
    } catch (error) {
      conversation.readSeq = Math.min(conversation.readSeq, confirmed);
      reportFailure(error);
      view.update();
    } finally {
      this.#readsInFlight.delete(conversation.id);
    }
  }

  #handleFrame(frame) {
    switch (frame.type) {
      case 'msg':
        this.#onMessage(frame);
        break;
      case 'ack':
        this.#onLateAck(frame);
        break;
      case 'read':
        this.state.applyRead(frame);
        break;
      case 'typing':
        this.#onTyping(frame);
        break;
      case 'presence':
        this.state.online.set(frame.user, frame.online);
        break;
      case 'member':
        this.#onMember(frame);
        break;
      case 'error':
        this.#onError(frame);
        break;
      default:
        // The protocol lets servers add frame types; older clients ignore them.
        break;
    }
    view.update();
  }

  #onMessage(msg) {
    const isNewConversation = !this.state.conversations.has(msg.conv);
    const { conversation, added } = this.state.receive(msg);
    if (!added) return;
    if (conversation.hasGap) this.sync().catch(reportFailure);
    if (isNewConversation && !conversation.isGroup) this.#watch([conversation.peer]).catch(reportFailure);
    this.#markRead(conversation);
  }

  // The ack of a send whose request timed out: the message is stored after all.
  #onLateAck(ack) {
    const entry = this.state.outbox.entries.find((candidate) => candidate.id === ack.id);
    if (entry) this.state.acknowledge(entry, ack);
  }

  #onTyping(frame) {
    const until = this.state.applyTyping(frame, Date.now());
    setTimeout(() => view.update(), until - Date.now() + 50);
  }

  #onMember({ group, user, joined }) {
    const id = groupConversationId(group);
    if (user === this.me) {
      if (joined) this.#refreshConversations().then(() => this.#loadNewestPages()).catch(reportFailure);
      else if (this.state.conversations.has(id)) {
        this.state.remove(id);
        if (this.activeId === id) this.close();
      }
      return;
    }
    const conversation = this.state.conversations.get(id);
    if (!conversation?.members) return;
    const others = conversation.members.filter((member) => member !== user);
    conversation.members = joined ? [...others, user].sort() : others;
  }

  // An error without a request id. Typing faster than the server relays is
  // expected and harmless; anything else is worth a look.
  #onError(frame) {
    if (frame.code === 'rate_limited') return;
    reportFailure(new ServerError(frame));
  }
}

// Rendering, batched: any number of changes before the next animation frame
// draw once, so a flood of messages costs one render per frame, not one per
// message.
const messageListView = new MessageListView(ui.messageList, ui.messageScroller);
const view = {
  scheduled: false,
  scrollToBottom: false,
  countdown: null,
  afterRender: [],

  update({ scrollToBottom = false } = {}) {
    this.scrollToBottom ||= scrollToBottom;
    if (this.scheduled) return;
    this.scheduled = true;
    let frame = 0;
    let timer = 0;
    const run = () => {
      cancelAnimationFrame(frame);
      clearTimeout(timer);
      this.scheduled = false;
      const options = { scrollToBottom: this.scrollToBottom };
      this.scrollToBottom = false;
      render(options);
      this.afterRender.splice(0).forEach((callback) => callback());
    };
    frame = requestAnimationFrame(run);
    if (!isVisible()) timer = setTimeout(run, HIDDEN_RENDER_DELAY_MS);
  },
};

let session = null;

function render(options) {
  ui.signIn.hidden = session !== null;
  ui.chat.hidden = session === null;
  if (!session) {
    document.title = 'imbed chat';
    return;
  }
  const { name: connectionState, reason } = session.connection.state;
  if (connectionState === 'stopped' && reason) {
    signOut(reason);
    return;
  }
  const now = Date.now();
  renderConnection(now);
  renderSidebar(now);
  renderConversation(now, options);
  const unread = session.state.totalUnread();
  document.title = unread ? `(${unread}) imbed chat` : 'imbed chat';
}

function renderConnection(now) {
  const state = session.connection.state;
  const seconds = state.name === 'waiting' ? Math.max(1, Math.ceil((state.retryAt - now) / 1000)) : 0;
  const texts = { connecting: 'Connecting…', online: 'Connected', waiting: 'Offline', stopped: 'Signed out' };
  ui.connection.dataset.state = state.name;
  setText(ui.connectionText, texts[state.name]);
  // The countdown is for the eye: announced every second it would be noise.
  setText(ui.connectionRetry, state.name === 'waiting' ? `· retrying in ${seconds} s` : '');
  ui.reconnect.hidden = state.name !== 'waiting';
  // The countdown needs a tick while nothing else happens.
  if (state.name === 'waiting' && !view.countdown) {
    view.countdown = setInterval(() => view.update(), 1000);
  } else if (state.name !== 'waiting' && view.countdown) {
    clearInterval(view.countdown);
    view.countdown = null;
  }
}

// The sidebar's entries, kept across renders by conversation id.
const sidebarRows = new Map();

function renderSidebar(now) {
  const { state } = session;
  ui.meName.textContent = state.me;
  if (ui.meAvatar.dataset.user !== state.me) {
    ui.meAvatar.replaceChildren(avatar(state.me));
    ui.meAvatar.dataset.user = state.me;
  }
  const pending = state.pendingByConversation();
  const rows = state.sortedConversations(pending).map((conversation) => {
    const active = conversation.id === session.activeId;
    return conversationRow(
      conversation,
      {
        me: state.me,
        active,
        presence: conversation.isGroup ? undefined : state.online.get(conversation.peer),
        pending: pending.get(conversation.id)?.at(-1),
        typingUsers: conversation.typingUsers(now),
        showUnread: !(active && isVisible()),
        now,
      },
      (id) => session.open(id),
    );
  });
  // Rebuilding an entry must not throw a keyboard user's focus away.
  const focused = ui.conversationList.contains(document.activeElement) ? document.activeElement.closest('li').dataset.conv : null;
  reconcileChildren(ui.conversationList, rows, sidebarRows);
  if (focused && !ui.conversationList.contains(document.activeElement)) {
    ui.conversationList.querySelector(`li[data-conv="${CSS.escape(focused)}"] button`)?.focus();
  }
  ui.noConversations.hidden = rows.length > 0;
  renderSearch(now);
}

// The search results, in place of the conversation list while a search is on.
const searchRows = new Map();

function renderSearch(now) {
  const { search } = session;
  ui.searchResults.hidden = !search.active;
  ui.conversationNav.hidden = search.active;
  if (!search.active) {
    searchRows.clear();
    ui.searchResultList.replaceChildren();
    return;
  }
  const count = search.results.length;
  let summary;
  if (search.error) summary = `Search failed: ${search.error}`;
  else if (search.loading && count === 0) summary = 'Searching…';
  else if (count === 0) summary = `No messages with “${search.query}”`;
  else summary = `${count}${search.more ? '+' : ''} ${count === 1 ? 'message' : 'messages'} with “${search.query}”`;
  setText(ui.searchSummary, summary);
  const context = { me: session.me, words: search.words, now };
  const rows = search.results.map((result) => searchResultRow(result, context, (chosen) => session.reveal(chosen.conv, chosen.seq)));
  reconcileChildren(ui.searchResultList, rows, searchRows);
  ui.searchMore.hidden = !search.more;
  ui.searchMore.disabled = search.loading;
}

function renderConversation(now, { scrollToBottom }) {
  const conversation = session.active;
  ui.chat.dataset.view = conversation ? 'conversation' : 'list';
  ui.emptyState.hidden = conversation !== null;
  ui.conversationPane.hidden = conversation === null;
  if (!conversation) {
    messageListView.clear();
    return;
  }
  const { state } = session;
  const presence = conversation.isGroup ? undefined : state.online.get(conversation.peer);
  ui.conversationTitle.textContent = conversation.title;
  ui.conversationSubtitle.textContent = conversationSubtitle(conversation, presence);
  ui.conversationAvatar.replaceChildren(avatar(conversation.title, { group: conversation.isGroup, presence }));
  ui.leaveGroup.hidden = !conversation.isGroup;
  ui.loadOlder.hidden = !conversation.hasOlder;
  composer.setConversation(conversation.id);

  const items = new MessageItems(conversation, {
    me: state.me,
    pending: state.pendingByConversation().get(conversation.id) ?? [],
    refused: state.refused.filter((entry) => entry.conv === conversation.id),
  });
  messageListView.render(conversation.id, items, { me: state.me, isGroup: conversation.isGroup, now, scrollToBottom, files: session.files });
  const reveal = session.pendingReveal;
  if (reveal?.conv === conversation.id) {
    session.pendingReveal = null;
    messageListView.reveal(`seq-${reveal.seq}`);
  }
  announceArrivals(conversation);
  setText(ui.typing, typingText(conversation.typingUsers(now)));
}

// Screen readers hear others' new messages in the open conversation, once
// per render: the list is no live region, as its rows come and go while
// the reader scrolls.
const announced = { conversationId: null, seq: 0 };

function announceArrivals(conversation) {
  const newest = conversation.latestMessage();
  const seq = newest?.seq ?? 0;
  const same = announced.conversationId === conversation.id;
  const fresh = same ? seq - announced.seq : 0;
  announced.conversationId = conversation.id;
  announced.seq = same ? Math.max(announced.seq, seq) : seq;
  if (fresh <= 0 || newest.from === session.me) return;
  const text = `${newest.from}: ${previewText(newest)}`;
  ui.arrivals.textContent = fresh === 1 ? text : `${fresh} new messages. The newest, ${text}`;
}

function conversationSubtitle(conversation, presence) {
  if (conversation.isGroup) {
    const members = conversation.members;
    return members ? `Group · ${members.length} ${members.length === 1 ? 'member' : 'members'}: ${members.join(', ')}` : 'Group';
  }
  if (conversation.peer === session.me) return 'Notes to yourself';
  return presence === undefined ? '' : presence ? 'Online' : 'Offline';
}

function startSession(user) {
  session = new ChatSession(user);
  session.start();
  const fromHash = conversationFromHash(user);
  if (fromHash) session.open(fromHash);
  view.update();
}

// reason: why the server ended the session, shown on the sign-in form.
function signOut(reason = '') {
  session?.stop();
  session = null;
  localStorage.removeItem(USER_KEY);
  history.replaceState(null, '', location.pathname);
  messageListView.clear();
  composer.reset();
  ui.searchQuery.value = '';
  ui.signInError.textContent = reason;
  view.update();
  focusSoon(ui.signInName);
}

function setFieldError(input, errorNode, message) {
  errorNode.textContent = message;
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function validId(input, errorNode, what) {
  const value = input.value.trim();
  const valid = ID_PATTERN.test(value);
  setFieldError(input, errorNode, valid ? '' : `${what} must be 1 to 64 letters, digits or . _ @ -`);
  return valid ? value : null;
}

// Focus after the pending render has shown the element.
function focusSoon(input) {
  view.afterRender.push(() => input.focus());
  view.update();
}

const composer = new Composer(
  {
    form: ui.composer,
    text: ui.composerText,
    context: ui.composerContext,
    contextText: ui.composerContextText,
    contextCancel: ui.composerContextCancel,
    attach: ui.attach,
    fileInput: ui.composerFile,
    files: ui.composerFiles,
  },
  {
    token: () => session.token,
    send: (message) => session.sendMessage(message),
    edit: (seq, text) => session.editMessage(seq, text),
    typing: () => session.noteComposing(),
    notice: showNotice,
  },
);

// The controls of the message rows (message-list-view.js), by their
// data-action: one handler for all, as rows come and go while scrolling.
function onMessageAction(event) {
  const control = event.target.closest('[data-action]');
  const row = control?.closest('li.message');
  if (!control || !row || !session?.active) return;
  const seq = Number(row.dataset.seq);
  const message = session.active.messages.get(seq);
  switch (control.dataset.action) {
    case 'reply':
      if (message) composer.replyTo({ seq, from: message.from === session.me ? 'yourself' : message.from, text: previewText(message) });
      break;
    case 'edit':
      if (message) composer.edit({ seq, text: messageText(message.body), hasFiles: filesOf(message.body).length > 0 });
      break;
    case 'delete':
      if (message) confirmDelete(seq);
      break;
    case 'react':
      if (message) showReactionPicker(control, seq);
      break;
    case 'toggle-reaction':
      session.toggleReaction(seq, control.dataset.emoji);
      break;
    case 'reveal':
      session.reveal(session.activeId, Number(control.dataset.target));
      break;
    case 'download':
      session.files.download({ id: control.dataset.fileId, name: control.dataset.fileName }).catch((error) => showNotice(`The file could not be downloaded: ${error.message}`));
      break;
    default:
      break;
  }
}

// The emojis to react with, in a popover beside the React button of the
// message `seq`; one the user already gave is marked, and takes it back.
function showReactionPicker(button, seq) {
  const picker = ui.reactionPicker;
  const message = session.active.messages.get(seq);
  picker.dataset.seq = seq;
  picker.dataset.conv = session.activeId;
  picker.replaceChildren(
    ...QUICK_REACTIONS.map(([emoji, name]) => {
      const mine = hasReacted(message, emoji, session.me);
      return Object.assign(document.createElement('button'), {
        type: 'button',
        className: mine ? 'pick mine' : 'pick',
        textContent: emoji,
        title: name,
        ariaLabel: mine ? `Remove your ${name} reaction` : `React with ${name}`,
        ariaPressed: String(mine),
        onclick: () => {
          picker.hidePopover();
          if (session?.activeId === picker.dataset.conv) session.toggleReaction(Number(picker.dataset.seq), emoji);
        },
      });
    }),
  );
  if (!picker.matches(':popover-open')) picker.showPopover();
  // Above the button, kept inside the window.
  const anchor = button.getBoundingClientRect();
  const box = picker.getBoundingClientRect();
  const left = Math.min(Math.max(8, anchor.left + anchor.width / 2 - box.width / 2), window.innerWidth - box.width - 8);
  const top = anchor.top - box.height - 6 >= 8 ? anchor.top - box.height - 6 : anchor.bottom + 6;
  picker.style.left = `${left}px`;
  picker.style.top = `${top}px`;
  picker.querySelector('button')?.focus();
}

// Deleting is for everyone and cannot be undone: the dialog asks first.
function confirmDelete(seq) {
  const dialog = ui.deleteDialog;
  dialog.dataset.seq = seq;
  dialog.dataset.conv = session.activeId;
  dialog.returnValue = '';
  dialog.showModal();
}

function bindEvents() {
  ui.signInForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const user = validId(ui.signInName, ui.signInError, 'A name');
    if (!user) return;
    localStorage.setItem(USER_KEY, user);
    startSession(user);
    focusSoon(ui.newChatName);
  });

  ui.newChat.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = validId(ui.newChatName, ui.newChatError, 'The name');
    if (!name) return;
    ui.newChatName.value = '';
    try {
      if (event.submitter?.value === 'group') await session.joinGroup(name);
      else session.openDirect(name);
      focusSoon(ui.composerText);
    } catch (error) {
      const message = error instanceof NoReply ? 'You are offline; try again when connected.' : error.message;
      setFieldError(ui.newChatName, ui.newChatError, message);
    }
  });

  ui.messageList.addEventListener('click', onMessageAction);
  ui.deleteDialog.addEventListener('close', () => {
    const { seq, conv } = ui.deleteDialog.dataset;
    if (ui.deleteDialog.returnValue === 'delete' && session?.activeId === conv) session.deleteMessage(Number(seq));
  });
  // Files dropped anywhere on the open conversation are attached.
  ui.conversationPane.addEventListener('dragover', (event) => {
    if (event.dataTransfer?.types.includes('Files')) event.preventDefault();
  });
  ui.conversationPane.addEventListener('drop', (event) => {
    if (!event.dataTransfer?.files.length) return;
    event.preventDefault();
    composer.attach(event.dataTransfer.files);
  });

  ui.search.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = ui.searchQuery.value;
    const problem = query.trim() === '' ? '' : queryProblem(query);
    setFieldError(ui.searchQuery, ui.searchError, problem);
    if (!problem) session.runSearch(query);
  });
  // The field's own clear button (and emptying it) ends the search.
  ui.searchQuery.addEventListener('input', () => {
    if (ui.searchQuery.value !== '') return;
    setFieldError(ui.searchQuery, ui.searchError, '');
    session.runSearch('');
  });
  ui.searchClose.addEventListener('click', () => {
    ui.searchQuery.value = '';
    setFieldError(ui.searchQuery, ui.searchError, '');
    session.runSearch('');
    ui.searchQuery.focus();
  });
  ui.searchMore.addEventListener('click', () => session.moreResults());

  ui.messageScroller.addEventListener('scroll', () => {
    if (messageListView.nearTop) session.loadOlder();
  });
  ui.loadOlder.addEventListener('click', () => session.loadOlder());
  ui.leaveGroup.addEventListener('click', () => session.leaveActiveGroup().catch(reportFailure));
  ui.back.addEventListener('click', () => session.close());
  ui.signOut.addEventListener('click', () => signOut());
  ui.reconnect.addEventListener('click', () => session.connection.reconnectNow());

  document.addEventListener('visibilitychange', () => {
    session?.reportDeviceState();
    session?.markActiveRead();
  });
  window.addEventListener('online', () => session?.connection.reconnectNow());
}

bindEvents();
const rememberedUser = localStorage.getItem(USER_KEY);
if (rememberedUser && ID_PATTERN.test(rememberedUser)) startSession(rememberedUser);
else view.update();
