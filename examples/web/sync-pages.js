// Catching up in pages (docs/PROTOCOL.md, "Catching up: sync"): a user may
// know more conversations than one `sync` frame has room for cursors
// (limits.max_frame_bytes, 64 KiB, about 60 bytes a cursor; a bigger frame
// is closed with 1009 on every connect, and anyone can cause that by DMing
// the user from thousands of accounts). So a round of sync goes page by page
// over the conversations the page knows, sorted by name: each page repeats
// while any `more` is true, then moves to the server's `next`. The same
// algorithm as the Rust client role (src/client/connection.rs, SYNC_PAGE).

// Cursors one `sync` carries at most: with ids of 64 characters, about 40 KB.
export const SYNC_PAGE = 500;

// The page a round is on: conversations after `after`, up to and including
// `until` (to the last, when null).
export class SyncPage {
  after = null;
  until = null;

  constructor(pageSize = SYNC_PAGE) {
    this.pageSize = pageSize;
  }

  // The `cursors`, `after` and `until` of the page's next `sync`, from the
  // cursors of every conversation the page knows (conv -> seq). A page
  // without an end gets one while more than pageSize known conversations
  // remain after `after`: when it starts, or on a repeat that learnt of more.
  // Names are ASCII, so JavaScript's string order is the protocol's bytewise order.
  fields(cursors) {
    const known = Object.keys(cursors).filter((conv) => this.after === null || conv > this.after);
    known.sort();
    if (this.until === null && known.length > this.pageSize) this.until = known[this.pageSize - 1];
    const inPage = this.until === null ? known : known.filter((conv) => conv <= this.until);
    const fields = { cursors: Object.fromEntries(inPage.map((conv) => [conv, cursors[conv]])) };
    if (this.after !== null) fields.after = this.after;
    if (this.until !== null) fields.until = this.until;
    return fields;
  }

  // Moves on to the page starting after `next` (a `synced`'s), whose end is
  // chosen when its first sync is made. False when there is no next page:
  // no `next`, or one that does not move forward (the round would not end).
  moveTo(next) {
    if (typeof next !== 'string' || (this.after !== null && next <= this.after)) return false;
    this.after = next;
    this.until = null;
    return true;
  }
}

// One sync at a time (the server refuses a second): asking while a round
// runs (a gap in the seqs, a reconnect) makes it go round once more, from
// the first page, when this one ends.
//
// cursors(): conv -> seq of every conversation the page knows.
// request(fields): sends a `sync` with those fields and resolves to its
//   `synced` (the caller applies it: last_seq, and the `msg` frames came
//   before it).
// skip(behind): a page still `more` after maxRepeats syncs is far behind:
//   behind is [[conv, last_seq], ...]; the caller skips them to their newest
//   message, and the round moves on.
export class PagedSync {
  #cursors;
  #request;
  #skip;
  #maxRepeats;
  #pageSize;
  #running = false;
  #wanted = false;

  constructor({ cursors, request, skip, maxRepeats, pageSize = SYNC_PAGE }) {
    this.#cursors = cursors;
    this.#request = request;
    this.#skip = skip;
    this.#maxRepeats = maxRepeats;
    this.#pageSize = pageSize;
  }

  get running() {
    return this.#running;
  }

  // Resolves when every page is caught up (at once when a round is already
  // running: that round goes again); rejects with the request's error.
  async sync() {
    this.#wanted = true;
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#wanted) {
        this.#wanted = false;
        await this.#round();
      }
    } finally {
      this.#running = false;
    }
  }

  // Every page, from the first.
  async #round() {
    const page = new SyncPage(this.#pageSize);
    for (let repeat = 1; ; repeat += 1) {
      const synced = await this.#request(page.fields(this.#cursors()));
      const behind = Object.entries(synced.convs ?? {})
        .filter(([, summary]) => summary.more)
        .map(([conv, summary]) => [conv, summary.last_seq]);
      if (behind.length > 0) {
        if (repeat < this.#maxRepeats) continue;
        this.#skip(behind);
      }
      if (!page.moveTo(synced.next)) return;
      repeat = 0;
    }
  }
}
