// Gazette's stream-sum summer as a weir consumer component, in JavaScript.
//
// The same summer as the Rust reference (guest-summer: lib.rs, summer.rs,
// sum.rs), built with componentize-qjs (QuickJS, non-async ABI: `--sync`)
// against the `consumer` world of /work/main/wit. For every chunk that is not
// an ACK it folds the chunk's data into its stream's running CRC-64/XZ; when
// the stream's final (empty or null `Data`) chunk arrives it publishes the
// final sum to `examples/stream-sum/sums` within the transaction.
//
// Guarantees, as the Rust summer's:
// - A sum is loaded from the store on the transaction's first touch of its
//   stream (key = the 16 raw id bytes, value = the sum JSON) and kept in a
//   per-transaction cache; `finalize-txn` writes every cached sum back and
//   empties the cache, so sums commit with the shard's checkpoint.
// - Documents are byte-identical to the Rust summer's: compact
//   `{"ID":[16 numbers],"SeqNo":n,"Value":u64}` in that field order, with
//   SeqNo and Value exact over the whole u64 range. JSON is read from the
//   bytes (not with JSON.parse, whose doubles would round them): chunks in
//   the layout every chunker writes by one native regex, anything else by a
//   strict reader; both give the same result for every document.
// - A SeqNo that is not the stored one plus 1, a malformed chunk (JSON
//   accepted exactly where serde_json accepts it: duplicate fields, floats
//   or negative numbers for integers, bad escapes, invalid UTF-8 and
//   non-canonical base64 are refused; unknown fields are skipped), a
//   malformed stored sum or one stored under another stream's key is an
//   error, never skipped; a store or publish failure is an error naming the
//   action and the stream. Errors about a message end with
//   ` at <journal>@<begin>`; in a batch they carry the message's index.
// - Unexpected exceptions become error results, not traps.
//
// CRC-64 runs on two 32-bit halves with 256-entry tables: no BigInt in the
// per-byte loop (BigInt is used for the SeqNo and when a sum is read or
// written). Needs QuickJS's atob/btoa (componentize-qjs has them).

import store from "weir:guest/store@0.1.0";
import publisher from "weir:guest/publisher@0.1.0";

const SUMS_JOURNAL = "examples/stream-sum/sums";

// The UUID flag of acknowledgements (Gazette `message.Flag_ACK_TXN`).
const ACK_TXN = 2;

const U64_MAX = 0xffffffffffffffffn;

// ---------------------------------------------------------------------------
// CRC-64/XZ (Go's crc64.ECMA, reflected), as high and low 32-bit halves.

const CRC_HI = new Uint32Array(256);
const CRC_LO = new Uint32Array(256);
for (let byte = 0; byte < 256; byte++) {
  let hi = 0;
  let lo = byte;
  for (let bit = 0; bit < 8; bit++) {
    const odd = lo & 1;
    lo = ((lo >>> 1) | (hi << 31)) >>> 0;
    hi = hi >>> 1;
    if (odd) {
      hi = (hi ^ 0xc96c5795) >>> 0;
      lo = (lo ^ 0xd7870f42) >>> 0;
    }
  }
  CRC_HI[byte] = hi;
  CRC_LO[byte] = lo;
}

// Continues `sum`'s CRC-64/XZ from its *finalized* value over `data`, a
// binary string (one byte per character, as `atob` returns), like Go's
// crc64.Update, so a stream's sum does not depend on its chunking.
function crc64Update(sum, data) {
  let hi = ~sum.hi;
  let lo = ~sum.lo;
  for (let i = 0; i < data.length; i++) {
    const index = (lo ^ data.charCodeAt(i)) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ CRC_LO[index];
    hi = (hi >>> 8) ^ CRC_HI[index];
  }
  sum.hi = ~hi >>> 0;
  sum.lo = ~lo >>> 0;
}

// ---------------------------------------------------------------------------
// Errors.

// The input is wrong (malformed chunk, SeqNo gap or repeat, stored sum of
// another stream): the transaction must fail loudly. Located by the caller.
class Rejected {
  constructor(message) {
    this.message = message;
  }
}

// The store or the publisher failed; the message says what and where.
class HostFailed {
  constructor(message) {
    this.message = message;
  }
}

