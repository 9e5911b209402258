// Search and files without a browser: the query's words as the server
// reads them, result pages, highlighting; file references in bodies, and
// what a message with files shows in one line.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { filesOf, formatSize, isImageType, messageBody, previewable, safeFileName } from '../../examples/web/files.js';
import { messageText, previewText } from '../../examples/web/render.js';
import { SearchResults, highlightParts, queryProblem, queryWords } from '../../examples/web/search.js';

const ID = 'a'.repeat(64);

describe('search', () => {
  test('words are runs of letters and digits, without case or diacritics', () => {
    assert.deepEqual(queryWords('Zèbra  crossing, 42!'), ['zebra', 'crossing', '42']);
    assert.deepEqual(queryWords('Ze\u0300bra'), ['zebra'], 'a decomposed accent stays in its word');
    assert.deepEqual(queryWords('?!'), []);
  });

  test('a query the server would refuse is caught first', () => {
    assert.equal(queryProblem('zebra'), '');
    assert.match(queryProblem('!!'), /word/);
    assert.match(queryProblem(Array.from({ length: 17 }, (_, n) => `w${n}`).join(' ')), /16 words/);
    assert.match(queryProblem('é'.repeat(129)), /256 bytes/);
  });

  test('highlighting marks whole words of the query only', () => {
    const parts = highlightParts('A Zèbra crossed; zebras did not.', queryWords('zebra'));
    assert.deepEqual(parts, [
      { text: 'A ', match: false },
      { text: 'Zèbra', match: true },
      { text: ' crossed; zebras did not.', match: false },
    ]);
    assert.equal(parts.map((part) => part.text).join(''), 'A Zèbra crossed; zebras did not.');
  });

  test('pages add up, repeats are dropped, and a stale reply is ignored', () => {
    const search = new SearchResults();
    const first = search.begin('zebra');
    assert.deepEqual(first.fields, { query: 'zebra', limit: 20 });
    assert.equal(search.loading, true);
    const result = (seq) => ({ type: 'msg', conv: 'g:team', seq, from: 'bob', body: { text: 'zebra' }, ts: seq });
    assert.equal(search.accept(first.token, { results: [result(9), result(8)], more: true, next: 'c1' }), true);
    assert.equal(search.more, true);
    const second = search.nextPage();
    assert.deepEqual(second.fields, { query: 'zebra', after: 'c1', limit: 20 });
    assert.equal(search.nextPage(), null, 'one page at a time');
    search.accept(second.token, { results: [result(8), result(7)], more: false });
    assert.deepEqual(search.results.map((found) => found.seq), [9, 8, 7]);
    assert.equal(search.more, false);
    assert.equal(search.nextPage(), null);

    const old = search.begin('giraffe');
    const fresh = search.begin('lion');
    assert.equal(search.accept(old.token, { results: [result(1)], more: false }), false);
    assert.equal(search.accept(fresh.token, { results: [], more: false }), true);
    assert.deepEqual(search.results, []);
    assert.equal(search.query, 'lion');
  });

  test('a next that does not move ends the paging', () => {
    const search = new SearchResults();
    const { token } = search.begin('zebra');
    search.accept(token, { results: [], more: true, next: 'x' });
    const page = search.nextPage();
    search.accept(page.token, { results: [], more: true, next: 'x' });
    assert.equal(search.more, false);
  });
});

describe('files', () => {
  test('a body names files by objects with an id, or by ids; nothing else is kept', () => {
    assert.deepEqual(messageBody('hi'), { text: 'hi' });
    const file = { id: ID, name: 'plan.png', type: 'image/png', size: 48213 };
    assert.deepEqual(messageBody('', [{ ...file, extra: 1 }]), { text: '', files: [file] });
    assert.deepEqual(filesOf({ text: 'x', files: [file] }), [file]);
    assert.deepEqual(filesOf({ files: [ID] }), [{ id: ID, name: `file-${ID.slice(0, 8)}`, type: '', size: null }]);
    assert.deepEqual(filesOf({ files: [{ id: '../ws' }, { id: ID.toUpperCase() }, null, 7] }), []);
    assert.deepEqual(filesOf('text'), []);
    assert.deepEqual(filesOf(null), []);
  });

  test('only image types are previewed, and names are safe to save', () => {
    assert.equal(isImageType('image/png'), true);
    assert.equal(isImageType('application/pdf'), false);
    assert.equal(isImageType('image/png; charset=x'), false);
    assert.equal(previewable({ type: 'image/jpeg', size: 2000000 }), true);
    assert.equal(previewable({ type: 'image/jpeg', size: 20000000 }), false, 'a big one is a file to save');
    assert.equal(previewable({ type: 'image/jpeg', size: null }), true);
    assert.equal(safeFileName('invoice\u202Efdp.exe'), 'invoice_fdp.exe');
    assert.equal(safeFileName('../../etc/passwd'), '.._.._etc_passwd');
    assert.equal(safeFileName('..'), 'file');
    assert.equal(formatSize(900), '900 B');
    assert.equal(formatSize(2048), '2 KB');
    assert.equal(formatSize(null), '');
  });

  test('one line for a message: its text, its files, or that it was deleted', () => {
    const files = [{ id: ID, name: 'plan.png' }];
    assert.equal(previewText({ body: { text: 'the plan', files } }), '📎 the plan');
    assert.equal(previewText({ body: { text: '', files } }), '📎 plan.png');
    assert.equal(previewText({ body: { files: [...files, { id: ID }] } }), '📎 2 files');
    assert.equal(previewText({ body: null, deleted: true }), 'Message deleted');
    assert.equal(previewText({ body: { text: 'plain' } }), 'plain');
    assert.equal(messageText({ files }), '');
    assert.equal(messageText({ other: 1 }), '{"other":1}');
  });
});
