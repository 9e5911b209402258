// Searching messages (docs/PROTOCOL.md, "Search"), without DOM: the query's
// words as the server reads them, the results page by page, and where a
// result's text matches, for highlighting.

// The server's limits on a query.
export const MAX_QUERY_BYTES = 256;
export const MAX_QUERY_WORDS = 16;
// Results a page asks for: the server's default, at most 100.
export const SEARCH_PAGE = 20;

// A word is a run of letters and digits (marks go with their letter, so a
// decomposed "é" stays one word).
const WORD = /[\p{L}\p{N}][\p{L}\p{N}\p{M}]*/gu;
const MARKS = /\p{M}/gu;
const encoder = new TextEncoder();

// A word as the server matches it: without case or diacritics.
export function foldWord(word) {
  return word.normalize('NFD').replace(MARKS, '').toLowerCase();
}

export function queryWords(query) {
  return (query.normalize('NFC').match(WORD) ?? []).map(foldWord);
}

// Why the server would refuse `query`, or '' when it would not.
export function queryProblem(query) {
  const words = queryWords(query);
  if (words.length === 0) return 'Type a word to search for.';
  if (words.length > MAX_QUERY_WORDS) return `Search for at most ${MAX_QUERY_WORDS} words.`;
  if (encoder.encode(query).length > MAX_QUERY_BYTES) return `Search for at most ${MAX_QUERY_BYTES} bytes of text.`;
  return '';
}

// `text` in parts, [{ text, match }], where match is true for a whole word
// of the query (the server finds messages with every word; each is marked).
export function highlightParts(text, words) {
  const wanted = new Set(words);
  const parts = [];
  let last = 0;
  for (const found of text.matchAll(WORD)) {
    if (!wanted.has(foldWord(found[0]))) continue;
    if (found.index > last) parts.push({ text: text.slice(last, found.index), match: false });
    parts.push({ text: found[0], match: true });
    last = found.index + found[0].length;
  }
  if (last < text.length) parts.push({ text: text.slice(last), match: false });
  return parts;
}

// One search: its query, the results so far (`msg` frames in their current
// state, newest first), and the `after` of the next page. A new query
// starts a new search; replies to an older one are ignored.
export class SearchResults {
  query = '';
  words = [];
  results = [];
  next = null;
  more = false;
  loading = false;
  error = '';
  // Bumped by each new query and page request, to ignore stale replies.
  #generation = 0;
  #seen = new Set();

  get active() {
    return this.query !== '';
  }

  // Starts a search for `query`: returns the request's fields and a token
  // for accept().
  begin(query) {
    this.query = query;
    this.words = queryWords(query);
    this.results = [];
    this.next = null;
    this.more = false;
    this.error = '';
    this.#seen.clear();
    return this.#request({ query, limit: SEARCH_PAGE });
  }

  // The next page of the same query, or null when there is none (or one is
  // on its way).
  nextPage() {
    if (!this.active || !this.more || this.next === null || this.loading) return null;
    return this.#request({ query: this.query, after: this.next, limit: SEARCH_PAGE });
  }

  // A reply to the request of `token`; false when it is stale.
  accept(token, reply) {
    if (token !== this.#generation) return false;
    this.loading = false;
    for (const result of Array.isArray(reply.results) ? reply.results : []) {
      const key = `${result.conv}#${result.seq}`;
      if (typeof result.conv !== 'string' || !Number.isSafeInteger(result.seq) || this.#seen.has(key)) continue;
      this.#seen.add(key);
      this.results.push(result);
    }
    // A `next` that does not change would page for ever.
    const next = typeof reply.next === 'string' && reply.next !== this.next ? reply.next : null;
    this.more = reply.more === true && next !== null;
    this.next = next;
    return true;
  }

  // The request of `token` failed with `message`; false when it is stale.
  fail(token, message) {
    if (token !== this.#generation) return false;
    this.loading = false;
    this.error = message;
    return true;
  }

  clear() {
    this.#generation += 1;
    this.query = '';
    this.words = [];
    this.results = [];
    this.next = null;
    this.more = false;
    this.loading = false;
    this.error = '';
    this.#seen.clear();
  }

  #request(fields) {
    this.#generation += 1;
    this.loading = true;
    return { fields, token: this.#generation };
  }
}
