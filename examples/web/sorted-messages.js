// The messages the page holds of one conversation, in seq order, with
// lookups by seq and by position. A conversation may hold 100,000 messages
// while more arrive every millisecond, so nothing here walks or copies them
// all: a message arrives in O(log n) (O(1) at the end, where live ones land),
// and the oldest and newest are read in O(1).

export class SortedMessages {
  // Ascending seq; `#bySeq` finds one without a search.
  #inOrder = [];
  #bySeq = new Map();

  get size() {
    return this.#inOrder.length;
  }

  get oldest() {
    return this.#inOrder[0];
  }

  get newest() {
    return this.#inOrder.at(-1);
  }

  has(seq) {
    return this.#bySeq.has(seq);
  }

  get(seq) {
    return this.#bySeq.get(seq);
  }

  at(index) {
    return this.#inOrder[index];
  }

  // The position of `seq`, or -1 when it is not held.
  indexOf(seq) {
    if (!this.#bySeq.has(seq)) return -1;
    return this.#firstIndexNotBelow(seq);
  }

  // How many of the messages have a seq above `seq`, by binary search.
  countAbove(seq) {
    return this.#inOrder.length - this.#firstIndexNotBelow(seq + 1);
  }

  // Adds a message in its place by seq; false when its seq is held already.
  add(msg) {
    if (this.#bySeq.has(msg.seq)) return false;
    this.#bySeq.set(msg.seq, msg);
    const order = this.#inOrder;
    if (order.length === 0 || order.at(-1).seq < msg.seq) order.push(msg);
    else order.splice(this.#firstIndexNotBelow(msg.seq), 0, msg);
    return true;
  }

  clear() {
    this.#inOrder = [];
    this.#bySeq.clear();
  }

  [Symbol.iterator]() {
    return this.#inOrder[Symbol.iterator]();
  }

  // Binary search: the first position whose seq is at least `seq`.
  #firstIndexNotBelow(seq) {
    let low = 0;
    let high = this.#inOrder.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#inOrder[middle].seq < seq) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