// The text of an error thrown by an import: a WIT variant `{tag, val}`
// (possibly wrapped by the runtime in an Error's `payload`) or anything else.
function describeImportError(err, names) {
  const value = err !== null && typeof err === "object" && "payload" in err ? err.payload : err;
  if (value !== null && typeof value === "object" && typeof value.tag === "string") {
    const name = names[value.tag] || value.tag;
    return value.val === undefined ? name : `${name}: ${value.val}`;
  }
  return String(value);
}

const STORE_ERRORS = { "limit-exceeded": "store limit exceeded", failed: "store failed" };
const PUBLISH_ERRORS = {
  "invalid-document": "invalid document",
  "journal-not-found": "journal not found",
  "limit-exceeded": "publish limit exceeded",
};

// ---------------------------------------------------------------------------
// A strict JSON reader over bytes, for chunk and sum documents.

let doc = null; // the document's bytes
let pos = 0; // next byte to read
let end = 0; // one past the document's last byte
let base = 0; // the document's first byte (a batch holds many documents)
let what = ""; // "chunk" or "sum", for messages

function malformed(text) {
  return new Rejected(`malformed ${what}: ${text}`);
}

function syntax(text) {
  return malformed(`${text} at byte ${pos - base}`);
}

function skipSpace() {
  while (pos < end) {
    const c = doc[pos];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
    pos++;
  }
}

function expectByte(c, description) {
  skipSpace();
  if (pos >= end || doc[pos] !== c) throw syntax(`expected ${description}`);
  pos++;
}

// Reads a string token. With `keep` (field names, `Data`) it returns the
// value, and its UTF-8 must be well formed and its `\u` escapes proper
// UTF-16; without, it only checks escape syntax and control characters,
// exactly what serde_json checks in a string it ignores.
function readString(keep) {
  skipSpace();
  if (pos >= end || doc[pos] !== 0x22) throw syntax("expected a string");
  pos++;
  let out = "";
  let run = pos; // start of the pending run of plain ASCII
  for (;;) {
    if (pos >= end) throw syntax("unterminated string");
    const c = doc[pos];
    if (c === 0x22) {
      if (keep && pos > run) out += String.fromCharCode.apply(null, doc.subarray(run, pos));
      pos++;
      return out;
    }
    if (c < 0x20) throw syntax("control character in string");
    if (c < 0x80 && c !== 0x5c) {
      pos++;
      continue;
    }
    if (keep && pos > run) out += String.fromCharCode.apply(null, doc.subarray(run, pos));
    if (c === 0x5c) {
      const unit = readEscape(keep);
      if (keep) out += unit;
    } else if (keep) {
      out += String.fromCodePoint(readUtf8(c));
    } else {
      pos++;
    }
    run = pos;
  }
}

function readHex4() {
  if (pos + 4 > end) throw syntax("truncated \\u escape");
  let value = 0;
  for (let i = 0; i < 4; i++) {
    const c = doc[pos++];
    let digit;
    if (c >= 0x30 && c <= 0x39) digit = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) digit = c - 0x57;
    else if (c >= 0x41 && c <= 0x46) digit = c - 0x37;
    else throw syntax("invalid \\u escape");
    value = value * 16 + digit;
  }
  return value;
}

// Reads the escape at `pos` (a backslash) and returns its text; with
// `strict`, a `\u` escape must not be a lone surrogate.
function readEscape(strict) {
  pos++;
  if (pos >= end) throw syntax("unterminated string");
  const c = doc[pos++];
  switch (c) {
    case 0x22: return '"';
    case 0x5c: return "\\";
    case 0x2f: return "/";
    case 0x62: return "\b";
    case 0x66: return "\f";
    case 0x6e: return "\n";
    case 0x72: return "\r";
    case 0x74: return "\t";
    case 0x75: {
      const unit = readHex4();
      if (!strict) return "";
      if (unit >= 0xdc00 && unit <= 0xdfff) throw syntax("lone trailing surrogate in \\u escape");
      if (unit < 0xd800 || unit > 0xdbff) return String.fromCharCode(unit);
      if (pos + 2 > end || doc[pos] !== 0x5c || doc[pos + 1] !== 0x75) {
        throw syntax("lone leading surrogate in \\u escape");
      }
      pos += 2;
      const low = readHex4();
      if (low < 0xdc00 || low > 0xdfff) throw syntax("invalid surrogate pair in \\u escape");
      return String.fromCharCode(unit, low);
    }
    default:
      throw syntax("invalid escape");
  }
}

