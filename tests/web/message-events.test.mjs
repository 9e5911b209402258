// Replies, edits, deletes and reactions without a browser: events applied
// to their targets, never held as messages to show, and the same state
// however the page learns of them: live frames, sync replays (with gaps
// filled out of order), history pages in the messages' current state, or
// any mix, each applied twice for good measure.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChatState } from '../../examples/web/chat-state.js';
import { applyEvent, isEvent, reactionsOf, revisionOf, validEmoji } from '../../examples/web/message-events.js';
import { MessageItems } from '../../examples/web/message-items.js';

const CONV = 'dm:alice:bob';

// A conversation as the server keeps it: every frame it stored, in seq
// order, and what `sync` and `history` return: each message in its state
// at the time of the reply (docs/PROTOCOL.md, "The state of a message").
class Server {
  frames = [];

  message(from, text, extra = {}) {
    return this.#store({ from, body: { text }, ...extra });
  }

  edit(from, target, text) {
    return this.#store({ from, body: { text }, kind: 'edit', target });
  }

  delete(from, target) {
    return this.#store({ from, body: null, kind: 'delete', target });
  }

  react(from, target, emoji, kind = 'react') {
    return this.#store({ from, body: { emoji }, kind, target });
  }

  #store(fields) {
    const seq = this.frames.length + 1;
    const frame = { type: 'msg', conv: CONV, seq, to: fields.from === 'alice' ? 'bob' : 'alice', id: `${fields.from}-${seq}`, ts: 1700000000000 + seq * 10, ...fields };
    this.frames.push(frame);
    return frame;
  }

  // The live frame of seq, as sent.
  live(seq) {
    return structuredClone(this.frames[seq - 1]);
  }

  // Frames from..to in their current state (after every event stored).
  current(from, to = this.frames.length) {
    const state = new Map();
    for (const frame of this.frames) {
      const copy = structuredClone(frame);
      state.set(frame.seq, copy);
      if (!frame.kind) continue;
      const target = state.get(frame.target);
      if (frame.kind === 'edit') {
        target.body = frame.body;
        target.edited = frame.ts;
      } else if (frame.kind === 'delete') {
        target.body = null;
        target.deleted = true;
        delete target.edited;
        delete target.reactions;
        // Its edits are erased too.
        for (const other of state.values()) {
          if (other.kind === 'edit' && other.target === frame.target) {
            other.body = null;
            other.deleted = true;
          }
        }
      } else {
        const reactions = { ...(target.reactions ?? {}) };
        const users = new Set(reactions[frame.body.emoji] ?? []);
        if (frame.kind === 'react') users.add(frame.from);
        else users.delete(frame.from);
        if (users.size) reactions[frame.body.emoji] = [...users].sort();
        else delete reactions[frame.body.emoji];
        if (Object.keys(reactions).length) target.reactions = reactions;
        else delete target.reactions;
      }
    }
    return [...state.values()].filter((frame) => frame.seq >= from && frame.seq <= to);
  }
}

// What the page shows of each message: events are not among them.
function shown(state) {
  const conversation = state.conversations.get(CONV);
  return [...conversation.messages].map((message) => ({
    seq: message.seq,
    body: message.body,
    edited: message.edited,
    deleted: message.deleted === true,
    reactions: Object.fromEntries(reactionsOf(message, 'alice').map(({ emoji, users }) => [emoji, users])),
    reply_to: message.reply_to,
  }));
}

// A conversation with everything: a reply, two edits, a delete of an edited
// message, reactions added and taken back.
function busyServer() {
  const server = new Server();
  server.message('alice', 'lunch?'); // 1
  server.message('bob', 'sure', { reply_to: 1 }); // 2
  server.edit('alice', 1, 'lunch at noon?'); // 3
  server.react('bob', 1, '👍'); // 4
  server.react('alice', 1, '👍'); // 5
  server.react('alice', 2, '🎉'); // 6
  server.edit('alice', 1, 'lunch at one?'); // 7
  server.message('alice', 'typo here'); // 8
  server.edit('alice', 8, 'no typo'); // 9
  server.react('bob', 1, '👍', 'unreact'); // 10
  server.delete('alice', 8); // 11
  server.react('bob', 2, '❤️'); // 12
  server.message('bob', 'see you'); // 13
  server.react('alice', 2, '🎉', 'unreact'); // 14
  return server;
}

