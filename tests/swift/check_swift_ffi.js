#!/usr/bin/env node
/*
 * Checks the Swift bindings against the C header without a Swift compiler.
 *
 * CI has no Swift toolchain, so nothing would notice when include/imbed.h
 * changes under bindings/swift (a renamed function, a new parameter, a
 * struct field renamed). This script parses every Swift source with
 * tree-sitter-swift, collects each use of a C name (`imbed_*` functions and
 * types, `IMBED_*` constants) and checks it against the header:
 *   - a called function exists and gets as many arguments as its prototype has
 *     parameters (C functions import into Swift without argument labels);
 *   - a called struct (Swift's memberwise initializer) gets either no
 *     arguments or every field, labelled, in declaration order;
 *   - any other name is a function, type or constant the header declares;
 *   - the Swift parses without errors, so no use hides in a broken tree;
 *   - the header declares no name twice as different kinds of symbol (a type
 *     and a function), which C compilers and Swift's importer both reject.
 *
 * Before that it runs its self-test: tests/swift/fixtures/wrong.swift is
 * checked, and every line marked `// expect: TEXT` must be reported with a
 * message containing TEXT, and no unmarked line may be reported. A checker
 * that stopped finding mistakes would fail here, not pass quietly.
 *
 * Usage: node tests/swift/check_swift_ffi.js   (exit 0: all good; 1: problems)
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const Parser = require('tree-sitter');
const Swift = require('tree-sitter-swift');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const HEADER_PATH = path.join(REPO_ROOT, 'include', 'imbed.h');
const SWIFT_SOURCES = path.join(REPO_ROOT, 'bindings', 'swift', 'Sources');
const WRONG_FIXTURE = path.join(__dirname, 'fixtures', 'wrong.swift');

// A C name of the API: functions and types are imbed_*, constants IMBED_*.
const C_NAME = /^(imbed_|IMBED_)\w+$/;
const EXPECT_MARK = /\/\/\s*expect:\s*(.+?)\s*$/;

/* ---------- the header ---------- */

/** The header without comments, with line breaks kept so offsets map to lines. */
function stripComments(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ' '))
    .replace(/\/\/[^\n]*/g, '');
}

/** Splits a C parameter or field list at its top-level commas. */
function splitTopLevel(list, separator) {
  const parts = [];
  let depth = 0;
  let current = '';
  for (const character of list) {
    if (character === '(') depth += 1;
    if (character === ')') depth -= 1;
    if (character === separator && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += character;
    }
  }
  parts.push(current);
  return parts.map((part) => part.trim()).filter((part) => part !== '');
}

/** The name a C declaration declares: `void (*on_event)(...)` or `const char *user`. */
function declaredName(declaration) {
  const functionPointer = /\(\s*\*\s*(\w+)\s*\)/.exec(declaration);
  if (functionPointer) return functionPointer[1];
  const plain = /(\w+)\s*(\[[^\]]*\])?\s*$/.exec(declaration);
  return plain ? plain[1] : declaration;
}

/**
 * What include/imbed.h declares, read with regular expressions over the
 * regular layout cbindgen writes: `#define IMBED_X`, `typedef enum {...} name;`,
 * `typedef struct {...} name;`, `typedef struct name name;` and one
 * prototype per declaration, `type imbed_name(params);`, possibly over lines.
 */
function parseHeader(text) {
  const code = stripComments(text);
  const header = {
    functions: new Map(),
    functionLines: new Map(),
    structs: new Map(),
    types: new Set(),
    constants: new Set(),
  };

  for (const match of code.matchAll(/^#define\s+(IMBED_\w+)/gm)) {
    header.constants.add(match[1]);
  }
  for (const match of code.matchAll(/typedef\s+enum\s*\w*\s*\{([^}]*)\}\s*(\w+)\s*;/g)) {
    header.types.add(match[2]);
    for (const constant of match[1].matchAll(/\b(IMBED_\w+)\s*(?:=|,|$)/g)) {
      header.constants.add(constant[1]);
    }
  }
  for (const match of code.matchAll(/typedef\s+struct\s*\w*\s*\{([^}]*)\}\s*(\w+)\s*;/g)) {
    header.types.add(match[2]);
    header.structs.set(match[2], splitTopLevel(match[1], ';').map(declaredName));
  }
  for (const match of code.matchAll(/typedef\s+struct\s+(\w+)\s+(\w+)\s*;/g)) {
    header.types.add(match[2]);
  }
  for (const match of code.matchAll(/^[ \t]*[A-Za-z_][\w \t*]*?\b(imbed_\w+)\s*\(([^;{}]*)\)\s*;/gm)) {
    const parameters = splitTopLevel(match[2], ',');
    const isVoid = parameters.length === 1 && parameters[0] === 'void';
    header.functions.set(match[1], isVoid ? [] : parameters.map(declaredName));
    header.functionLines.set(match[1], code.slice(0, match.index).split('\n').length);
  }
  return header;
}