// Reads one multi-byte UTF-8 sequence starting with `c` at `pos`; returns
// its code point. Overlong forms, surrogates and values above U+10FFFF are
// refused.
function readUtf8(c) {
  let count;
  let point;
  let min;
  if (c >= 0xc2 && c <= 0xdf) [count, point, min] = [1, c & 0x1f, 0x80];
  else if (c >= 0xe0 && c <= 0xef) [count, point, min] = [2, c & 0x0f, 0x800];
  else if (c >= 0xf0 && c <= 0xf4) [count, point, min] = [3, c & 0x07, 0x10000];
  else throw syntax("invalid UTF-8");
  if (pos + count >= end) throw syntax("invalid UTF-8");
  for (let i = 1; i <= count; i++) {
    const next = doc[pos + i];
    if ((next & 0xc0) !== 0x80) throw syntax("invalid UTF-8");
    point = (point << 6) | (next & 0x3f);
  }
  if (point < min || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) {
    throw syntax("invalid UTF-8");
  }
  pos += count + 1;
  return point;
}

function isDigit(c) {
  return c >= 0x30 && c <= 0x39;
}

// Reads a number token (JSON grammar). Returns its digits as a string if it
// is an integer (a fraction or exponent makes it a float), with `negative`
// telling its sign; `null` for a float.
let negative = false;
function readNumber() {
  skipSpace();
  negative = false;
  if (pos < end && doc[pos] === 0x2d) {
    negative = true;
    pos++;
  }
  const start = pos;
  if (pos >= end || !isDigit(doc[pos])) throw syntax("invalid number");
  if (doc[pos] === 0x30) {
    pos++;
  } else {
    while (pos < end && isDigit(doc[pos])) pos++;
  }
  const digitsEnd = pos;
  let integer = true;
  if (pos < end && doc[pos] === 0x2e) {
    integer = false;
    pos++;
    if (pos >= end || !isDigit(doc[pos])) throw syntax("invalid number");
    while (pos < end && isDigit(doc[pos])) pos++;
  }
  if (pos < end && (doc[pos] === 0x65 || doc[pos] === 0x45)) {
    integer = false;
    pos++;
    if (pos < end && (doc[pos] === 0x2b || doc[pos] === 0x2d)) pos++;
    if (pos >= end || !isDigit(doc[pos])) throw syntax("invalid number");
    while (pos < end && isDigit(doc[pos])) pos++;
  }
  return integer ? String.fromCharCode.apply(null, doc.subarray(start, digitsEnd)) : null;
}

// Whether the next token is a number.
function atNumber() {
  skipSpace();
  return pos < end && (doc[pos] === 0x2d || isDigit(doc[pos]));
}

// Reads an unsigned integer field as a BigInt no larger than `max`. Like
// serde_json, a float is refused, and so is any negative number (even `-0`,
// which serde_json reads as a float).
function readUnsigned(field, max) {
  if (!atNumber()) throw malformed(`\`${field}\` must be an unsigned integer`);
  const digits = readNumber();
  if (digits === null) throw malformed(`\`${field}\` must be an unsigned integer, got a float`);
  if (negative) throw malformed(`\`${field}\` must be an unsigned integer, got -${digits}`);
  const value = digits.length <= 15 ? BigInt(Number(digits)) : BigInt(digits);
  if (value > max) throw malformed(`\`${field}\` is out of range: ${digits}`);
  return value;
}

// Reads `[b0,...,b15]` into a new 16-byte array.
function readStreamId() {
  expectByte(0x5b, "`[` opening `ID`");
  const id = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    if (i > 0) expectByte(0x2c, "`,` in `ID` (it must have 16 numbers)");
    const digits = atNumber() ? readNumber() : null;
    if (digits === null || negative || digits.length > 3 || Number(digits) > 255) {
      throw malformed("`ID` must hold 16 integers 0-255");
    }
    id[i] = Number(digits);
  }
  expectByte(0x5d, "`]` closing `ID` (it must have 16 numbers)");
  return id;
}