const EXPECTED = [
  { seq: 1, body: { text: 'lunch at one?' }, edited: 1700000000070, deleted: false, reactions: { '👍': ['alice'] }, reply_to: undefined },
  { seq: 2, body: { text: 'sure' }, edited: undefined, deleted: false, reactions: { '❤️': ['bob'] }, reply_to: 1 },
  { seq: 8, body: null, edited: undefined, deleted: true, reactions: {}, reply_to: undefined },
  { seq: 13, body: { text: 'see you' }, edited: undefined, deleted: false, reactions: {}, reply_to: undefined },
];

describe('message events', () => {
  test('an event is a msg with a kind; an emoji is 1 to 64 bytes without controls', () => {
    assert.equal(isEvent({ seq: 3, kind: 'edit', target: 1 }), true);
    assert.equal(isEvent({ seq: 3 }), false);
    assert.equal(validEmoji('👍'), true);
    assert.equal(validEmoji(''), false);
    assert.equal(validEmoji('a\nb'), false);
    assert.equal(validEmoji('x'.repeat(65)), false);
  });

  test('applying is idempotent and a tombstone stays one', () => {
    const message = { seq: 1, from: 'alice', body: { text: 'hi' }, ts: 1 };
    const edit = { seq: 2, from: 'alice', kind: 'edit', target: 1, body: { text: 'hi!' }, ts: 2 };
    assert.equal(applyEvent(message, edit), true);
    assert.equal(applyEvent(message, edit), false, 'the same edit again changes nothing');
    assert.equal(revisionOf(message), 1);
    const react = { seq: 3, from: 'bob', kind: 'react', target: 1, body: { emoji: '👍' }, ts: 3 };
    assert.equal(applyEvent(message, react), true);
    assert.equal(applyEvent(message, react), false);
    assert.deepEqual(message.reactions, { '👍': ['bob'] });
    assert.equal(applyEvent(message, { ...react, seq: 4, from: 'alice' }), true);
    assert.deepEqual(message.reactions, { '👍': ['alice', 'bob'] }, 'users sorted, as the server lists them');
    assert.equal(applyEvent(message, { ...react, seq: 5, kind: 'unreact' }), true);
    assert.equal(applyEvent(message, { ...react, seq: 5, kind: 'unreact' }), false);
    assert.deepEqual(message.reactions, { '👍': ['alice'] });

    const remove = { seq: 6, from: 'alice', kind: 'delete', target: 1, body: null, ts: 6 };
    assert.equal(applyEvent(message, remove), true);
    assert.equal(applyEvent(message, remove), false);
    assert.equal(message.deleted, true);
    assert.equal(message.body, null);
    assert.equal(message.reactions, undefined);
    assert.equal(applyEvent(message, edit), false, 'an edit replayed after the delete');
    assert.equal(applyEvent(message, react), false);
  });

  test('reactions show in code point order, whichever came first', () => {
    const message = { seq: 1, from: 'alice', body: { text: 'hi' }, ts: 1 };
    applyEvent(message, { seq: 2, from: 'bob', kind: 'react', target: 1, body: { emoji: '👍' }, ts: 2 });
    applyEvent(message, { seq: 3, from: 'alice', kind: 'react', target: 1, body: { emoji: '❤️' }, ts: 3 });
    applyEvent(message, { seq: 4, from: 'bob', kind: 'react', target: 1, body: { emoji: 'a' }, ts: 4 });
    assert.deepEqual(
      reactionsOf(message, 'alice').map(({ emoji, count, mine }) => [emoji, count, mine]),
      [['a', 1, false], ['❤️', 1, true], ['👍', 1, false]],
    );
  });

  test('only the sender edits; an erased edit and an unknown kind change nothing', () => {
    const message = { seq: 1, from: 'alice', body: { text: 'hi' }, ts: 1 };
    assert.equal(applyEvent(message, { seq: 2, from: 'mallory', kind: 'edit', target: 1, body: { text: 'pwned' }, ts: 2 }), false);
    assert.equal(applyEvent(message, { seq: 3, from: 'alice', kind: 'edit', target: 1, body: null, deleted: true, ts: 3 }), false);
    assert.equal(applyEvent(message, { seq: 4, from: 'alice', kind: 'pin', target: 1, body: {}, ts: 4 }), false);
    assert.equal(applyEvent(message, { seq: 5, from: 'bob', kind: 'react', target: 1, body: { emoji: '' }, ts: 5 }), false);
    assert.deepEqual(message.body, { text: 'hi' });
  });

  test('live frames: events apply to their targets and are not shown', () => {
    const server = busyServer();
    const state = new ChatState('alice');
    server.frames.forEach((frame) => state.receive(server.live(frame.seq)));
    assert.deepEqual(shown(state), EXPECTED);
    const conversation = state.conversations.get(CONV);
    assert.equal(conversation.cursor, 14);
    assert.equal(conversation.events.size, 10);
    const items = new MessageItems(conversation, { me: 'alice', pending: [], refused: [] });
    assert.equal(items.count, 4, 'four messages to show');
  });

  test('a sync from nothing: messages in their current state, then the events again', () => {
    const server = busyServer();
    const state = new ChatState('alice');
    for (const frame of server.current(1)) state.receive(frame);
    assert.deepEqual(shown(state), EXPECTED);
  });

  test('a history page of the newest messages, then older pages', () => {
    const server = busyServer();
    const state = new ChatState('alice');
    state.applyConversationList([{ conv: CONV, last_seq: 14, read_seq: 0 }]);
    const conversation = state.conversations.get(CONV);
    state.receivePage(conversation, server.current(9, 14));
    state.receivePage(conversation, server.current(4, 8));
    state.receivePage(conversation, server.current(1, 3));
    assert.deepEqual(shown(state), EXPECTED);
  });

  test('older pages in a state older than the events the page holds: the events apply again', () => {
    // The page holds 5 to 14 live; a history page made before any event
    // (the server answered before storing them) brings 1 to 4 as sent.
    const server = busyServer();
    const state = new ChatState('alice');
    state.applyConversationList([{ conv: CONV, last_seq: 4, read_seq: 0 }]);
    for (let seq = 5; seq <= 14; seq += 1) state.receive(server.live(seq));
    const conversation = state.conversations.get(CONV);
    state.receivePage(conversation, [1, 2, 3, 4].map((seq) => server.live(seq)));
    assert.deepEqual(shown(state), EXPECTED);
  });

  test('live frames with a gap, filled by a sync out of order, converge', () => {
    const server = busyServer();
    const state = new ChatState('alice');
    for (let seq = 1; seq <= 3; seq += 1) state.receive(server.live(seq));
    // Away for 4 to 9; live frames come again from 10, before the sync.
    for (let seq = 10; seq <= 12; seq += 1) state.receive(server.live(seq));
    const conversation = state.conversations.get(CONV);
    assert.equal(conversation.hasGap, true);
    // The sync: 4 and above in their current state (10 to 12 again, ignored).
    for (const frame of server.current(4)) state.receive(frame);
    assert.equal(conversation.hasGap, false);
    assert.deepEqual(shown(state), EXPECTED);
  });

  test('every path, and each twice, ends in the same state', () => {
    const server = busyServer();
    const paths = {
      live: (state) => server.frames.forEach((frame) => state.receive(server.live(frame.seq))),
      sync: (state) => server.current(1).forEach((frame) => state.receive(frame)),
      history: (state) => {
        state.applyConversationList([{ conv: CONV, last_seq: 14, read_seq: 0 }]);
        state.receivePage(state.conversations.get(CONV), server.current(1, 14));
      },
      liveThenHistory: (state) => {
        state.applyConversationList([{ conv: CONV, last_seq: 6, read_seq: 0 }]);
        for (let seq = 7; seq <= 14; seq += 1) state.receive(server.live(seq));
        state.receivePage(state.conversations.get(CONV), server.current(1, 6));
      },
    };
    for (const [name, path] of Object.entries(paths)) {
      const state = new ChatState('alice');
      path(state);
      path(state);
      assert.deepEqual(shown(state), EXPECTED, name);
    }
  });

  test('an own event, from its ack, applies as the other sessions apply its msg', () => {
    const server = new Server();
    const state = new ChatState('alice');
    state.receive(server.live(server.message('bob', 'hi').seq));
    state.receive(server.live(server.message('alice', 'hello').seq));
    const edit = { type: 'edit', id: 'e-1', conv: CONV, seq: 2, body: { text: 'hello!' } };
    const { conversation, added } = state.acknowledgeEvent(edit, { type: 'ack', id: 'e-1', conv: CONV, seq: 3, ts: 1700000000999 });
    assert.equal(added, true);
    assert.deepEqual(conversation.messages.get(2).body, { text: 'hello!' });
    assert.equal(conversation.messages.get(2).edited, 1700000000999);
    state.acknowledgeEvent({ type: 'react', id: 'r-1', conv: CONV, seq: 1, emoji: '👍' }, { type: 'ack', id: 'r-1', conv: CONV, seq: 4, ts: 1700000001000 });
    assert.deepEqual(conversation.messages.get(1).reactions, { '👍': ['alice'] });
    state.acknowledgeEvent({ type: 'delete', id: 'd-1', conv: CONV, seq: 2 }, { type: 'ack', id: 'd-1', conv: CONV, seq: 5, ts: 1700000001001 });
    assert.equal(conversation.messages.get(2).deleted, true);
    // The same event from the sync after a reconnect changes nothing.
    const before = revisionOf(conversation.messages.get(1));
    state.receive({ type: 'msg', conv: CONV, seq: 4, from: 'alice', id: 'r-1', body: { emoji: '👍' }, ts: 1700000001000, kind: 'react', target: 1 });
    assert.equal(revisionOf(conversation.messages.get(1)), before);
  });

  test('an own event whose ack lands above a gap applies when the gap is filled', () => {
    const server = new Server();
    const state = new ChatState('alice');
    state.receive(server.live(server.message('alice', 'one').seq));
    server.message('bob', 'two'); // 2, not heard yet
    const { conversation } = state.acknowledgeEvent({ type: 'edit', id: 'e', conv: CONV, seq: 1, body: { text: 'uno' } }, { conv: CONV, seq: 3, ts: 5 });
    assert.equal(conversation.hasGap, true);
    assert.deepEqual(conversation.messages.get(1).body, { text: 'one' }, 'not yet: seq 2 comes first');
    state.receive(server.live(2));
    assert.deepEqual(conversation.messages.get(1).body, { text: 'uno' });
  });

  test('events are not unread messages', () => {
    const server = new Server();
    const state = new ChatState('alice');
    state.applyConversationList([{ conv: CONV, last_seq: 0, read_seq: 0 }]);
    state.receive(server.live(server.message('alice', 'mine').seq));
    const conversation = state.conversations.get(CONV);
    conversation.readSeq = 1;
    state.receive(server.live(server.react('bob', 1, '👍').seq));
    assert.equal(conversation.unread, 0);
    state.receive(server.live(server.message('bob', 'a reply').seq));
    assert.equal(conversation.unread, 1);
    // The user's own reaction right after the read cursor is read with it.
    conversation.readSeq = 3;
    state.receive(server.live(server.react('alice', 3, '🎉').seq));
    assert.equal(conversation.readableSeq('alice', false), 4);
  });

  test('a reply quotes its target, or says it is not loaded, or deleted', () => {
    const server = new Server();
    for (let n = 1; n <= 3; n += 1) server.message('bob', `old ${n}`);
    server.message('alice', 'answer', { reply_to: 3 }); // 4
    server.message('alice', 'to the first', { reply_to: 1 }); // 5
    const state = new ChatState('alice');
    state.applyConversationList([{ conv: CONV, last_seq: 5, read_seq: 5 }]);
    const conversation = state.conversations.get(CONV);
    state.receivePage(conversation, server.current(3, 5));
    const items = () => new MessageItems(conversation, { me: 'alice', pending: [], refused: [] });
    const quoteOf = (seq) => items().at(conversation.messages.indexOf(seq)).quote;
    assert.deepEqual(
      { ...quoteOf(4), revision: undefined },
      { seq: 3, loaded: true, from: 'bob', text: 'old 3', deleted: false, revision: undefined },
    );
    assert.equal(quoteOf(5).loaded, false, 'seq 1 is not held');
    const notLoaded = items().at(conversation.messages.indexOf(5)).revision;

    state.receivePage(conversation, server.current(1, 2));
    assert.equal(quoteOf(5).loaded, true);
    assert.notEqual(items().at(conversation.messages.indexOf(5)).revision, notLoaded, 'the row showing it is built again');

    const before = items().at(conversation.messages.indexOf(4)).revision;
    state.receive(server.live(server.delete('bob', 3).seq));
    assert.equal(quoteOf(4).deleted, true);
    assert.notEqual(items().at(conversation.messages.indexOf(4)).revision, before);
  });

  test('an outbox entry keeps what it replies to, and so does its ack', () => {
    const state = new ChatState('alice');
    const conversation = state.conversation(CONV);
    state.receive({ type: 'msg', conv: CONV, seq: 1, from: 'bob', id: 'b1', body: { text: 'q' }, ts: 1 });
    const entry = state.outbox.add(conversation, { text: 'a' }, 1);
    assert.equal(entry.reply_to, 1);
    const pending = new MessageItems(conversation, { me: 'alice', pending: [entry], refused: [] });
    assert.equal(pending.at(pending.count - 1).quote.seq, 1);
    state.acknowledge(entry, { conv: CONV, seq: 2, ts: 2 });
    assert.equal(conversation.messages.get(2).reply_to, 1);
  });
});
