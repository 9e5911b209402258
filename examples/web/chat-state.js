// What the page knows, without any DOM: the conversations with the messages
// it holds of each, read cursors, who is typing, who is online, and the
// outbox of messages the server has not acknowledged yet. Every update
// that one arriving message causes costs O(log n) or less: a flood of them
// into a conversation of 100,000 must not stall the page.
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
// deduplicates by it, so a reused id would swallow a new message.
function newMessageId() {
  const random = crypto.getRandomValues(new Uint8Array(8));
  return `m-${Date.now().toString(36)}-${Array.from(random, (byte) => byte.toString(16).padStart(2, '0')).join('')}`;
}

// One conversation. `messages` is a window of consecutive seqs ending at
// `cursor`, the highest seq the page has with nothing missing below it
// down to the window's start; history paging extends the window downwards.
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

  get unread() {
    return Math.max(0, this.lastSeq - this.readSeq);
  }

  get oldestSeq() {
    return this.messages.oldest?.seq ?? null;
  }

  get newestSeq() {
    return this.messages.newest?.seq ?? 0;
  }

  get hasOlder() {
    return !this.olderExhausted && (this.messages.size ? this.oldestSeq > 1 : this.lastSeq > 0);
  }

  latestMessage() {
    return this.messages.newest;
  }

  // A live or synced message: kept when it is above the cursor, the
  // protocol's rule against duplicates. One that skips seqs leaves a gap.
  add(msg) {
    if (msg.seq <= this.cursor || !this.messages.add(msg)) return false;
    this.#advance(msg);
    return true;
  }

  // A history page: the messages just below the window, or the newest ones
  // for an empty window; returns the messages that were new.
  addPage(msgs) {
    const fresh = msgs.filter((msg) => this.messages.add(msg));
    fresh.forEach((msg) => this.#advance(msg));
    if (msgs.length === 0 || msgs[0].seq <= 1) this.olderExhausted = true;
    return fresh;
  }

  // After `msg` is held: the cursor moves over the seqs now complete.
  #advance(msg) {
    while (this.messages.has(this.cursor + 1)) this.cursor += 1;
    this.lastSeq = Math.max(this.lastSeq, msg.seq);
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
    this.cursor = lastSeq;
    this.lastSeq = Math.max(this.lastSeq, lastSeq);
    this.olderExhausted = false;
  }

  // The seq the user has read up to: all of the window when it is on
  // screen, else only the user's own messages right after the read cursor.
  readableSeq(me, onScreen) {
    if (onScreen) return Math.max(this.readSeq, this.cursor);
    let seq = this.readSeq;
    while (this.messages.get(seq + 1)?.from === me) seq += 1;
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

  add(conversation, body) {
    const entry = { id: newMessageId(), conv: conversation.id, ...conversation.target, body, createdAt: Date.now() };
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
      if (conversation.messages.size === 0) conversation.cursor = Math.max(conversation.cursor, entry.last_seq);
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

  // A live or synced `msg` frame. Returns its conversation and whether the
  // message is new to the page.
  receive(msg) {
    const conversation = this.conversation(msg.conv);
    const added = conversation.add(msg);
    if (added) conversation.typing.delete(msg.from);
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