// Reads and discards any value (a field the summer does not know). Like
// serde_json's, it keeps a stack of open containers instead of recursing, so
// an ignored value may nest arbitrarily deep.
function skipValue() {
  const closers = [];
  for (;;) {
    skipSpace();
    if (pos >= end) throw syntax("expected a value");
    const c = doc[pos];
    let opened = false;
    if (c === 0x7b || c === 0x5b) {
      const close = c === 0x7b ? 0x7d : 0x5d;
      pos++;
      skipSpace();
      if (pos < end && doc[pos] === close) {
        pos++;
      } else {
        closers.push(close);
        opened = true;
      }
    } else if (c === 0x22) {
      readString(false);
    } else if (c === 0x74) {
      literal("true");
    } else if (c === 0x66) {
      literal("false");
    } else if (c === 0x6e) {
      literal("null");
    } else {
      readNumber();
    }
    if (!opened) {
      // After a value: close finished containers, or go on to the next
      // element of the innermost one.
      for (;;) {
        if (closers.length === 0) return;
        const close = closers[closers.length - 1];
        skipSpace();
        if (pos < end && doc[pos] === close) {
          pos++;
          closers.pop();
        } else if (pos < end && doc[pos] === 0x2c) {
          pos++;
          break;
        } else {
          throw syntax(close === 0x7d ? "expected `,` or `}`" : "expected `,` or `]`");
        }
      }
    }
    if (closers[closers.length - 1] === 0x7d) {
      readString(false);
      expectByte(0x3a, "`:`");
    }
  }
}

function literal(word) {
  for (let i = 0; i < word.length; i++) {
    if (pos >= end || doc[pos] !== word.charCodeAt(i)) throw syntax("invalid literal");
    pos++;
  }
}

// Reads the object in `bytes[from..to]`, calling `field(name)` at each
// member's value for the names in `known` (which must read the value) and
// skipping the others; a repeated known field or a missing `required` one is
// refused.
function readObject(bytes, from, to, kind, known, required, field) {
  doc = bytes;
  pos = from;
  base = from;
  end = to;
  what = kind;
  const seen = new Set();
  expectByte(0x7b, "a JSON object");
  skipSpace();
  if (pos < end && doc[pos] === 0x7d) {
    pos++;
  } else {
    for (;;) {
      const name = readString(true);
      expectByte(0x3a, "`:`");
      if (known.includes(name)) {
        if (seen.has(name)) throw malformed(`duplicate field \`${name}\``);
        seen.add(name);
        field(name);
      } else {
        skipValue();
      }
      skipSpace();
      if (pos < end && doc[pos] === 0x2c) {
        pos++;
      } else if (pos < end && doc[pos] === 0x7d) {
        pos++;
        break;
      } else {
        throw syntax("expected `,` or `}`");
      }
    }
  }
  skipSpace();
  if (pos !== end) throw syntax("trailing characters");
  for (const name of required) {
    if (!seen.has(name)) throw malformed(`missing field \`${name}\``);
  }
}

// ---------------------------------------------------------------------------
// Base64 (standard alphabet, padded, canonical: the base64 crate's STANDARD
// engine), decoded by QuickJS's native `atob`.

// The bytes of `Data` as a binary string: null or "" is the final chunk.
function decodeData(text) {
  if (text === null || text.length === 0) return "";
  let binary;
  try {
    binary = atob(text);
  } catch (err) {
    throw new Rejected(`malformed chunk data: ${err && err.message ? err.message : err}`);
  }
  // atob is forgiving (whitespace, missing padding, stray bits); re-encoding
  // gives back the input exactly when it was canonical.
  if (btoa(binary) !== text) {
    throw new Rejected("malformed chunk data: not canonical standard base64");
  }
  return binary;
}

// ---------------------------------------------------------------------------
// Sums.

const HEX = Array.from({ length: 256 }, (_, byte) => (byte < 16 ? "0" : "") + byte.toString(16));

// Lower-case hex of a stream id, for messages.
function hex(id) {
  let out = "";
  for (let i = 0; i < id.length; i++) out += HEX[id[i]];
  return out;
}

// The bytes of an ASCII string.
function ascii(text, into, at) {
  for (let i = 0; i < text.length; i++) into[at + i] = text.charCodeAt(i);
}

// A sum: the stream id as bytes (the store key) and as its JSON text (the
// cache key), the bytes of the sum JSON up to the SeqNo (built once), the
// SeqNo (BigInt) and the CRC's halves.
function newSum(id, key, seqNo, hi, lo) {
  const head = `{"ID":[${key}],"SeqNo":`;
  const prefix = new Uint8Array(head.length);
  ascii(head, prefix, 0);
  return { id, key, prefix, seqNo, hi, lo };
}

