// The page's bookkeeping without a browser: cursors, windows of messages,
// the outbox, read receipts. Outside a browser the outbox has no
// localStorage and lives in memory.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChatState, directConversationId } from '../../examples/web/chat-state.js';

function msg(seq, from = 'bob', conv = 'dm:alice:bob') {
  return { type: 'msg', conv, seq, from, id: `${from}-${seq}`, body: { text: `message ${seq}` }, ts: 1700000000000 + seq };
}

function seqsOf(conversation) {
  return [...conversation.messages].map((message) => message.seq);
}

describe('chat state', () => {
  test('direct conversation ids sort the two users bytewise', () => {
    assert.equal(directConversationId('bob', 'alice'), 'dm:alice:bob');
    assert.equal(directConversationId('alice', 'Zed'), 'dm:Zed:alice');
    assert.equal(directConversationId('alice', 'alice'), 'dm:alice:alice');
  });

  test('live messages move the cursor; repeats and seqs at or below it are ignored', () => {
    const state = new ChatState('alice');
    assert.equal(state.receive(msg(1)).added, true);
    assert.equal(state.receive(msg(2)).added, true);
    assert.equal(state.receive(msg(2)).added, false);
    const conversation = state.conversations.get('dm:alice:bob');
    assert.equal(conversation.peer, 'bob');
    assert.equal(conversation.cursor, 2);
    assert.equal(conversation.hasGap, false);

    // Seq 4 without 3: held, but the cursor waits, and sync has work to do.
    state.receive(msg(4));
    assert.equal(conversation.cursor, 2);
    assert.equal(conversation.hasGap, true);
    state.receive(msg(3));
    assert.equal(conversation.cursor, 4);
    assert.equal(conversation.hasGap, false);
    assert.deepEqual(seqsOf(conversation), [1, 2, 3, 4]);
  });

  test('a listed conversation starts at its newest seq and pages history downwards', () => {
    const state = new ChatState('alice');
    state.applyConversationList([{ conv: 'g:team', last_seq: 120, read_seq: 100 }]);
    const team = state.conversations.get('g:team');
    assert.equal(team.cursor, 120);
    assert.equal(team.unread, 20);
    assert.equal(team.hasOlder, true);
    assert.equal(team.oldestSeq, null);

    // A live message below the cursor is one the page chose not to hold.
    assert.equal(state.receive(msg(119, 'bob', 'g:team')).added, false);

    const page = (from, to) => Array.from({ length: to - from + 1 }, (_, index) => msg(from + index, 'bob', 'g:team'));
    state.receivePage(team, page(71, 120));
    assert.equal(team.oldestSeq, 71);
    assert.equal(team.hasOlder, true);
    state.receivePage(team, page(21, 70));
    state.receivePage(team, page(1, 20));
    assert.equal(team.hasOlder, false);
    assert.deepEqual(seqsOf(team), page(1, 120).map((message) => message.seq));
    assert.equal(team.cursor, 120);
  });

  test('a conversation opened before the list came starts at its newest seq too', () => {
    const state = new ChatState('alice');
    state.conversation('g:team');
    state.applyConversationList([{ conv: 'g:team', last_seq: 120, read_seq: 0 }]);
    assert.equal(state.conversations.get('g:team').cursor, 120);
  });

  test('a listed conversation keeps the cursor of the messages it holds', () => {
    const state = new ChatState('alice');
    state.receive(msg(1));
    state.applyConversationList([{ conv: 'dm:alice:bob', last_seq: 5, read_seq: 0 }]);
    const conversation = state.conversations.get('dm:alice:bob');
    assert.equal(conversation.cursor, 1, 'sync brings 2 to 5');
    assert.equal(conversation.lastSeq, 5);
  });

  test('an empty history page ends paging', () => {
    const state = new ChatState('alice');
    const conversation = state.conversation('dm:alice:carol');
    state.receivePage(conversation, []);
    assert.equal(conversation.hasOlder, false);
  });

  test('a group missing from the list is dropped; a direct chat without messages stays', () => {
    const state = new ChatState('alice');
    state.applyConversationList([{ conv: 'g:team', last_seq: 3, read_seq: 3 }]);
    state.conversation('dm:alice:carol');
    state.applyConversationList([]);
    assert.deepEqual([...state.conversations.keys()], ['dm:alice:carol']);
  });

  test('an ack turns the outbox entry into the stored message', () => {
    const state = new ChatState('alice');
    const conversation = state.conversation('g:team');
    const entry = state.outbox.add(conversation, { text: 'hi team' });
    assert.match(entry.id, /^m-/);
    assert.equal(entry.group, 'team');
    assert.equal(state.pendingByConversation().get('g:team').length, 1);

    state.acknowledge(entry, { type: 'ack', id: entry.id, conv: 'g:team', seq: 1, ts: 1700000000001 });
    assert.deepEqual(state.outbox.entries, []);
    const stored = conversation.messages.get(1);
    assert.deepEqual(
      { from: stored.from, group: stored.group, id: stored.id, body: stored.body },
      { from: 'alice', group: 'team', id: entry.id, body: { text: 'hi team' } },
    );
  });

  test('an own message that comes back through sync settles its outbox entry', () => {
    const state = new ChatState('alice');
    const entry = state.outbox.add(state.conversation('dm:alice:bob'), { text: 'lost ack' });
    state.receive({ ...msg(1, 'alice'), id: entry.id });
    assert.deepEqual(state.outbox.entries, []);
  });

  test('read receipts: the reader sees all on screen, and own messages anywhere', () => {
    const state = new ChatState('alice');
    const conversation = state.conversation('dm:alice:bob');
    state.receive(msg(1, 'bob'));
    state.receive(msg(2, 'alice'));
    assert.equal(conversation.readableSeq('alice', false), 0, 'bob\'s message is not read off screen');
    assert.equal(conversation.readableSeq('alice', true), 2);
    conversation.readSeq = 1;
    assert.equal(conversation.readableSeq('alice', false), 2, 'an own message right after the cursor');

    state.applyRead({ conv: 'dm:alice:bob', user: 'bob', seq: 2 });
    assert.deepEqual(conversation.namesOfReaders(2, 'alice'), ['bob']);
    state.applyRead({ conv: 'dm:alice:bob', user: 'bob', seq: 1 });
    assert.deepEqual(conversation.namesOfReaders(2, 'alice'), ['bob'], 'a read cursor only moves forward');
    state.applyRead({ conv: 'dm:alice:bob', user: 'alice', seq: 2 });
    assert.equal(conversation.unread, 0);
  });

  test('ticks in a direct chat: sent until the peer\'s position reaches the seq, then read', () => {
    const state = new ChatState('alice');
    const chat = state.conversation('dm:alice:bob');
    const status = (seq) => chat.receiptOf(seq, 'alice').status;
    assert.equal(status(3), 'sent');
    state.applyRead({ conv: 'dm:alice:bob', user: 'bob', seq: 2 });
    assert.equal(status(2), 'read');
    assert.equal(status(3), 'sent');
    state.applyRead({ conv: 'dm:alice:bob', user: 'bob', seq: 5 });
    assert.equal(status(3), 'read');
    // Notes to oneself: no other member, never read.
    const notes = state.conversation('dm:alice:alice');
    state.applyRead({ conv: 'dm:alice:alice', user: 'alice', seq: 4 });
    assert.equal(notes.receiptOf(1, 'alice').status, 'sent');
  });

  test('ticks after a reload: the reads of conversations entries, then a sync\'s read frames', () => {
    const state = new ChatState('alice');
    state.applyConversationList([
      { conv: 'dm:alice:bob', last_seq: 4, read_seq: 4, reads: { bob: 3 } },
      { conv: 'g:team', last_seq: 9, read_seq: 9, reads: { bob: 9, carol: 6, alice: 1, gone: 9 } },
      { conv: 'g:crowd', last_seq: 9, read_seq: 0 },
    ]);
    const chat = state.conversations.get('dm:alice:bob');
    assert.equal(chat.receiptOf(3, 'alice').status, 'read');
    assert.equal(chat.receiptOf(4, 'alice').status, 'sent');
    // A sync replays the positions as read frames; an older one changes nothing.
    state.applyRead({ conv: 'dm:alice:bob', user: 'bob', seq: 2 });
    state.applyRead({ conv: 'dm:alice:bob', user: 'bob', seq: 4 });
    assert.equal(chat.receiptOf(4, 'alice').status, 'read');

    const team = state.conversations.get('g:team');
    // Members not known yet: counted from what was heard, never "all".
    assert.deepEqual(team.receiptOf(7, 'alice'), { status: 'partly-read', readCount: 2, others: null });
    team.members = ['alice', 'bob', 'carol'];
    // "gone" left the group: its position no longer counts.
    assert.deepEqual(team.receiptOf(7, 'alice'), { status: 'partly-read', readCount: 1, others: 2 });
    assert.deepEqual(team.receiptOf(6, 'alice'), { status: 'read', readCount: 2, others: 2 });
    assert.deepEqual(team.namesOfReaders(7, 'alice'), ['bob']);
    state.applyRead({ conv: 'g:team', user: 'carol', seq: 9 });
    assert.equal(team.receiptOf(9, 'alice').status, 'read');
    // A member who joins and has not read yet: read by some again.
    team.members = ['alice', 'bob', 'carol', 'dave'];
    assert.deepEqual(team.receiptOf(9, 'alice'), { status: 'partly-read', readCount: 2, others: 3 });

    // Above receipts.max_group_size the entry has no reads: the page asks.
    const crowd = state.conversations.get('g:crowd');
    crowd.members = ['alice', 'bob', 'carol'];
    assert.equal(crowd.receiptOf(1, 'alice').status, 'sent');
    // A reads reply names the asker too: its own position is not a reader's.
    state.applyReads(crowd, { alice: 9, bob: 4 });
    assert.deepEqual(crowd.receiptOf(4, 'alice'), { status: 'partly-read', readCount: 1, others: 2 });
    assert.equal(crowd.unread, 9, 'the reads reply does not move the own cursor');
  });

  test('a conversation too far behind skips to its newest seq', () => {
    const state = new ChatState('alice');
    state.receive(msg(1));
    const conversation = state.conversations.get('dm:alice:bob');
    conversation.skipTo(900);
    assert.equal(conversation.cursor, 900);
    assert.equal(conversation.messages.size, 0);
    assert.equal(conversation.hasOlder, true);
    assert.equal(state.receive(msg(901)).added, true);
  });

  test('typing shows for three seconds and ends with the typer\'s message', () => {
    const state = new ChatState('alice');
    const until = state.applyTyping({ conv: 'g:team', from: 'bob' }, 1000);
    const team = state.conversations.get('g:team');
    assert.equal(until, 4000);
    assert.deepEqual(team.typingUsers(3999), ['bob']);
    assert.deepEqual(team.typingUsers(4000), []);
    state.receive(msg(1, 'bob', 'g:team'));
    assert.deepEqual(team.typingUsers(1001), []);
  });
});