/** Names the header declares both as a type and as a function: C rejects such a header. */
function headerCollisions(header) {
  return [...header.functions.keys()].filter((name) => header.types.has(name));
}

/* ---------- the Swift sources ---------- */

function makeParser() {
  const parser = new Parser();
  parser.setLanguage(Swift);
  return parser;
}

/** Every named node below `node`, depth first. */
function* walk(node) {
  yield node;
  for (const child of node.namedChildren) {
    yield* walk(child);
  }
}

/**
 * The arguments of a call_expression: one entry per argument, its label or
 * null, trailing closures included (Swift passes them as the last arguments).
 */
function callArguments(call) {
  const suffix = call.namedChildren.find((child) => child.type === 'call_suffix');
  if (!suffix) return [];
  const argumentsOut = [];
  for (const part of suffix.namedChildren) {
    if (part.type === 'value_arguments') {
      for (const argument of part.namedChildren.filter((child) => child.type === 'value_argument')) {
        const label = argument.namedChildren.find((child) => child.type === 'value_argument_label');
        argumentsOut.push(label ? label.text : null);
      }
    } else if (part.type === 'lambda_literal') {
      argumentsOut.push(null);
    }
  }
  return argumentsOut;
}

/**
 * The C names one Swift source uses: calls (with their argument labels),
 * other references, and the places the parser could not make sense of.
 */
function collectUses(parser, source) {
  const tree = parser.parse(source);
  const calls = [];
  const references = [];
  const syntaxErrors = [];
  const callees = new Set();

  for (const node of walk(tree.rootNode)) {
    if (node.type === 'ERROR' || node.isMissing) {
      syntaxErrors.push({ line: node.startPosition.row + 1, text: node.text.slice(0, 40) });
    }
    if (node.type === 'call_expression') {
      const callee = node.namedChildren[0];
      if (callee && callee.type === 'simple_identifier' && C_NAME.test(callee.text)) {
        callees.add(callee.id);
        calls.push({ name: callee.text, line: callee.startPosition.row + 1, labels: callArguments(node) });
      }
    }
  }
  for (const node of walk(tree.rootNode)) {
    const isName = node.type === 'simple_identifier' || node.type === 'type_identifier';
    if (isName && C_NAME.test(node.text) && !callees.has(node.id)) {
      references.push({ name: node.text, line: node.startPosition.row + 1, asType: node.type === 'type_identifier' });
    }
  }
  return { calls, references, syntaxErrors };
}

/* ---------- the check ---------- */

/** Problems with one call of a C function or of a C struct's initializer. */
function checkCall(header, call) {
  const { name, labels } = call;
  if (header.functions.has(name)) {
    const parameters = header.functions.get(name);
    const problems = [];
    if (labels.length !== parameters.length) {
      problems.push(`${name} takes ${parameters.length} parameters (${parameters.join(', ')}), called with ${labels.length}`);
    }
    if (labels.some((label) => label !== null)) {
      problems.push(`${name} is a C function: Swift calls it without argument labels`);
    }
    return problems;
  }
  if (header.structs.has(name)) {
    const fields = header.structs.get(name);
    const fieldList = fields.map((field) => `${field}:`).join(' ');
    if (labels.length !== 0 && labels.join(',') !== fields.join(',')) {
      return [`${name}(...) needs no arguments or exactly (${fieldList}) in order, got (${labels.map((label) => `${label ?? '_'}:`).join(' ')})`];
    }
    return [];
  }
  if (header.types.has(name) || header.constants.has(name)) {
    return [`${name} is not a function or struct in include/imbed.h; it cannot be called`];
  }
  return [`${name} is not declared in include/imbed.h`];
}

/** Problems with one non-call use of a C name. */
function checkReference(header, reference) {
  const { name, asType } = reference;
  if (asType) {
    return header.types.has(name) ? [] : [`type ${name} is not declared in include/imbed.h`];
  }
  if (name.startsWith('IMBED_')) {
    return header.constants.has(name) ? [] : [`constant ${name} is not declared in include/imbed.h`];
  }
  const known = header.functions.has(name) || header.types.has(name);
  return known ? [] : [`${name} is not declared in include/imbed.h`];
}