function sumJson(sum) {
  const value = (BigInt(sum.hi) << 32n) | BigInt(sum.lo);
  const tail = `${sum.seqNo},"Value":${value}}`;
  const bytes = new Uint8Array(sum.prefix.length + tail.length);
  bytes.set(sum.prefix);
  ascii(tail, bytes, sum.prefix.length);
  return bytes;
}

// Parses a stored sum document.
function parseSum(bytes) {
  let id = null;
  let seqNo = 0n;
  let value = 0n;
  const fields = ["ID", "SeqNo", "Value"];
  readObject(bytes, 0, bytes.length, "sum", fields, fields, (name) => {
    if (name === "ID") id = readStreamId();
    else if (name === "SeqNo") seqNo = readUnsigned("SeqNo", U64_MAX);
    else value = readUnsigned("Value", U64_MAX);
  });
  return newSum(id, id.join(","), seqNo, Number(value >> 32n), Number(value & 0xffffffffn));
}

// The stored sum of a stream, or a fresh one.
function load(id, key) {
  let stored;
  try {
    stored = store.get(id);
  } catch (err) {
    throw new HostFailed(
      `loading the sum of stream ${hex(id)}: ${describeImportError(err, STORE_ERRORS)}`,
    );
  }
  if (stored === null || stored === undefined) return newSum(id, key, 0n, 0, 0);
  let sum;
  try {
    sum = parseSum(stored instanceof Uint8Array ? stored : Uint8Array.from(stored));
  } catch (err) {
    if (err instanceof Rejected) {
      throw new Rejected(`stored sum of stream ${hex(id)}: ${err.message}`);
    }
    throw err;
  }
  if (sum.key !== key) {
    throw new Rejected(
      `invalid chunk.ID: stored sum under key ${hex(id)} is for stream ${hex(sum.id)}`,
    );
  }
  return sum;
}

// ---------------------------------------------------------------------------
// The summer.

// Sums read or updated by the current transaction, by the JSON text of their
// stream id (`1,2,...`).
let cache = new Map();

// The layout every chunker writes (serde's and Go's encoders, with the host's
// UUID first), recognized by one native regex instead of the byte-by-byte
// reader below, which is several times slower in QuickJS. Every document it
// matches is a JSON object that the strict reader reads to the same values
// (its SeqNo has at most 15 digits, so a Number holds it exactly); anything
// else (other layouts, escapes, non-ASCII bytes, SeqNo 0, leading zeros, any
// other character in Data) takes the strict reader, so both accept and
// refuse the same documents. An `ID` number above 255 and Data that is not
// canonical base64 are refused below, with the strict reader's messages.
const CANONICAL_CHUNK = new RegExp(
  String.raw`^\{(?:"UUID":"[0-9A-Za-z-]*",)?` +
    String.raw`"ID":\[((?:0|[1-9][0-9]{0,2})(?:,(?:0|[1-9][0-9]{0,2})){15})\],` +
    String.raw`"SeqNo":([1-9][0-9]{0,14}),` +
    String.raw`"Data":(?:null|"([A-Za-z0-9+/=]*)")\}$`,
);

// Longer documents go to the strict reader (a chunker's are ~190 bytes);
// this bounds the arguments of the one `String.fromCharCode` call.
const CANONICAL_MAX_BYTES = 8192;

// The stream id of a canonical layout's `ID` text, whose numbers have at
// most 3 digits.
function idFromKey(key) {
  const parts = key.split(",");
  const id = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    const byte = Number(parts[i]);
    if (byte > 255) throw new Rejected("malformed chunk: `ID` must hold 16 integers 0-255");
    id[i] = byte;
  }
  return id;
}

// Fields of the chunk being read (set by `readObject`'s callback).
let chunkId = null;
let chunkSeqNo = 0n;
let chunkData = null;

// `Data` may be missing: like null, it marks the final chunk.
const CHUNK_FIELDS = ["ID", "SeqNo", "Data"];
const CHUNK_REQUIRED = ["ID", "SeqNo"];

