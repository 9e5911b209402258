// What the message list shows of one conversation, item by item, without
// any DOM: its stored messages in seq order, then the ones waiting in the
// outbox, then the ones the server refused. The list asks only for the items
// on screen, so an item is made when asked for, never for all of them.

// One item: key (stable across renders), seq (stored ones), from, ts, body,
// status (null for others' messages; for own ones 'sending' | 'sent' |
// 'read' | 'refused'), readers (who read an own stored message), reason
// (why a refused one was refused).
export class MessageItems {
  #conversation;
  #me;
  #unsent;

  // pending: the conversation's outbox entries; refused: its refused sends.
  constructor(conversation, { me, pending, refused }) {
    this.#conversation = conversation;
    this.#me = me;
    const unsent = (entries, status) =>
      entries.map((entry) => ({ key: `${status}-${entry.id}`, from: me, ts: entry.createdAt, body: entry.body, status, reason: entry.reason, readers: [] }));
    this.#unsent = [...unsent(pending, 'sending'), ...unsent(refused, 'refused')];
  }

  get count() {
    return this.#conversation.messages.size + this.#unsent.length;
  }

  at(index) {
    const stored = this.#conversation.messages;
    if (index >= stored.size) return this.#unsent[index - stored.size];
    const msg = stored.at(index);
    const readers = msg.from === this.#me ? this.#conversation.readersOf(msg.seq) : [];
    return {
      key: `seq-${msg.seq}`,
      seq: msg.seq,
      from: msg.from,
      ts: msg.ts,
      body: msg.body,
      status: msg.from !== this.#me ? null : readers.length ? 'read' : 'sent',
      readers,
    };
  }

  // The index of the item with this key, or -1: a stored message by binary
  // search, an unsent one among the few unsent.
  indexOfKey(key) {
    const stored = this.#conversation.messages;
    const seq = /^seq-(\d+)$/.exec(key);
    if (seq) return stored.indexOf(Number(seq[1]));
    const index = this.#unsent.findIndex((item) => item.key === key);
    return index === -1 ? -1 : stored.size + index;
  }
}
