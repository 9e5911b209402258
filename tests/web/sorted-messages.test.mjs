// The page's messages at flood scale, without a browser: the ordered store
// of one conversation, and the items the message list asks for by index.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChatState } from '../../examples/web/chat-state.js';
import { MessageItems } from '../../examples/web/message-items.js';
import { SortedMessages } from '../../examples/web/sorted-messages.js';

function msg(seq, from = 'bob', conv = 'g:team') {
  return { type: 'msg', conv, seq, from, id: `${from}-${seq}`, body: { text: `message ${seq}` }, ts: 1700000000000 + seq };
}

const seqsOf = (messages) => [...messages].map((message) => message.seq);

describe('sorted messages', () => {
  test('each message lands in its place by seq, once', () => {
    const messages = new SortedMessages();
    for (const seq of [5, 1, 9, 3, 7]) assert.equal(messages.add(msg(seq)), true);
    assert.equal(messages.add(msg(3)), false, 'a seq already held');
    assert.deepEqual(seqsOf(messages), [1, 3, 5, 7, 9]);
    assert.equal(messages.size, 5);
    assert.equal(messages.oldest.seq, 1);
    assert.equal(messages.newest.seq, 9);
    assert.equal(messages.at(2).seq, 5);
    assert.equal(messages.get(7).seq, 7);
    assert.equal(messages.indexOf(9), 4);
    assert.equal(messages.indexOf(4), -1);
    assert.equal(messages.countAbove(0), 5);
    assert.equal(messages.countAbove(5), 2);
    assert.equal(messages.countAbove(6), 2);
    assert.equal(messages.countAbove(9), 0);
    messages.clear();
    assert.equal(messages.size, 0);
    assert.equal(messages.newest, undefined);
  });

  test('a conversation of 200,000 messages: live ones append, a history page goes below, all in order', () => {
    const state = new ChatState('alice');
    const team = state.conversation('g:team');
    state.applyConversationList([{ conv: 'g:team', last_seq: 100, read_seq: 100 }]);
    const started = performance.now();
    for (let seq = 101; seq <= 200100; seq += 1) assert.equal(state.receive(msg(seq)).added, true);
    const receivedMs = performance.now() - started;
    // Spread into Math.max, as the page once did, throws at this size.
    assert.equal(team.newestSeq, 200100);
    assert.equal(team.oldestSeq, 101);
    assert.equal(team.cursor, 200100);
    assert.equal(team.hasGap, false);

    state.receivePage(team, Array.from({ length: 50 }, (_, index) => msg(51 + index)));
    assert.equal(team.oldestSeq, 51);
    assert.equal(team.messages.indexOf(101), 50);
    assert.equal(team.messages.at(200049).seq, 200100);
    // Linear work per message would take minutes here; a loaded CI machine
    // does this in well under a second.
    assert.ok(receivedMs < 5000, `200,000 messages received in ${receivedMs.toFixed(0)} ms`);
  });

  test('a message that comes after a gap waits in its place for the gap to fill', () => {
    const state = new ChatState('alice');
    const team = state.conversation('g:team');
    for (const seq of [1, 2, 5, 4]) state.receive(msg(seq));
    assert.deepEqual(seqsOf(team.messages), [1, 2, 4, 5]);
    assert.equal(team.cursor, 2);
    assert.equal(team.hasGap, true);
    state.receive(msg(3));
    assert.equal(team.cursor, 5);
    assert.equal(team.hasGap, false);
  });
});

describe('message items', () => {
  test('stored messages in seq order, then the waiting ones, then the refused ones', () => {
    const state = new ChatState('alice');
    const team = state.conversation('g:team');
    state.receive(msg(1, 'bob'));
    state.receive(msg(2, 'alice'));
    state.receive(msg(3, 'alice'));
    team.members = ['alice', 'bob'];
    state.applyRead({ conv: 'g:team', user: 'bob', seq: 2 });
    const waiting = state.outbox.add(team, { text: 'on its way' });
    const refusedEntry = state.outbox.add(team, { text: 'too big' });
    state.refuse(refusedEntry, 'too large');

    const items = new MessageItems(team, {
      me: 'alice',
      pending: state.pendingByConversation().get('g:team'),
      refused: state.refused,
    });
    assert.equal(items.count, 5);
    const all = Array.from({ length: items.count }, (_, index) => items.at(index));
    assert.deepEqual(
      all.map(({ key, status }) => [key, status]),
      [
        ['seq-1', null],
        ['seq-2', 'read'],
        ['seq-3', 'sent'],
        [`sending-${waiting.id}`, 'sending'],
        [`refused-${refusedEntry.id}`, 'refused'],
      ],
    );
    assert.deepEqual(all[1].readers, ['bob']);
    assert.deepEqual([all[1].readCount, all[1].others, all[2].readCount], [1, 1, 0]);
    assert.equal(all[4].reason, 'too large');
    assert.equal(items.indexOfKey('seq-3'), 2);
    assert.equal(items.indexOfKey(`sending-${waiting.id}`), 3);
    assert.equal(items.indexOfKey(`refused-${refusedEntry.id}`), 4);
    assert.equal(items.indexOfKey('seq-9'), -1);
    assert.equal(items.indexOfKey('sending-gone'), -1);
  });

  test('items are made only when asked for, and see messages that arrive later', () => {
    const state = new ChatState('alice');
    const team = state.conversation('g:team');
    for (let seq = 1; seq <= 100000; seq += 1) state.receive(msg(seq));
    const items = new MessageItems(team, { me: 'alice', pending: [], refused: [] });
    assert.equal(items.count, 100000);
    assert.equal(items.at(99999).key, 'seq-100000');
    state.receive(msg(100001));
    assert.equal(items.count, 100001);
    assert.equal(items.indexOfKey('seq-100001'), 100000);
  });
});