function chunkField(name) {
  if (name === "ID") {
    chunkId = readStreamId();
  } else if (name === "SeqNo") {
    chunkSeqNo = readUnsigned("SeqNo", U64_MAX);
  } else {
    skipSpace();
    if (pos < end && doc[pos] === 0x6e) {
      literal("null");
      chunkData = null;
    } else if (pos < end && doc[pos] === 0x22) {
      chunkData = readString(true);
    } else {
      throw malformed("`Data` must be a base64 string or null");
    }
  }
}

// Folds the chunk in `bytes[from..to]` (not an ACK) into its stream's sum and
// publishes the sum if it was the stream's final chunk. Checks run in the
// Rust summer's order: the document (ID, SeqNo), then the data, then the
// stored sum, then the SeqNo's succession.
function consume(bytes, from, to) {
  let id;
  let key;
  let seqNo;
  let text;
  let sum;
  const match =
    to - from <= CANONICAL_MAX_BYTES
      ? CANONICAL_CHUNK.exec(String.fromCharCode.apply(null, bytes.subarray(from, to)))
      : null;
  if (match !== null) {
    key = match[1];
    sum = cache.get(key);
    id = sum === undefined ? idFromKey(key) : sum.id;
    seqNo = BigInt(Number(match[2]));
    text = match[3] === undefined ? null : match[3];
  } else {
    chunkData = null;
    readObject(bytes, from, to, "chunk", CHUNK_FIELDS, CHUNK_REQUIRED, chunkField);
    id = chunkId;
    key = id.join(",");
    seqNo = chunkSeqNo;
    text = chunkData;
    sum = cache.get(key);
  }
  const data = decodeData(text);
  if (sum === undefined) {
    sum = load(id, key);
    cache.set(key, sum);
  }
  const expected = sum.seqNo + 1n;
  if (seqNo !== expected) {
    const kind = seqNo <= sum.seqNo ? "repeated" : "skipped ahead";
    throw new Rejected(
      `invalid chunk.SeqNo of stream ${hex(id)}: expected ${expected}, got ${seqNo} (${kind})`,
    );
  }
  sum.seqNo = seqNo;
  crc64Update(sum, data);
  if (data.length === 0) {
    try {
      publisher.publish(SUMS_JOURNAL, sumJson(sum));
    } catch (err) {
      throw new HostFailed(
        `publishing the sum of stream ${hex(id)}: ${describeImportError(err, PUBLISH_ERRORS)}`,
      );
    }
  }
}

// `consume`, its failure as the final error text.
function consumeLocated(bytes, from, to, journal, begin) {
  try {
    consume(bytes, from, to);
    return null;
  } catch (err) {
    if (err instanceof Rejected) return `${err.message} at ${journal}@${begin}`;
    if (err instanceof HostFailed) return err.message;
    return `summer failed unexpectedly: ${err} at ${journal}@${begin}`;
  }
}

export function consumeMessage(envelope) {
  if (envelope.uuidFlags === ACK_TXN) return;
  const bytes = envelope.doc;
  const failure = consumeLocated(bytes, 0, bytes.length, envelope.journal, envelope.begin);
  if (failure !== null) throw failure;
}

export function consumeMessages(batch) {
  const docs = batch.docs;
  const journal = batch.journal;
  const docEnds = batch.docEnds;
  const flags = batch.uuidFlags;
  const begins = batch.begins;
  if (flags.length !== docEnds.length || begins.length !== docEnds.length) {
    throw { index: 0, message: `the host sent a batch whose columns differ in length at ${journal}` };
  }
  let from = 0;
  for (let index = 0; index < docEnds.length; index++) {
    const to = docEnds[index];
    if (to < from || to > docs.length) {
      throw {
        index,
        message: `the host sent a document outside the batch at ${journal}@${begins[index]}`,
      };
    }
    const start = from;
    from = to;
    if (flags[index] === ACK_TXN) continue;
    const failure = consumeLocated(docs, start, to, journal, begins[index]);
    if (failure !== null) throw { index, message: failure };
  }
}

export function finalizeTxn() {
  const sums = cache;
  cache = new Map();
  for (const sum of sums.values()) {
    let bytes;
    try {
      bytes = sumJson(sum);
    } catch (err) {
      throw `summer failed unexpectedly: ${err}`;
    }
    try {
      store.put(sum.id, bytes);
    } catch (err) {
      throw `storing the sum of stream ${hex(sum.id)}: ${describeImportError(err, STORE_ERRORS)}`;
    }
  }
}