/** Every problem of one Swift file as {file, line, message}, and the C names it uses. */
function checkFile(parser, header, file) {
  const { calls, references, syntaxErrors } = collectUses(parser, fs.readFileSync(file, 'utf8'));
  const problems = [];
  for (const error of syntaxErrors) {
    problems.push({ file, line: error.line, message: `Swift that does not parse: ${JSON.stringify(error.text)}` });
  }
  for (const call of calls) {
    for (const message of checkCall(header, call)) problems.push({ file, line: call.line, message });
  }
  for (const reference of references) {
    for (const message of checkReference(header, reference)) problems.push({ file, line: reference.line, message });
  }
  const used = new Set([...calls, ...references].map((use) => use.name));
  return { problems, used };
}

function swiftFilesUnder(directory) {
  return fs
    .readdirSync(directory, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.swift'))
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name))
    .sort();
}

function formatProblem(problem) {
  return `${path.relative(REPO_ROOT, problem.file)}:${problem.line}: ${problem.message}`;
}

/* ---------- the self-test ---------- */

/**
 * Failures of the checker itself, as messages: the header must parse into
 * what it plainly declares, and every mistake marked in the fixture must be
 * reported, on its line, and nothing else.
 */
function selfTest(parser, header) {
  const failures = [];
  const sendParameters = header.functions.get('imbed_server_send');
  if (!sendParameters || sendParameters.length !== 6) {
    failures.push(`header parse: imbed_server_send should have 6 parameters, found ${JSON.stringify(sendParameters)}`);
  }
  if (header.functions.get('imbed_last_error')?.length !== 0) {
    failures.push('header parse: imbed_last_error(void) should have 0 parameters');
  }
  const listenerFields = header.structs.get('imbed_listener')?.join(',');
  if (listenerFields !== 'user_data,on_event,on_log,authenticate,destroy') {
    failures.push(`header parse: imbed_listener fields are ${listenerFields}`);
  }
  for (const name of ['IMBED_OK', 'IMBED_MAX_ID_LEN', 'IMBED_EVENT_MESSAGE']) {
    if (!header.constants.has(name)) failures.push(`header parse: constant ${name} not found`);
  }
  if (!header.types.has('imbed_server')) failures.push('header parse: opaque type imbed_server not found');

  const expected = new Map();
  fs.readFileSync(WRONG_FIXTURE, 'utf8').split('\n').forEach((text, index) => {
    const mark = EXPECT_MARK.exec(text);
    if (mark) expected.set(index + 1, mark[1]);
  });
  if (expected.size === 0) failures.push('fixture: wrong.swift marks no expected problem');

  const { problems } = checkFile(parser, header, WRONG_FIXTURE);
  for (const [line, text] of expected) {
    if (!problems.some((problem) => problem.line === line && problem.message.includes(text))) {
      failures.push(`fixture line ${line}: expected a problem containing ${JSON.stringify(text)}, got none`);
    }
  }
  for (const problem of problems.filter((candidate) => !expected.has(candidate.line))) {
    failures.push(`fixture: unexpected problem: ${formatProblem(problem)}`);
  }
  return { failures, expectedCount: expected.size };
}

/* ---------- main ---------- */

function main() {
  const parser = makeParser();
  const header = parseHeader(fs.readFileSync(HEADER_PATH, 'utf8'));

  const { failures, expectedCount } = selfTest(parser, header);
  if (failures.length > 0) {
    console.error('check_swift_ffi self-test FAILED: the checker cannot be trusted');
    for (const failure of failures) console.error(`  ${failure}`);
    process.exit(1);
  }
  console.log(`check_swift_ffi self-test: all ${expectedCount} planted mistakes in fixtures/wrong.swift reported`);

  const files = swiftFilesUnder(SWIFT_SOURCES);
  const problems = headerCollisions(header).map((name) => ({
    file: HEADER_PATH,
    line: header.functionLines.get(name),
    message: `${name} is declared both as a type and as a function; C and Swift reject the header`,
  }));
  const used = new Set();
  for (const file of files) {
    const result = checkFile(parser, header, file);
    problems.push(...result.problems);
    for (const name of result.used) used.add(name);
  }
  const uncalled = [...header.functions.keys()].filter((name) => !used.has(name));
  if (uncalled.length > 0) {
    // Not a failure: the bindings may leave some calls to C (imbed_version).
    console.log(`note: functions of include/imbed.h the Swift bindings do not use: ${uncalled.join(', ')}`);
  }
  if (problems.length > 0) {
    console.error(`check_swift_ffi: ${problems.length} mismatches between bindings/swift and include/imbed.h:`);
    for (const problem of problems) console.error(`  ${formatProblem(problem)}`);
    process.exit(1);
  }
  console.log(`check_swift_ffi: ${files.length} Swift files, ${used.size} C names, all declared in include/imbed.h with matching arity`);
}

main();
