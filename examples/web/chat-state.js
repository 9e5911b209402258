// What the page knows, without any DOM: the conversations with the messages
// it holds of each, read cursors, who is typing, who is online, and the
// outbox of messages the server has not acknowledged yet. Every update
// that one arriving message causes costs O(log n) or less: a flood of them
// into a conversation of 100,000 must not stall the page.
import { applyEvent, isEvent, targetOf } from './message-events.js';
import { SortedMessages } from './sorted-messages.js';

// User and group ids, as PROTOCOL.md defines them.
export const ID_PATTERN = /^[A-Za-z0-9_.@-]{1,64}$/;
const TYPING_SHOWN_MS = 3000;

// Ids are ASCII, so JavaScript's string order is the protocol's bytewise order.
export function directConversationId(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

export function groupConversationId(group) {
  return `g:${group}`;
}

// A message id that stays unique across reloads and tabs: the server
// deduplicates by it, so a reused id would swallow a new message. Events
// (edit, delete, react, unreact) take one too.
export function newMessageId() {
  const random = crypto.getRandomValues(new Uint8Array(8));
  return `m-${Date.now().toString(36)}-${Array.from(random, (byte) => byte.toString(16).padStart(2, '0')).join('')}`;
}

// One conversation. The page holds a window of consecutive seqs ending at
// `cursor`, the highest seq the page has with nothing missing below it
// down to the window's start; history paging extends the window downwards.
// The window's seqs are split in two: `messages`, the ones shown, and
// `events` (message-events.js), which change a message instead of showing.
// A message's events are applied in seq order as the cursor passes them,
// and again, all of them, when the message itself comes later from history.
class Conversation {
  constructor(id, me) {
    this.id = id;
    if (id.startsWith('g:')) {
      this.group = id.slice(2);
      this.peer = null;
    } else {
      const [, first, second] = id.split(':');
      this.group = null;
      this.peer = first === me ? second : first;
    }
    this.messages = new SortedMessages();
    this.events = new SortedMessages();
    // Target seq -> the events held for it, for a target that comes after
    // its events (a history page below them).
    this.#eventsByTarget = new Map();
    this.cursor = 0;
    this.lastSeq = 0;
    this.readSeq = 0;
    // The other members' read positions as the page heard them (user ->
    // seq): from `conversations` entries, `read` frames (live, and replayed
    // by a sync before its `synced`) and `reads` replies.
    this.readers = new Map();
    this.typing = new Map();
    this.#members = null;
    this.olderExhausted = false;
  }

  #members;
  #eventsByTarget;
  // The other members' positions, ascending, for counting readers by binary
  // search; made again after a change of readers or members.
  #positions = null;

  // A group's members, sorted, once a `members` reply came; else null.
  get members() {
    return this.#members;
  }

  set members(members) {
    this.#members = members;
    this.#positions = null;
  }

  // The users other than `me` whose reads count for this user's messages;
  // null when they are not known yet (a group whose members have not come).
  othersThan(me) {
    if (!this.isGroup) return this.peer === me ? [] : [this.peer];
    return this.#members?.filter((member) => member !== me) ?? null;
  }

  // `user` read up to `seq`; a read position only moves forward.
  noteReader(user, seq) {
    if (!(seq > (this.readers.get(user) ?? 0))) return;
    this.readers.set(user, seq);
    this.#positions = null;
  }

  get isGroup() {
    return this.group !== null;
  }

  get title() {
    return this.group ?? this.peer;
  }

  // The part of a `send` or `typing` frame that names where it goes.
  get target() {
    return this.isGroup ? { group: this.group } : { to: this.peer };
  }

  // Seqs above the read cursor, less the events among them the page holds:
  // a reaction is no unread message. (Events the page does not hold yet
  // count until a page brings them.)
  get unread() {
    return Math.max(0, this.lastSeq - this.readSeq - this.events.countAbove(this.readSeq));
  }

  // The window's bounds, over messages and events.
  get oldestSeq() {
    const seqs = [this.messages.oldest?.seq, this.events.oldest?.seq].filter((seq) => seq !== undefined);
    return seqs.length ? Math.min(...seqs) : null;
  }

  get newestSeq() {
    return Math.max(this.messages.newest?.seq ?? 0, this.events.newest?.seq ?? 0);
  }

  // How many seqs the window holds.
  get held() {
    return this.messages.size + this.events.size;
  }

  get hasOlder() {
    return !this.olderExhausted && (this.held ? this.oldestSeq > 1 : this.lastSeq > 0);
  }

  // The newest message shown (events are not).
  latestMessage() {
    return this.messages.newest;
  }

  // The message or event at `seq`, when held.
  heldAt(seq) {
    return this.messages.get(seq) ?? this.events.get(seq);
  }

  // A live or synced message or event: kept when it is above the cursor,
  // the protocol's rule against duplicates. One that skips seqs leaves a gap.
  add(msg) {
    if (msg.seq <= this.cursor || !this.#hold(msg)) return false;
    this.#advance(msg);
    return true;
  }

  // A history page: the messages just below the window, or the newest ones
  // for an empty window; returns the messages and events that were new.
  // Each message comes in its current state, which shows the events held
  // above it already, or only some of them (those the server had stored
  // when it answered): replaying them all ends where the live page is.
  addPage(msgs) {
    const fresh = msgs.filter((msg) => this.#hold(msg));
    fresh.forEach((msg) => this.#advance(msg));
    for (const msg of fresh) if (!isEvent(msg)) this.#replay(msg);
    if (msgs.length === 0 || msgs[0].seq <= 1) this.olderExhausted = true;
    return fresh;
  }

  // Keeps `msg` in its list; false when its seq is held already.
  #hold(msg) {
    if (this.heldAt(msg.seq)) return false;
    if (!isEvent(msg)) return this.messages.add(msg);
    if (!this.events.add(msg)) return false;
    const target = targetOf(msg);
    if (target !== null) {
      if (!this.#eventsByTarget.has(target)) this.#eventsByTarget.set(target, []);
      this.#eventsByTarget.get(target).push(msg);
    }
    return true;
  }

  // After `msg` is held: the cursor moves over the seqs now complete,
  // applying the events among them in seq order. An event whose target is
  // not held (below the window) waits for it in #eventsByTarget.
  #advance(msg) {
    while (this.heldAt(this.cursor + 1)) {
      this.cursor += 1;
      const event = this.events.get(this.cursor);
      const target = event && this.messages.get(targetOf(event));
      if (target) applyEvent(target, event);
    }
    this.lastSeq = Math.max(this.lastSeq, msg.seq);
  }

  // Applies every held event of `message` up to the cursor, in seq order.
  // Those above the cursor wait for it: they apply as it passes them.
  #replay(message) {
    const events = (this.#eventsByTarget.get(message.seq) ?? []).filter((event) => event.seq <= this.cursor);
    events.sort((a, b) => a.seq - b.seq).forEach((event) => applyEvent(message, event));
  }

  // True when a seq above the cursor is held without its predecessors:
  // something was missed and a sync will fetch it.
  get hasGap() {
    return this.newestSeq > this.cursor;
  }

  // Drops the window and starts over at lastSeq, for a conversation too far
  // behind to sync message by message: history pages it back in.
  skipTo(lastSeq) {
    this.messages.clear();
    this.events.clear();
    this.#eventsByTarget.clear();
    this.cursor = lastSeq;
    this.lastSeq = Math.max(this.lastSeq, lastSeq);
    this.olderExhausted = false;
  }

  // The seq the user has read up to: all of the window when it is on
  // screen, else only the user's own messages right after the read cursor.
  readableSeq(me, onScreen) {
    if (onScreen) return Math.max(this.readSeq, this.cursor);
    let seq = this.readSeq;
    while (this.heldAt(seq + 1)?.from === me) seq += 1;
    return seq;
  }

  // What the user `me` sees of its own stored message `seq`. There are no
  // delivery receipts in the protocol, so the page cannot know that a
  // message reached a session of its recipient: it shows two states, not
  // three.
  //   'sent' (✓): the server acknowledged it: it is stored.
  //   'read' (blue ✓✓): every other member's read position is at or past
  //     `seq`: in a direct conversation the peer's, in a group every other
  //     current member's (one who joined since counts too).
  //   'partly-read' (✓ "Read by N", groups only): some other members have
  //     read it, not all; also while the group's members are not known.
  // Notes to oneself have no other member and stay 'sent'.
  // Returns { status, readCount, others } (others: how many other members,
  // or null when unknown).
  receiptOf(seq, me) {
    const others = this.othersThan(me);
    let readCount;
    if (others === null) {
      readCount = 0;
      for (const [user, readSeq] of this.readers) if (user !== me && readSeq >= seq) readCount += 1;
    } else {
      readCount = countAtLeast(this.#positionsOf(others), seq);
    }
    let status = 'sent';
    if (others !== null && others.length > 0 && readCount === others.length) status = 'read';
    else if (readCount > 0) status = 'partly-read';
    return { status, readCount, others: others?.length ?? null };
  }

  // The other members whose position is at or past `seq`, sorted; only for
  // a few members (a label), never walked for every message of a big group.
  namesOfReaders(seq, me) {
    const others = this.othersThan(me) ?? [...this.readers.keys()].filter((user) => user !== me).sort();
    return others.filter((user) => (this.readers.get(user) ?? 0) >= seq);
  }

  #positionsOf(others) {
    if (!this.#positions) {
      this.#positions = others.map((user) => this.readers.get(user) ?? 0).sort((a, b) => a - b);
    }
    return this.#positions;
  }

  typingUsers(now) {
    return [...this.typing].filter(([, until]) => until > now).map(([user]) => user);
  }
}

// How many of the ascending `values` are at least `seq`.
function countAtLeast(values, seq) {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (values[middle] < seq) low = middle + 1;
    else high = middle;
  }
  return values.length - low;
}

// Messages waiting for their ack, kept in localStorage so that a reload or
// a closed tab does not lose them: they are sent again with the same id.
// Every read goes to storage, so tabs of one user share one outbox: any of
// them may send an entry, and the server stores it once.
class Outbox {
  #storageKey;
  // Used instead of storage once storage fails (disabled, or full).
  #memory = null;

  constructor(me) {
    this.#storageKey = `imbed.outbox.${me}`;
  }

  get entries() {
    if (this.#memory) return this.#memory;
    try {
      return JSON.parse(localStorage.getItem(this.#storageKey)) ?? [];
    } catch {
      this.#memory = [];
      return this.#memory;
    }
  }

  // replyTo: the seq of the message it replies to, or null.
  add(conversation, body, replyTo = null) {
    const entry = { id: newMessageId(), conv: conversation.id, ...conversation.target, body, createdAt: Date.now() };
    if (replyTo !== null) entry.reply_to = replyTo;
    this.#save([...this.entries, entry]);
    return entry;
  }

  remove(id) {
    const entries = this.entries;
    const kept = entries.filter((entry) => entry.id !== id);
    if (kept.length !== entries.length) this.#save(kept);
  }

  #save(entries) {
    if (this.#memory) {
      this.#memory = entries;
      return;
    }
    try {
      localStorage.setItem(this.#storageKey, JSON.stringify(entries));
    } catch (error) {
      console.warn('imbed: the outbox lives in this page only:', error);
      this.#memory = entries;
    }
  }
}

export class ChatState {
  constructor(me) {
    this.me = me;
    this.conversations = new Map();
    this.online = new Map();
    this.watched = new Set();
    this.outbox = new Outbox(me);
    // Sends the server refused (a retry would be refused too): shown, not kept.
    this.refused = [];
  }

  conversation(id) {
    let conversation = this.conversations.get(id);
    if (!conversation) {
      conversation = new Conversation(id, this.me);
      this.conversations.set(id, conversation);
    }
    return conversation;
  }

  // The `conversations` reply. A conversation the page holds no messages of
  // (new to it, or opened from a link before this reply came) starts at its
  // newest seq: its older messages come from history when shown.
  // A group missing from the list was left or lost while the page was away.
  // (A direct chat may be missing only because nobody has written in it yet.)
  applyConversationList(entries) {
    const listed = new Set(entries.map((entry) => entry.conv));
    for (const conversation of this.conversations.values()) {
      if (conversation.isGroup && !listed.has(conversation.id)) this.conversations.delete(conversation.id);
    }
    for (const entry of entries) {
      const conversation = this.conversation(entry.conv);
      if (conversation.held === 0) conversation.cursor = Math.max(conversation.cursor, entry.last_seq);
      conversation.lastSeq = Math.max(conversation.lastSeq, entry.last_seq);
      conversation.readSeq = Math.max(conversation.readSeq, entry.read_seq);
      // The other members' read positions, so that ticks are right after a
      // reload; absent for groups above receipts.max_group_size.
      if (entry.reads && typeof entry.reads === 'object') this.applyReads(conversation, entry.reads);
    }
  }

  // A `reads` map (user -> seq), from a `conversations` entry or a `reads`
  // reply; the latter names this user too, whose position is readSeq.
  applyReads(conversation, reads) {
    for (const [user, seq] of Object.entries(reads)) {
      if (user !== this.me && Number.isSafeInteger(seq)) conversation.noteReader(user, seq);
    }
  }

  // A live or synced `msg` frame, a message or an event. Returns its
  // conversation and whether it is new to the page.
  receive(msg) {
    const conversation = this.conversation(msg.conv);
    const added = conversation.add(msg);
    if (added && !isEvent(msg)) conversation.typing.delete(msg.from);
    this.#settleOwn(msg);
    return { conversation, added };
  }

  // A `history` reply's messages for one conversation.
  receivePage(conversation, msgs) {
    conversation.addPage(msgs).forEach((msg) => this.#settleOwn(msg));
  }

  // An own message the server has stored needs no more sending, even when
  // its ack was lost with a connection.
  #settleOwn(msg) {
    if (msg.from === this.me) this.outbox.remove(msg.id);
  }

  // An `ack`: the outbox entry becomes the stored message it now is.
  acknowledge(entry, ack) {
    this.outbox.remove(entry.id);
    const msg = { type: 'msg', conv: ack.conv, seq: ack.seq, from: this.me, id: entry.id, body: entry.body, ts: ack.ts };
    if (entry.group) msg.group = entry.group;
    else msg.to = entry.to;
    if (entry.reply_to !== undefined) msg.reply_to = entry.reply_to;
    return this.receive(msg);
  }

  // The `ack` of an event this session sent (an `edit`, `delete`, `react`
  // or `unreact` frame): the sending session gets no `msg` of it, so the
  // page makes the one the other sessions get.
  acknowledgeEvent(request, ack) {
    const conversation = this.conversation(ack.conv);
    const body = request.type === 'edit' ? request.body : request.type === 'delete' ? null : { emoji: request.emoji };
    const msg = { type: 'msg', conv: ack.conv, seq: ack.seq, from: this.me, id: request.id, body, ts: ack.ts, kind: request.type, target: request.seq, ...conversation.target };
    return this.receive(msg);
  }

  refuse(entry, reason) {
    this.outbox.remove(entry.id);
    this.refused.push({ ...entry, reason });
  }

  cursors() {
    return Object.fromEntries([...this.conversations.values()].map((c) => [c.id, c.cursor]));
  }

  // A `read` frame: another member read, or this user read on another device.
  applyRead({ conv, user, seq }) {
    const conversation = this.conversations.get(conv);
    if (!conversation) return;
    if (user === this.me) conversation.readSeq = Math.max(conversation.readSeq, seq);
    else conversation.noteReader(user, seq);
  }

  // A `typing` frame; returns when the indicator should disappear.
  applyTyping({ conv, from }, now) {
    const until = now + TYPING_SHOWN_MS;
    this.conversation(conv).typing.set(from, until);
    return until;
  }

  remove(conversationId) {
    this.conversations.delete(conversationId);
  }

  directPeers() {
    return [...this.conversations.values()].filter((c) => !c.isGroup && c.peer !== this.me).map((c) => c.peer);
  }

  // The outbox entries of each conversation, oldest first.
  pendingByConversation() {
    const pending = new Map();
    for (const entry of this.outbox.entries) {
      if (!pending.has(entry.conv)) pending.set(entry.conv, []);
      pending.get(entry.conv).push(entry);
    }
    return pending;
  }

  // Newest activity first; conversations with nothing loaded by name.
  sortedConversations(pending) {
    const activity = new Map();
    for (const conversation of this.conversations.values()) {
      const newestUnsent = pending.get(conversation.id)?.at(-1)?.createdAt ?? 0;
      activity.set(conversation, Math.max(conversation.latestMessage()?.ts ?? 0, newestUnsent));
    }
    return [...this.conversations.values()].sort(
      (a, b) => activity.get(b) - activity.get(a) || a.title.localeCompare(b.title),
    );
  }

  totalUnread() {
    return [...this.conversations.values()].reduce((sum, c) => sum + c.unread, 0);
  }
}
