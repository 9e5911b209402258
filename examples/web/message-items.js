// What the message list shows of one conversation, item by item, without
// any DOM: its stored messages in seq order, then the ones waiting in the
// outbox, then the ones the server refused. The list asks only for the items
// on screen, so an item is made when asked for, never for all of them.
// Events (message-events.js) are not items: they show in their targets.
import { reactionsOf, replyTargetOf, revisionOf } from './message-events.js';
import { previewText } from './render.js';

// Past this many other members a label counts readers instead of naming them.
const NAMED_READERS = 10;

// One item: key (stable across renders), seq (stored ones), from, ts, body,
// status (null for others' messages; for own ones 'sending' | 'sent' |
// 'partly-read' | 'read' | 'refused', see Conversation.receiptOf for the
// rule), readCount and others (of an own stored message: how many other
// members read it, of how many; others is null while a group's members are
// not known), readers (their names, in groups of up to NAMED_READERS other
// members), reason (why a refused one was refused); and what events made
// of it: edited (when, or undefined), deleted, reactions (see reactionsOf),
// quote (of the message it replies to: { seq, loaded, from, text, deleted },
// loaded false when the page does not hold it; null for no reply), and
// revision, which changes whenever any of those does.
export class MessageItems {
  #conversation;
  #me;
  #unsent;

  // pending: the conversation's outbox entries; refused: its refused sends.
  constructor(conversation, { me, pending, refused }) {
    this.#conversation = conversation;
    this.#me = me;
    const unsent = (entries, status) =>
      entries.map((entry) => {
        const quote = this.#quoteOf(replyTargetOf(entry));
        return { key: `${status}-${entry.id}`, from: me, ts: entry.createdAt, body: entry.body, status, reason: entry.reason, readCount: 0, others: null, readers: [], edited: undefined, deleted: false, reactions: [], quote, revision: quote?.revision ?? '' };
      });
    this.#unsent = [...unsent(pending, 'sending'), ...unsent(refused, 'refused')];
  }

  get count() {
    return this.#conversation.messages.size + this.#unsent.length;
  }

  at(index) {
    const stored = this.#conversation.messages;
    if (index >= stored.size) return this.#unsent[index - stored.size];
    const msg = stored.at(index);
    const quote = this.#quoteOf(replyTargetOf(msg));
    const item = {
      key: `seq-${msg.seq}`,
      seq: msg.seq,
      from: msg.from,
      ts: msg.ts,
      body: msg.body,
      status: null,
      readCount: 0,
      others: null,
      readers: [],
      edited: Number.isSafeInteger(msg.edited) ? msg.edited : undefined,
      deleted: msg.deleted === true,
      reactions: reactionsOf(msg, this.#me),
      quote,
      revision: `${revisionOf(msg)}/${quote?.revision ?? ''}`,
    };
    if (msg.from !== this.#me) return item;
    const { status, readCount, others } = this.#conversation.receiptOf(msg.seq, this.#me);
    const named = this.#conversation.isGroup && readCount > 0 && (others ?? readCount) <= NAMED_READERS;
    return { ...item, status, readCount, others, readers: named ? this.#conversation.namesOfReaders(msg.seq, this.#me) : [] };
  }

  // What a reply shows of the message it replies to.
  #quoteOf(seq) {
    if (seq === null) return null;
    const target = this.#conversation.messages.get(seq);
    if (!target) return { seq, loaded: false, revision: 'not loaded' };
    const deleted = target.deleted === true;
    return { seq, loaded: true, from: target.from, text: previewText(target), deleted, revision: String(revisionOf(target)) };
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
