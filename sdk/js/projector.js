/**
 * @file Projector plugin helper for JavaScript projections (WIT world
 * `projector:projection/projection@0.1.0`), built into a component with componentize-js: the
 * main module of the `projector-plugin` package, whose version is that of the WIT package.
 *
 * One self-contained ES module, no dependencies. It runs unchanged inside the component and
 * natively under Node (for `node --test`): it never imports the host interfaces itself. The
 * build's generated entry module hands it the real `state` and `log` imports through
 * {@link useHost}; natively, `projector-plugin/testing` hands it an in-memory fake.
 *
 * Invariants:
 * - Money never passes through binary floating point: event JSON is decoded so that every
 *   non-integer number becomes an exact {@link Decimal} built from the number's digits (`8.9`
 *   stays 8.9, `99.0` keeps its scale). For speed in the component's interpreter the engine's
 *   native `JSON.parse` does the parsing, after every number it would round has been turned
 *   into a marked string of its digits; this module's own parser decides whenever that path
 *   cannot (invalid JSON, for the error and its position).
 * - Timestamps are BigInt microseconds since the epoch (UTC), as the WIT contract says.
 * - `handle` returns exactly one result per event, in order. An exception thrown while
 *   handling an event becomes that event's `err`, and the state written by that event is
 *   dropped: state writes are held per event and passed to the host only when it succeeds.
 * - Nothing here reads the clock or randomness: a replay yields the same read model.
 *
 * @example
 * import { projection, spec, postgres, field, increment } from 'projector-plugin';
 * export const { describe, handle } = projection({
 *   describe: () => spec('counter', 1, 'Counts events per key.', [
 *     postgres('counts', 'One row per key.')
 *       .field(field.text('key').description('The record key.'))
 *       .field(field.integer('n').description('Events seen.'))
 *       .primaryKey('key'),
 *   ]),
 *   handle: (event, ctx) => [increment('counts', event.key).add('n', 1)],
 * });
 */

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * An error meant for the host: its message is recorded against the event that caused it, so it
 * says what was wrong with the event (which field), not where in the plugin it happened.
 */
export class ProjectionError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'ProjectionError';
  }

  /**
   * "missing field `name`".
   * @param {string} name
   */
  static missingField(name) {
    return new ProjectionError(`missing field \`${name}\``);
  }

  /**
   * "field `name`: problem".
   * @param {string} name
   * @param {string} problem
   */
  static invalidField(name, problem) {
    return new ProjectionError(`field \`${name}\`: ${problem}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Exact decimals
// ---------------------------------------------------------------------------------------------

const TEN = 10n;
/** 10^0 … 10^39, computed once: scales of money are small. */
const POWERS_OF_TEN = Array.from({ length: 40 }, (_, n) => TEN ** BigInt(n));
const pow10 = (/** @type {number} */ n) => POWERS_OF_TEN[n] ?? TEN ** BigInt(n);
const abs = (/** @type {bigint} */ n) => (n < 0n ? -n : n);
/** Largest exponent accepted when parsing, so `1e-999999999` cannot exhaust memory. */
const MAX_EXPONENT = 1000;

/**
 * `n / d` rounded to an integer half away from zero (`d` non-zero).
 * @param {bigint} n
 * @param {bigint} d
 */
function divRound(n, d) {
  if (d < 0n) {
    n = -n;
    d = -d;
  }
  const q = n / d;
  const r = n % d;
  if (2n * abs(r) >= d) return n < 0n ? q - 1n : q + 1n;
  return q;
}

/**
 * An exact decimal number: `coefficient × 10^-scale`, on BigInt, immutable. Keeps its scale
 * like a SQL NUMERIC (`99.0` has scale 1, `8.9 × 2` is `17.8`), prints in plain notation.
 */
export class Decimal {
  /**
   * @param {bigint} coefficient the digits, as an integer
   * @param {number} [scale] digits after the decimal point (>= 0)
   */
  constructor(coefficient, scale = 0) {
    if (typeof coefficient !== 'bigint') throw new TypeError('Decimal coefficient must be a BigInt');
    if (!Number.isInteger(scale) || scale < 0) throw new RangeError(`invalid Decimal scale ${scale}`);
    /** @readonly */
    this.coefficient = coefficient;
    /** @readonly */
    this.scale = scale;
    Object.freeze(this);
  }

  /**
   * Parses a decimal from text: JSON number syntax with an optional exponent (`-12.50`,
   * `1e2`, `1.5E-3`), a leading `+` or leading zeros also accepted. Throws a RangeError on
   * anything else.
   * @param {string} text
   * @returns {Decimal}
   */
  static parse(text) {
    const m = /^([+-]?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(String(text).trim());
    if (!m) throw new RangeError(`\`${text}\` is not a decimal number`);
    const [, sign, whole, fraction = '', exponentText] = m;
    const exponent = exponentText === undefined ? 0 : Number(exponentText);
    if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > MAX_EXPONENT) {
      throw new RangeError(`\`${text}\` is out of the decimal range`);
    }
    let coefficient = BigInt(whole + fraction);
    let scale = fraction.length - exponent;
    if (scale < 0) {
      coefficient *= pow10(-scale);
      scale = 0;
    }
    return new Decimal(sign === '-' ? -coefficient : coefficient, scale);
  }

  /**
   * A Decimal from a Decimal, BigInt, integer number or decimal text. Refuses non-integer
   * numbers: they already went through binary floating point (use a string or a Decimal).
   * @param {Decimal | bigint | number | string} value
   * @returns {Decimal}
   */
  static from(value) {
    if (value instanceof Decimal) return value;
    if (typeof value === 'bigint') return new Decimal(value, 0);
    if (typeof value === 'number') {
      if (Number.isSafeInteger(value)) return new Decimal(BigInt(value), 0);
      throw new RangeError(
        `${value} is not a safe integer: pass decimals as strings or Decimal, never as floats`,
      );
    }
    if (typeof value === 'string') return Decimal.parse(value);
    throw new TypeError(`cannot make a Decimal of ${typeof value}`);
  }

  /** Zero, scale 0. */
  static get ZERO() {
    return ZERO;
  }

  /**
   * This value with `scale` digits after the point, without rounding (scale may only grow).
   * @param {number} scale
   */
  #at(scale) {
    return scale === this.scale ? this.coefficient : this.coefficient * pow10(scale - this.scale);
  }

  /** @param {Decimal | bigint | number | string} other */
  add(other) {
    const o = Decimal.from(other);
    const scale = Math.max(this.scale, o.scale);
    return new Decimal(this.#at(scale) + o.#at(scale), scale);
  }

  /** @param {Decimal | bigint | number | string} other */
  sub(other) {
    return this.add(Decimal.from(other).neg());
  }

  /** @param {Decimal | bigint | number | string} other */
  mul(other) {
    const o = Decimal.from(other);
    return new Decimal(this.coefficient * o.coefficient, this.scale + o.scale);
  }

  /**
   * `this / other` rounded half away from zero to `scale` places.
   * @param {Decimal | bigint | number | string} other
   * @param {number} scale
   */
  div(other, scale) {
    const o = Decimal.from(other);
    if (o.coefficient === 0n) throw new RangeError('division by zero');
    const n = this.coefficient * pow10(o.scale + scale);
    const d = o.coefficient * pow10(this.scale);
    return new Decimal(divRound(n, d), scale);
  }

  neg() {
    return new Decimal(-this.coefficient, this.scale);
  }

  abs() {
    return this.coefficient < 0n ? this.neg() : this;
  }

  /**
   * -1, 0 or 1 as this is less than, equal to or greater than `other` (scale ignored).
   * @param {Decimal | bigint | number | string} other
   * @returns {-1 | 0 | 1}
   */
  cmp(other) {
    const o = Decimal.from(other);
    const scale = Math.max(this.scale, o.scale);
    const a = this.#at(scale);
    const b = o.#at(scale);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  /** @param {Decimal | bigint | number | string} other */
  equals(other) {
    return this.cmp(other) === 0;
  }

  isZero() {
    return this.coefficient === 0n;
  }

  isNegative() {
    return this.coefficient < 0n;
  }

  /**
   * Rounded half away from zero to at most `places` decimal places (a smaller scale is kept).
   * @param {number} places
   */
  round(places) {
    if (this.scale <= places) return this;
    return new Decimal(divRound(this.coefficient, pow10(this.scale - places)), places);
  }

  /**
   * Exactly `places` decimal places: padded with zeros, or rounded half away from zero.
   * @param {number} places
   */
  rescale(places) {
    if (this.scale === places) return this; // immutable: the same value serves
    if (this.scale <= places) return new Decimal(this.#at(places), places);
    return this.round(places);
  }

  /** Money: exactly 2 decimals, rounded half away from zero (`116.8` → `116.80`). */
  money() {
    return this.rescale(2);
  }

  /** Whether this is an integer value (whatever its scale). */
  isInteger() {
    return this.coefficient % pow10(this.scale) === 0n;
  }

  /** The integer part as a BigInt (truncated toward zero). */
  toBigInt() {
    return this.coefficient / pow10(this.scale);
  }

  /** Plain notation with the exact scale: `-12.50`, `116.8`, `0.05`, `3`. */
  toString() {
    const negative = this.coefficient < 0n;
    let digits = abs(this.coefficient).toString();
    if (this.scale > 0) {
      digits = digits.padStart(this.scale + 1, '0');
      digits = `${digits.slice(0, -this.scale)}.${digits.slice(-this.scale)}`;
    }
    return negative ? `-${digits}` : digits;
  }

  /** JSON.stringify writes a Decimal as its plain-notation string. */
  toJSON() {
    return this.toString();
  }

  /** A float approximation, for display only. */
  toNumber() {
    return Number(this.toString());
  }
}

const ZERO = new Decimal(0n, 0);

/**
 * `amount` as money: exactly 2 decimals, rounded half away from zero.
 * @param {Decimal | bigint | number | string} amount
 */
export function money(amount) {
  return Decimal.from(amount).money();
}

/**
 * The exact sum of `amounts` (zero when empty).
 * @param {Iterable<Decimal | bigint | number | string>} amounts
 */
export function sum(amounts) {
  let total = ZERO;
  for (const amount of amounts) total = total.add(amount);
  return total;
}

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------

// The engine's native codecs when it has them (StarlingMonkey and Node both do): a JS loop over
// every byte is slow in the component's interpreter. Both keep the exact semantics of the
// portable fallbacks below (lone surrogates encode as U+FFFD; decoding rejects any invalid
// UTF-8 and keeps a leading BOM).
const ENCODER = typeof TextEncoder === 'function' ? new TextEncoder() : undefined;
const DECODER = typeof TextDecoder === 'function' ? new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) : undefined;

/**
 * UTF-8 bytes of `text` (lone surrogates become U+FFFD).
 * @param {string} text
 * @returns {Uint8Array}
 */
export function utf8Encode(text) {
  return ENCODER ? ENCODER.encode(text) : utf8EncodePortable(text);
}

/** @param {string} text */
function utf8EncodePortable(text) {
  const out = [];
  for (const ch of text) {
    let cp = /** @type {number} */ (ch.codePointAt(0));
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 63));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
    else {
      out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
    }
  }
  return Uint8Array.from(out);
}

/**
 * The text of UTF-8 `bytes`, or `undefined` when they are not valid UTF-8.
 * @param {Uint8Array} bytes
 * @returns {string | undefined}
 */
export function utf8Decode(bytes) {
  if (!DECODER || !ArrayBuffer.isView(bytes)) return utf8DecodePortable(bytes);
  try {
    return DECODER.decode(bytes);
  } catch {
    return undefined;
  }
}

/** @param {Uint8Array} bytes */
function utf8DecodePortable(bytes) {
  let text = '';
  let chunk = [];
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    let cp;
    let need;
    let min;
    if (b < 0x80) {
      cp = b;
      need = 0;
      min = 0;
    } else if (b >= 0xc2 && b < 0xe0) {
      cp = b & 31;
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b < 0xf0) {
      cp = b & 15;
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b < 0xf5) {
      cp = b & 7;
      need = 3;
      min = 0x10000;
    } else return undefined;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return undefined;
      cp = (cp << 6) | (c & 63);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return undefined;
    chunk.push(cp);
    if (chunk.length >= 4096) {
      text += String.fromCodePoint(...chunk);
      chunk = [];
    }
    i += need + 1;
  }
  return text + String.fromCodePoint(...chunk);
}

// ---------------------------------------------------------------------------------------------
// JSON that keeps numbers exact
// ---------------------------------------------------------------------------------------------

/**
 * A path inside a JSON document, as serde prints it: `items[0].unitPrice`; `.` for the root.
 * @param {(string | number)[]} path
 */
export function formatPath(path) {
  if (path.length === 0) return '.';
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out;
}

/** A JSON syntax error; the message ends with `at line L column C`. */
export class JsonSyntaxError extends ProjectionError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'JsonSyntaxError';
  }
}

/** Where the value at a path starts and ends (character offsets). */
/** @typedef {{ start: number, end: number }} Span */

class JsonParser {
  /**
   * @param {string} text
   * @param {Map<string, Span> | null} spans where to record each value's span, by path
   */
  constructor(text, spans) {
    this.text = text;
    this.i = 0;
    this.spans = spans;
    /** @type {(string | number)[]} */
    this.path = [];
  }

  /** @param {string} message @param {number} [at] */
  fail(message, at = this.i) {
    return new JsonSyntaxError(`${message} ${position(this.text, at)}`);
  }

  ws() {
    const t = this.text;
    while (this.i < t.length) {
      const c = t.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  document() {
    this.ws();
    const value = this.value();
    this.ws();
    if (this.i < this.text.length) throw this.fail('trailing characters', this.i + 1);
    return value;
  }

  /** @returns {unknown} */
  value() {
    this.ws();
    const start = this.i;
    const t = this.text;
    if (start >= t.length) throw this.fail('EOF while parsing a value');
    const c = t[start];
    let value;
    if (c === '{') value = this.object();
    else if (c === '[') value = this.array();
    else if (c === '"') value = this.string();
    else if (c === '-' || (c >= '0' && c <= '9')) value = this.number();
    else if (t.startsWith('true', start)) {
      this.i += 4;
      value = true;
    } else if (t.startsWith('false', start)) {
      this.i += 5;
      value = false;
    } else if (t.startsWith('null', start)) {
      this.i += 4;
      value = null;
    } else throw this.fail('expected value', start + 1);
    if (this.spans) this.spans.set(formatPath(this.path), { start, end: this.i });
    return value;
  }

  object() {
    this.i++;
    /** @type {Record<string, unknown>} */
    const object = {};
    this.ws();
    if (this.text[this.i] === '}') {
      this.i++;
      return object;
    }
    for (;;) {
      this.ws();
      if (this.text[this.i] !== '"') {
        throw this.fail(this.i >= this.text.length ? 'EOF while parsing an object' : 'key must be a string', this.i + 1);
      }
      const key = this.string();
      this.ws();
      if (this.text[this.i] !== ':') throw this.fail('expected `:`', this.i + 1);
      this.i++;
      this.path.push(key);
      const value = this.value();
      this.path.pop();
      // defineProperty: a `__proto__` key is data, never the prototype.
      Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
      this.ws();
      const c = this.text[this.i++];
      if (c === '}') return object;
      if (c !== ',') throw this.fail(c === undefined ? 'EOF while parsing an object' : 'expected `,` or `}`', this.i);
    }
  }

  /** @returns {unknown[]} */
  array() {
    this.i++;
    /** @type {unknown[]} */
    const array = [];
    this.ws();
    if (this.text[this.i] === ']') {
      this.i++;
      return array;
    }
    for (;;) {
      this.path.push(array.length);
      array.push(this.value());
      this.path.pop();
      this.ws();
      const c = this.text[this.i++];
      if (c === ']') return array;
      if (c !== ',') throw this.fail(c === undefined ? 'EOF while parsing a list' : 'expected `,` or `]`', this.i);
    }
  }

  string() {
    const t = this.text;
    let i = this.i + 1;
    let out = '';
    let from = i;
    for (;;) {
      if (i >= t.length) throw this.fail('EOF while parsing a string', i);
      const c = t.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) throw this.fail('control character (\\u0000-\\u001F) found while parsing a string', i + 1);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += t.slice(from, i);
      const e = t[i + 1];
      const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }[e];
      if (simple !== undefined) {
        out += simple;
        i += 2;
      } else if (e === 'u') {
        const hex = t.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw this.fail('invalid escape', i + 2);
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
      } else throw this.fail('invalid escape', i + 2);
      from = i;
    }
    out += t.slice(from, i);
    this.i = i + 1;
    return out;
  }

  number() {
    const m = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    m.lastIndex = this.i;
    const found = m.exec(this.text);
    if (!found) throw this.fail('invalid number', this.i + 1);
    const raw = found[0];
    this.i += raw.length;
    if (found[1] === undefined && found[2] === undefined) {
      const n = Number(raw);
      return Number.isSafeInteger(n) ? n : BigInt(raw);
    }
    try {
      return Decimal.parse(raw);
    } catch {
      throw this.fail('number out of range', this.i);
    }
  }
}

/**
 * `at line L column C` for character offset `offset` of `text`, counting the column in UTF-8
 * bytes consumed on that line (as serde_json does).
 * @param {string} text
 * @param {number} offset
 */
function position(text, offset) {
  const before = text.slice(0, offset);
  const lineStart = before.lastIndexOf('\n') + 1;
  let line = 1;
  for (let k = 0; k < lineStart; k++) if (before.charCodeAt(k) === 10) line++;
  return `at line ${line} column ${utf8Encode(before.slice(lineStart)).length}`;
}

/**
 * Parses JSON text exactly: integers become numbers (BigInt beyond 2^53), every other number
 * an exact {@link Decimal} from its own digits. Throws a {@link JsonSyntaxError} naming the
 * position of a syntax error.
 * @param {string} text
 * @returns {unknown}
 */
export function parseJson(text) {
  const value = parseJsonNative(text);
  return value === NOT_NATIVE ? new JsonParser(text, null).document() : value;
}

/** What {@link parseJsonNative} returns when the exact parser must decide. */
const NOT_NATIVE = Symbol('not native');

/**
 * One stretch of JSON text up to the next number that `JSON.parse` would not keep exact: a
 * prefix of whole strings, integers of at most 15 digits (exact as doubles) and other
 * characters, taken atomically (`(?=(…))\1`), then a number with a fraction or exponent or an
 * integer of 16 or more digits. Applied stickily (`y`) from the start of the text, so in valid
 * JSON the prefixes never start inside a string and every such number is found, and the scan
 * stays linear. A number before `:` is left alone: it would be a key, which is invalid JSON
 * and must stay invalid.
 */
const INEXACT_NUMBER =
  /(?=((?:"(?:[^"\\]|\\.)*"|-?\d{1,15}(?![\d.eE])|[^"\d-])*))\1(-?(?:0|[1-9]\d*)(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+)|-?[1-9]\d{15,})(?![\t\n\r ]*:)/gy;

/** The marker that starts a string standing for a number's digits, U+0001 (never raw in JSON). */
const NUMBER_MARK = 1;

/**
 * {@link parseJson} on the engine's native `JSON.parse` (much faster than a JS parser in the
 * component's interpreter), with every number `JSON.parse` would round (fraction, exponent,
 * 16+ digits) first turned into a marked string of its digits, then rebuilt exactly. Returns
 * {@link NOT_NATIVE} when the exact parser must decide: invalid JSON (for its error message
 * and position), a number out of range, or text that already contains the marker.
 * @param {string} text
 * @returns {unknown}
 */
function parseJsonNative(text) {
  if (text.includes('\\u0001')) return NOT_NATIVE;
  try {
    // Inside the try: an engine limit (regexp backtracking stack, nesting depth) only means
    // the exact parser decides.
    INEXACT_NUMBER.lastIndex = 0;
    const marked = text.replace(INEXACT_NUMBER, '$1"\\u0001$2"');
    const value = JSON.parse(marked);
    if (marked.length === text.length) return value;
    if (typeof value === 'string') return value.charCodeAt(0) === NUMBER_MARK ? exactNumber(value) : value;
    if (typeof value === 'object' && value !== null) restoreNumbers(value);
    return value;
  } catch {
    return NOT_NATIVE;
  }
}

/**
 * The exact number a marked string stands for, as {@link JsonParser} makes it: a safe integer
 * as a number, a larger one as a BigInt, anything else as a Decimal (throws when out of range).
 * @param {string} marked
 */
function exactNumber(marked) {
  const raw = marked.slice(1);
  if (raw.includes('e') || raw.includes('E')) return Decimal.parse(raw);
  const dot = raw.indexOf('.');
  if (dot < 0) {
    const n = Number(raw);
    return Number.isSafeInteger(n) ? n : BigInt(raw);
  }
  // `-12.50`: the digits without the point (BigInt takes the sign), scale = fraction digits.
  return new Decimal(BigInt(raw.slice(0, dot) + raw.slice(dot + 1)), raw.length - dot - 1);
}

/**
 * Replaces the marked strings inside a container parsed by `JSON.parse`, in place.
 * @param {any} container
 */
function restoreNumbers(container) {
  if (Array.isArray(container)) {
    for (let i = 0; i < container.length; i++) {
      const v = container[i];
      if (typeof v === 'string') {
        if (v.charCodeAt(0) === NUMBER_MARK) container[i] = exactNumber(v);
      } else if (typeof v === 'object' && v !== null) restoreNumbers(v);
    }
    return;
  }
  for (const key in container) {
    const v = container[key];
    if (typeof v === 'string') {
      if (v.charCodeAt(0) !== NUMBER_MARK) continue;
      // defineProperty: a `__proto__` key is data, never the prototype.
      if (key === '__proto__') {
        Object.defineProperty(container, key, { value: exactNumber(v), enumerable: true, writable: true, configurable: true });
      } else container[key] = exactNumber(v);
    } else if (typeof v === 'object' && v !== null) restoreNumbers(v);
  }
}

/**
 * Serializes `value` as compact JSON: a Decimal as its exact digits (a JSON number), a BigInt
 * as an integer; `undefined` object members are left out. Throws on non-finite numbers.
 * @param {unknown} value
 * @returns {string}
 */
export function stringifyJson(value) {
  if (value === null || value === undefined) return 'null';
  if (value instanceof Decimal) return value.toString();
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'number':
      if (!Number.isFinite(value)) throw new RangeError(`${value} cannot be written as JSON`);
      return JSON.stringify(value);
    default:
      break;
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let k = 0; k < value.length; k++) {
      if (k > 0) out += ',';
      const v = value[k];
      // A hole writes nothing (as `map` + `join` would), an undefined element null.
      if (v !== undefined) out += stringifyJson(v);
      else if (k in value) out += 'null';
    }
    return `${out}]`;
  }
  if (typeof (/** @type {any} */ (value).toJSON) === 'function') {
    return stringifyJson(/** @type {any} */ (value).toJSON());
  }
  const keys = Object.keys(/** @type {object} */ (value));
  let out = '{';
  for (let k = 0; k < keys.length; k++) {
    const member = /** @type {any} */ (value)[keys[k]];
    if (member === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(keys[k])}:${stringifyJson(member)}`;
  }
  return `${out}}`;
}

// ---------------------------------------------------------------------------------------------
// Timestamps and dates
// ---------------------------------------------------------------------------------------------

const MICROS_PER_SECOND = 1_000_000n;
const MICROS_PER_DAY = 86_400_000_000n;

/**
 * Days since 1970-01-01 of a proleptic Gregorian date.
 * @param {number} y @param {number} m @param {number} d
 */
function daysFromCivil(y, m, d) {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/**
 * The date of day `days` since 1970-01-01.
 * @param {number} days
 * @returns {[number, number, number]}
 */
function civilFromDays(days) {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp + (mp < 10 ? 3 : -9);
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

/** @param {number} y @param {number} m */
function daysInMonth(y, m) {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

const pad = (/** @type {number} */ n, /** @type {number} */ width) => String(n).padStart(width, '0');

/**
 * An instant, in microseconds since 1970-01-01T00:00:00Z (UTC, no time zone kept).
 */
export class Timestamp {
  /** @param {bigint} micros */
  constructor(micros) {
    if (typeof micros !== 'bigint') throw new TypeError('Timestamp micros must be a BigInt');
    /** @readonly */
    this.micros = micros;
    Object.freeze(this);
  }

  /**
   * Parses an RFC 3339 instant (`2026-11-22T10:15:30.123Z`, `2026-11-22T11:15:30+01:00`),
   * normalized to UTC; fraction digits beyond microseconds are truncated.
   * @param {string} text
   */
  static parse(text) {
    const micros = typeof text === 'string' ? utcMicros(text) : undefined;
    if (micros !== undefined) return new Timestamp(micros);
    const problem = rfc3339Problem(text);
    if (typeof problem === 'string') {
      throw new ProjectionError(
        `invalid timestamp \`${text}\` (${problem}): expected RFC 3339, e.g. 2026-11-22T10:15:30.123Z`,
      );
    }
    return new Timestamp(problem);
  }

  /** @param {number | bigint} millis e.g. a Kafka record timestamp */
  static fromMillis(millis) {
    return new Timestamp(BigInt(millis) * 1000n);
  }

  /** The UTC calendar day, in days since 1970-01-01. */
  days() {
    const q = this.micros / MICROS_PER_DAY;
    return Number(this.micros % MICROS_PER_DAY < 0n ? q - 1n : q);
  }

  /** RFC 3339 in UTC with `Z`, fraction only when needed (3 or 6 digits): `2026-11-20T23:59:59.999Z`. */
  toString() {
    const days = this.days();
    const inDay = this.micros - BigInt(days) * MICROS_PER_DAY;
    const seconds = Number(inDay / MICROS_PER_SECOND);
    const fraction = Number(inDay % MICROS_PER_SECOND);
    const [y, m, d] = civilFromDays(days);
    const hh = Math.floor(seconds / 3600);
    const mm = Math.floor((seconds % 3600) / 60);
    const ss = seconds % 60;
    let frac = '';
    if (fraction !== 0) frac = fraction % 1000 === 0 ? `.${pad(fraction / 1000, 3)}` : `.${pad(fraction, 6)}`;
    const year = y >= 0 && y <= 9999 ? pad(y, 4) : (y < 0 ? '-' : '+') + pad(Math.abs(y), 6);
    return `${year}-${pad(m, 2)}-${pad(d, 2)}T${pad(hh, 2)}:${pad(mm, 2)}:${pad(ss, 2)}${frac}Z`;
  }

  toJSON() {
    return this.toString();
  }
}

/** The common shape of an instant: UTC (`Z`), an optional fraction. */
const RFC3339_UTC = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z$/;

/**
 * The microseconds of `text` when it has the common shape ({@link RFC3339_UTC}) and is in
 * range, computed as {@link rfc3339Problem} does; otherwise `undefined` (that one decides).
 * @param {string} text
 * @returns {bigint | undefined}
 */
function utcMicros(text) {
  const m = RFC3339_UTC.exec(text);
  if (m === null) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const seconds = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
  const fraction = m[7];
  let micros = 0;
  if (fraction !== undefined) {
    micros = Number(fraction.length >= 6 ? fraction.slice(0, 6) : fraction.padEnd(6, '0'));
  }
  return BigInt(seconds) * MICROS_PER_SECOND + BigInt(micros);
}

/**
 * The microseconds of an RFC 3339 text, or why it is not one, checked in the order (and with
 * the wording) of chrono's `parse_from_rfc3339`, which the Rust plugins use.
 * @param {string} text
 * @returns {bigint | string}
 */
function rfc3339Problem(text) {
  const TOO_SHORT = 'premature end of input';
  const INVALID = 'input contains invalid characters';
  const OUT_OF_RANGE = 'input is out of range';
  if (utf8Encode(text).length < 19) return TOO_SHORT;
  const isDigit = (/** @type {number} */ k) => text[k] >= '0' && text[k] <= '9';
  const two = (/** @type {number} */ k) => (isDigit(k) && isDigit(k + 1) ? Number(text.slice(k, k + 2)) : -1);
  if (![0, 1, 2, 3].every(isDigit) || text[4] !== '-') return INVALID;
  const year = Number(text.slice(0, 4));
  const month = two(5);
  if (month < 0 || text[7] !== '-') return INVALID;
  const day = two(8);
  if (day < 0) return INVALID;
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return OUT_OF_RANGE;
  if (!'tT '.includes(text[10])) return INVALID;
  const hour = two(11);
  if (hour < 0 || text[13] !== ':') return INVALID;
  const minute = two(14);
  if (minute < 0 || text[16] !== ':') return INVALID;
  let second = two(17);
  if (second < 0) return INVALID;
  let leap = 0n;
  if (second === 60) {
    second = 59;
    leap = MICROS_PER_SECOND;
  }
  let rest = text.slice(19);
  let micros = 0n;
  if (rest.startsWith('.')) {
    const digits = /** @type {RegExpExecArray} */ (/^\d*/.exec(rest.slice(1)))[0];
    if (digits === '') return rest.length === 1 ? TOO_SHORT : INVALID;
    micros = BigInt(digits.slice(0, 6).padEnd(6, '0'));
    rest = rest.slice(1 + digits.length);
  }
  if (hour > 23 || minute > 59) return OUT_OF_RANGE;
  // The offset: `Z`/`z`, or a sign (`+`, `-`, U+2212), two hour digits, `:`, two minute digits.
  let offsetSeconds = 0;
  const sign = rest[0];
  if (sign === undefined) return TOO_SHORT;
  if (sign === 'Z' || sign === 'z') rest = rest.slice(1);
  else if (sign === '+' || sign === '-' || sign === '\u2212') {
    rest = rest.slice(1);
    if (rest.length < 2) return TOO_SHORT;
    if (!/^\d\d/.test(rest)) return INVALID;
    const oh = Number(rest.slice(0, 2));
    rest = rest.slice(2);
    if (rest === '') return TOO_SHORT;
    if (rest[0] !== ':') return INVALID;
    rest = rest.slice(1);
    if (rest.length < 2) return TOO_SHORT;
    if (/^[6-9]\d/.test(rest)) return OUT_OF_RANGE;
    if (!/^[0-5]\d/.test(rest)) return INVALID;
    const om = Number(rest.slice(0, 2));
    rest = rest.slice(2);
    offsetSeconds = (sign === '+' ? 1 : -1) * (oh * 3600 + om * 60);
  } else return INVALID;
  if (rest !== '') return 'trailing input';
  if (Math.abs(offsetSeconds) >= 86400) return OUT_OF_RANGE;
  const seconds = BigInt(daysFromCivil(year, month, day)) * 86400n + BigInt(hour * 3600 + minute * 60 + second - offsetSeconds);
  return seconds * MICROS_PER_SECOND + micros + leap;
}

/**
 * Days since 1970-01-01 of `YYYY-MM-DD`.
 * @param {string} text
 * @returns {number}
 */
export function parseDate(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  const [y, mo, d] = m ? m.slice(1).map(Number) : [0, 0, 0];
  if (!m || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) {
    throw new ProjectionError(`invalid date \`${text}\`: expected YYYY-MM-DD`);
  }
  return daysFromCivil(y, mo, d);
}

/**
 * `YYYY-MM-DD` of day `days` since 1970-01-01.
 * @param {number} days
 */
export function formatDate(days) {
  const [y, m, d] = civilFromDays(days);
  return `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}`;
}

// ---------------------------------------------------------------------------------------------
// Schema-driven decoding with serde-like error messages
// ---------------------------------------------------------------------------------------------

/**
 * A decoder from a JSON value to a JS value. `decode` throws a {@link DecodeFailure}.
 * @template T
 * @typedef {{ expecting: string, decode: (value: unknown, at: Cursor) => T, optional?: boolean }} Schema
 */

/** Where a decoder is: the document and the path in it. */
class Cursor {
  /**
   * @param {JsonDocument} doc
   * @param {(string | number)[] | undefined} path
   * @param {Cursor} [parent] set (with `segment`) for a child: its path is only built when asked for
   * @param {string | number} [segment]
   */
  constructor(doc, path, parent, segment) {
    this.doc = doc;
    /** @type {(string | number)[] | undefined} */
    this.known = path;
    this.parent = parent;
    this.segment = segment;
  }

  /** The path from the document's root. @returns {(string | number)[]} */
  get path() {
    if (this.known === undefined) {
      const parent = /** @type {Cursor} */ (this.parent);
      this.known = [...parent.path, /** @type {string | number} */ (this.segment)];
    }
    return this.known;
  }

  /** @param {string | number} segment */
  child(segment) {
    return new Cursor(this.doc, undefined, this, segment);
  }
}

/** A decoding failure at a path; becomes a {@link ProjectionError} with serde's wording. */
class DecodeFailure extends Error {
  /**
   * @param {Cursor} at where
   * @param {string} problem e.g. "invalid type: string \"1\", expected a JSON number"
   * @param {'start' | 'end'} edge which end of the value the position points at
   */
  constructor(at, problem, edge = 'end') {
    super(problem);
    this.at = at;
    this.edge = edge;
  }

  toProjectionError() {
    const path = formatPath(this.at.path);
    const where = this.at.doc.position(this.at.path, this.edge);
    const message = where ? `${this.message} ${where}` : this.message;
    return new ProjectionError(path === '.' ? message : `field \`${path}\`: ${message}`);
  }
}

/** A parsed JSON document that can tell where a value is, for error messages. */
export class JsonDocument {
  /** @param {string} text */
  constructor(text) {
    this.text = text;
    /** @type {unknown} */
    this.value = parseJson(text);
    /** @type {Map<string, Span> | null} */
    this.spans = null;
  }

  /**
   * `at line L column C` for the value at `path`, or '' when it cannot be located.
   * @param {(string | number)[]} path
   * @param {'start' | 'end'} edge
   */
  position(path, edge) {
    if (!this.spans) {
      this.spans = new Map();
      new JsonParser(this.text, this.spans).document();
    }
    const span = this.spans.get(formatPath(path));
    return span ? position(this.text, span[edge]) : '';
  }

  /**
   * Decodes the document with `schema`; throws a {@link ProjectionError} naming the field.
   * @template T
   * @param {Schema<T>} schema
   * @returns {T}
   */
  decode(schema) {
    return runDecoder(schema, this.value, new Cursor(this, []));
  }
}

/**
 * @template T
 * @param {Schema<T>} schema @param {unknown} value @param {Cursor} at
 * @returns {T}
 */
function runDecoder(schema, value, at) {
  try {
    return schema.decode(value, at);
  } catch (e) {
    if (e instanceof DecodeFailure) throw e.toProjectionError();
    throw e;
  }
}

/**
 * How serde names an unexpected JSON value.
 * @param {unknown} value
 */
function unexpected(value) {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return `boolean \`${value}\``;
  if (typeof value === 'number' || typeof value === 'bigint') return `integer \`${value}\``;
  if (value instanceof Decimal) {
    const f = value.toNumber();
    return `floating point \`${Number.isInteger(f) && Math.abs(f) < 1e16 ? f.toFixed(1) : String(f)}\``;
  }
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
  if (Array.isArray(value)) return 'sequence';
  return 'map';
}

/** @param {unknown} value */
const isContainer = (value) => typeof value === 'object' && value !== null && !(value instanceof Decimal);

/**
 * @param {Cursor} at @param {unknown} value @param {string} expecting
 */
function invalidType(at, value, expecting) {
  return new DecodeFailure(at, `invalid type: ${unexpected(value)}, expected ${expecting}`, isContainer(value) ? 'start' : 'end');
}

/**
 * @template T
 * @param {string} expecting @param {(value: unknown, at: Cursor) => T} decode
 * @returns {Schema<T>}
 */
const scalar = (expecting, decode) => ({ expecting, decode });

/**
 * Decoders for {@link Event.decode} and {@link JsonDocument.decode}. Errors use serde's
 * wording so a message names the field: "missing field `total`", "field `items[0].unitPrice`:
 * invalid type: string \"1\", expected a JSON number at line 1 column 161".
 */
export const schema = Object.freeze({
  /** @type {Schema<string>} */
  string: scalar('a string', (v, at) => {
    if (typeof v !== 'string') throw invalidType(at, v, 'a string');
    return v;
  }),

  /** @type {Schema<boolean>} */
  boolean: scalar('a boolean', (v, at) => {
    if (typeof v !== 'boolean') throw invalidType(at, v, 'a boolean');
    return v;
  }),

  /** A JSON integer within JavaScript's safe range, as a number. @type {Schema<number>} */
  integer: scalar('i64', (v, at) => {
    if (typeof v === 'number') return v;
    if (typeof v === 'bigint') throw new DecodeFailure(at, `invalid value: integer \`${v}\`, expected an integer within ±2^53`);
    throw invalidType(at, v, 'i64');
  }),

  /** A JSON integer as a BigInt (i64 range). @type {Schema<bigint>} */
  bigint: scalar('i64', (v, at) => {
    if (typeof v === 'number' || typeof v === 'bigint') {
      const n = BigInt(v);
      if (n >= -(2n ** 63n) && n < 2n ** 63n) return n;
    }
    throw invalidType(at, v, 'i64');
  }),

  /** A JSON number (not a string), as an exact Decimal from its digits. @type {Schema<Decimal>} */
  number: scalar('a JSON number', (v, at) => {
    if (typeof v === 'number' || typeof v === 'bigint' || v instanceof Decimal) return Decimal.from(v);
    throw invalidType(at, v, 'a JSON number');
  }),

  /** A decimal: a JSON number or a string of one, as an exact Decimal. @type {Schema<Decimal>} */
  decimal: scalar('a Decimal type representing a fixed-point number', (v, at) => {
    const expecting = 'a Decimal type representing a fixed-point number';
    if (typeof v === 'number' || typeof v === 'bigint' || v instanceof Decimal) return Decimal.from(v);
    if (typeof v === 'string') {
      try {
        return Decimal.parse(v);
      } catch {
        throw new DecodeFailure(at, `invalid value: ${unexpected(v)}, expected ${expecting}`);
      }
    }
    throw invalidType(at, v, expecting);
  }),

  /** An RFC 3339 string, as a {@link Timestamp}. @type {Schema<Timestamp>} */
  timestamp: scalar('a string', (v, at) => {
    if (typeof v !== 'string') throw invalidType(at, v, 'a string');
    try {
      return Timestamp.parse(v);
    } catch (e) {
      throw new DecodeFailure(at, /** @type {Error} */ (e).message);
    }
  }),

  /** A `YYYY-MM-DD` string, as days since 1970-01-01. @type {Schema<number>} */
  date: scalar('a string', (v, at) => {
    if (typeof v !== 'string') throw invalidType(at, v, 'a string');
    try {
      return parseDate(v);
    } catch (e) {
      throw new DecodeFailure(at, /** @type {Error} */ (e).message);
    }
  }),

  /** Any JSON value, as parsed (exact numbers). @type {Schema<unknown>} */
  any: scalar('any value', (v) => v),

  /**
   * `inner`, or `undefined` when the member is absent or null.
   * @template T
   * @param {Schema<T>} inner
   * @returns {Schema<T | undefined>}
   */
  optional(inner) {
    return {
      expecting: inner.expecting,
      optional: true,
      decode: (v, at) => (v === null || v === undefined ? undefined : inner.decode(v, at)),
    };
  },

  /**
   * A JSON array of `item`.
   * @template T
   * @param {Schema<T>} item
   * @returns {Schema<T[]>}
   */
  list(item) {
    return {
      expecting: 'a sequence',
      decode: (v, at) => {
        if (!Array.isArray(v)) throw invalidType(at, v, 'a sequence');
        const out = new Array(v.length);
        for (let i = 0; i < v.length; i++) out[i] = item.decode(v[i], at.child(i));
        return out;
      },
    };
  },

  /**
   * A JSON object with these members (others are ignored), decoded in document order; then
   * the first absent required member, in declared order, is reported missing.
   * @template {Record<string, Schema<any>>} F
   * @param {string} name the record's name, for messages ("expected struct Item")
   * @param {F} fields
   * @returns {Schema<{ [K in keyof F]: F[K] extends Schema<infer T> ? T : never }>}
   */
  record(name, fields) {
    const expecting = `struct ${name}`;
    // Looked up once here, not per decoded value.
    const names = Object.keys(fields);
    const members = names.map((key) => fields[key]);
    const byName = new Map(names.map((key, k) => [key, members[k]]));
    return {
      expecting,
      decode: (v, at) => {
        if (!isContainer(v) || Array.isArray(v)) throw invalidType(at, v, expecting);
        const object = /** @type {Record<string, unknown>} */ (v);
        /** @type {Record<string, unknown>} */
        const out = {};
        const keys = Object.keys(object);
        let found = 0;
        for (let k = 0; k < keys.length; k++) {
          const key = keys[k];
          const member = byName.get(key);
          if (member === undefined) continue;
          found++;
          out[key] = member.decode(object[key], at.child(key));
        }
        if (found === names.length) return /** @type {any} */ (out);
        for (let k = 0; k < names.length; k++) {
          const key = names[k];
          if (Object.hasOwn(object, key)) continue;
          if (!members[k].optional) throw new DecodeFailure(at, `missing field \`${key}\``);
          out[key] = undefined;
        }
        return /** @type {any} */ (out);
      },
    };
  },
});

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/** The header Spring Kafka's JsonSerializer fills with the event's Java class name. */
export const TYPE_ID_HEADER = '__TypeId__';

/**
 * One Kafka record as the host delivers it (WIT `event`), with helpers to read it. The
 * record is kept as consumed; the helpers only read it.
 */
export class Event {
  /**
   * @param {{ topic: string, partition: number, offset: bigint, key?: Uint8Array,
   *   value?: Uint8Array, headers: { key: string, value?: Uint8Array }[], timestampMs?: bigint }} record
   */
  constructor(record) {
    this.topic = record.topic;
    this.partition = record.partition;
    this.offset = record.offset;
    /** Raw key bytes, `undefined` for a null key. */
    this.keyBytes = record.key;
    /** Raw value bytes, `undefined` for a tombstone. */
    this.valueBytes = record.value;
    this.headers = record.headers;
    this.timestampMs = record.timestampMs;
    /** @type {JsonDocument | undefined} */
    this.doc = undefined;
  }

  /** The record key as UTF-8 text, `undefined` when null or not UTF-8. */
  get key() {
    if (this.keyBytes === undefined) return undefined;
    // Decoded once per record (the record is kept as consumed).
    if (this.#keyFrom !== this.keyBytes) {
      this.#keyText = utf8Decode(this.keyBytes);
      this.#keyFrom = this.keyBytes;
    }
    return this.#keyText;
  }

  /** @type {Uint8Array | undefined} the bytes `#keyText` was decoded from */
  #keyFrom = undefined;
  /** @type {string | undefined} */
  #keyText = undefined;

  /**
   * The value of the last header named `name` (Kafka's lastHeader), `undefined` when there is
   * none or its value is null.
   * @param {string} name
   * @returns {Uint8Array | undefined}
   */
  header(name) {
    for (let k = this.headers.length - 1; k >= 0; k--) {
      if (this.headers[k].key === name) return this.headers[k].value ?? undefined;
    }
    return undefined;
  }

  /**
   * The last header named `name` as UTF-8 text.
   * @param {string} name
   */
  headerText(name) {
    const bytes = this.header(name);
    return bytes === undefined ? undefined : utf8Decode(bytes);
  }

  /** The broker timestamp, if any. Prefer the instants inside the event: they survive a re-publication. */
  get timestamp() {
    return this.timestampMs === undefined ? undefined : Timestamp.fromMillis(this.timestampMs);
  }

  /**
   * The simple type name, e.g. `OrderCreated`: the part after the last `.` of the
   * `__TypeId__` header, otherwise the string `type` member of the JSON value; `undefined`
   * when neither is there.
   * @returns {string | undefined}
   */
  get type() {
    const typeId = this.headerText(TYPE_ID_HEADER);
    if (typeId !== undefined) {
      const simple = typeId.slice(typeId.lastIndexOf('.') + 1).trim();
      if (simple !== '') return simple;
    }
    try {
      const value = /** @type {any} */ (this.json());
      const type = isContainer(value) && !Array.isArray(value) ? value.type : undefined;
      return typeof type === 'string' && type !== '' ? type : undefined;
    } catch {
      return undefined;
    }
  }

  /** The value as UTF-8 text; throws for a tombstone or invalid UTF-8. */
  text() {
    if (this.valueBytes === undefined) throw new ProjectionError('the record has no value (tombstone)');
    const text = utf8Decode(this.valueBytes);
    if (text === undefined) throw new ProjectionError('invalid JSON: the value is not UTF-8');
    return text;
  }

  /** The value as a parsed {@link JsonDocument} (cached). */
  document() {
    this.doc ??= new JsonDocument(this.text());
    return this.doc;
  }

  /**
   * The value parsed as JSON, numbers exact (see {@link parseJson}).
   * @returns {unknown}
   */
  json() {
    return this.document().value;
  }

  /**
   * The value decoded with `schema`; the error names the field.
   * @template T
   * @param {Schema<T>} s
   * @returns {T}
   */
  decode(s) {
    return this.document().decode(s);
  }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/** A value with an explicit WIT type, made by {@link float}, {@link timestamp}, ... */
export class Typed {
  /** @param {string} tag WIT variant case @param {unknown} val its payload */
  constructor(tag, val) {
    this.tag = tag;
    this.val = val;
    Object.freeze(this);
  }
}

/** @param {number} n a 64-bit float (not for money) */
export const float = (n) => new Typed('float', Number(n));
/** @param {Decimal | bigint | number | string} d an exact decimal */
export const decimal = (d) => new Typed('decimal', Decimal.from(d).toString());
/** @param {string} s text */
export const text = (s) => new Typed('text', String(s));
/** @param {bigint | number} n a 64-bit integer */
export const integer = (n) => new Typed('integer', BigInt(n));
/**
 * An instant: a {@link Timestamp}, BigInt microseconds, an RFC 3339 string or a JS Date.
 * @param {Timestamp | bigint | string | Date} t
 */
export function timestamp(t) {
  if (t instanceof Timestamp) return new Typed('timestamp', t.micros);
  if (typeof t === 'bigint') return new Typed('timestamp', t);
  if (typeof t === 'string') return new Typed('timestamp', Timestamp.parse(t).micros);
  if (t instanceof Date) return new Typed('timestamp', BigInt(t.getTime()) * 1000n);
  throw new TypeError('timestamp() takes a Timestamp, BigInt micros, RFC 3339 text or a Date');
}
/**
 * A calendar date: days since 1970-01-01, `YYYY-MM-DD` or a {@link Timestamp} (its UTC day).
 * @param {number | string | Timestamp} d
 */
export function date(d) {
  if (d instanceof Timestamp) return new Typed('date', d.days());
  if (typeof d === 'string') return new Typed('date', parseDate(d));
  return new Typed('date', Number(d));
}
/** @param {unknown} doc a JSON document (Decimals keep their digits) */
export const json = (doc) => new Typed('json', stringifyJson(doc));
/** @param {Iterable<unknown>} items scalars of the field's element type */
export const list = (items) => new Typed('list', [...items].map((v) => toWitValue(v, true)));
/** SQL NULL. */
export const NULL = new Typed('null', undefined);

/**
 * The WIT `value` (or `scalar`) for a JS value: null/undefined → null, boolean, string →
 * text, BigInt or safe integer → integer, Decimal → decimal, Timestamp → timestamp, or a
 * {@link Typed} wrapper. Other numbers are refused: say `float(x)` or use a Decimal.
 * @param {unknown} v
 * @param {boolean} [asScalar]
 * @returns {{ tag: string, val?: unknown }}
 */
export function toWitValue(v, asScalar = false) {
  if (v === null || v === undefined) return { tag: 'null' };
  switch (typeof v) {
    case 'string':
      return { tag: 'text', val: v };
    case 'boolean':
      return { tag: 'boolean', val: v };
    case 'bigint':
      return { tag: 'integer', val: v };
    case 'number':
      if (Number.isSafeInteger(v)) return { tag: 'integer', val: BigInt(v) };
      throw new TypeError(`${v} is not a safe integer: use float(${v}) for a float or a Decimal for money`);
    default:
      break;
  }
  if (v instanceof Decimal) return { tag: 'decimal', val: v.toString() };
  if (v instanceof Timestamp) return { tag: 'timestamp', val: v.micros };
  if (v instanceof Typed) {
    if (asScalar && (v.tag === 'json' || v.tag === 'list')) throw new TypeError(`a list cannot hold a ${v.tag} value`);
    return v.tag === 'null' ? { tag: 'null' } : { tag: v.tag, val: v.val };
  }
  throw new TypeError(`cannot write a ${typeof v} as a field value: wrap it (json(), list(), float(), ...)`);
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/** @typedef {unknown | unknown[]} Key a key value, or an array of values for a composite key */

/** @param {Key} key */
function keyValues(key) {
  if (!Array.isArray(key)) return [toWitValue(key)];
  const out = new Array(key.length);
  for (let k = 0; k < key.length; k++) out[k] = toWitValue(key[k]);
  return out;
}

/** An operation on one row; build it with {@link upsert}, {@link increment} or {@link del}. */
export class Operation {
  /** @param {'upsert' | 'increment' | 'delete'} kind @param {string} collection @param {Key} key */
  constructor(kind, collection, key) {
    this.kind = kind;
    this.collection = collection;
    this.key = key;
    /** @type {[string, unknown][]} */
    this.fields = [];
  }

  /** The WIT `operation`. */
  toWit() {
    const key = keyValues(this.key);
    if (this.kind === 'delete') return { tag: 'delete', val: { collection: this.collection, key } };
    const fields = new Array(this.fields.length);
    for (let k = 0; k < fields.length; k++) {
      const pair = this.fields[k];
      fields[k] = { name: pair[0], value: toWitValue(pair[1]) };
    }
    return { tag: this.kind, val: { collection: this.collection, key, fields } };
  }
}

/** Merge fields into a row, creating it when absent (unnamed fields then start null). */
export class Upsert extends Operation {
  /** @param {string} collection @param {Key} key */
  constructor(collection, key) {
    super('upsert', collection, key);
  }

  /**
   * Sets `field` to `value` (null or undefined clears it).
   * @param {string} field @param {unknown} value
   */
  set(field, value) {
    this.fields.push([field, value]);
    return this;
  }
}

/** Add to numeric (or JSON counter map) fields of a row, creating it when absent. */
export class Increment extends Operation {
  /** @param {string} collection @param {Key} key */
  constructor(collection, key) {
    super('increment', collection, key);
  }

  /**
   * Adds `amount` to `field`: an integer, `float(x)` or Decimal of the field's type, or for a
   * json field an object of numbers added key by key, e.g. `{ SUBMITTED: -1, SHIPPED: 1 }`
   * (a key reaching zero is removed). A plain object is sent as JSON.
   * @param {string} field @param {unknown} amount
   */
  add(field, amount) {
    const isMap = isContainer(amount) && !(amount instanceof Typed) && !(amount instanceof Timestamp);
    this.fields.push([field, isMap ? json(amount) : amount]);
    return this;
  }
}

/** @param {string} collection @param {Key} key */
export const upsert = (collection, key) => new Upsert(collection, key);
/** @param {string} collection @param {Key} key */
export const increment = (collection, key) => new Increment(collection, key);
/**
 * Delete the row with this key, if any.
 * @param {string} collection @param {Key} key
 */
export const del = (collection, key) => new Operation('delete', collection, key);
export { del as deleteRow };

// ---------------------------------------------------------------------------------------------
// Spec builders
// ---------------------------------------------------------------------------------------------

/** The element types of list fields. */
const SCALAR_TYPES = ['boolean', 'integer', 'float', 'decimal', 'text', 'timestamp', 'date'];

/** One field of a collection; chain the flag methods. */
export class Field {
  /** @param {string} name @param {string} type @param {string} [element] list element type */
  constructor(name, type, element) {
    this.name = name;
    this.type = type;
    this.element = element;
    /** @type {boolean | undefined} */
    this.isNullable = undefined;
    this.isSearchable = false;
    this.isFilterable = false;
    this.isSortable = false;
    /** @type {{ numerator: string, denominator: string, scale: number } | undefined} */
    this.computed = undefined;
    this.about = '';
  }

  /** Says what the field means, for people reading the read model. @param {string} text */
  description(text) {
    this.about = text;
    return this;
  }

  /** Allows null (the default, except for primary-key fields). */
  nullable() {
    this.isNullable = true;
    return this;
  }

  /** Forbids null: the host declares the column NOT NULL. */
  required() {
    this.isNullable = false;
    return this;
  }

  /** Puts the field into the collection's full-text search document. */
  searchable() {
    this.isSearchable = true;
    return this;
  }

  /** Lets queries filter on the field (the host indexes it). */
  filterable() {
    this.isFilterable = true;
    return this;
  }

  /** Lets queries sort on the field (the host indexes it). */
  sortable() {
    this.isSortable = true;
    return this;
  }

  /**
   * Makes the host compute the field as `round(numerator / denominator, scale)`, null when
   * the denominator is zero or null. Operations must not write it.
   * @param {string} numerator @param {string} denominator @param {number} scale
   */
  ratio(numerator, denominator, scale) {
    this.computed = { numerator, denominator, scale };
    return this;
  }
}

/**
 * Field constructors: `field.text('customer_id').filterable().description('...')`.
 */
export const field = Object.freeze({
  /** @param {string} name */ boolean: (name) => new Field(name, 'boolean'),
  /** @param {string} name */ integer: (name) => new Field(name, 'integer'),
  /** @param {string} name */ float: (name) => new Field(name, 'float'),
  /** @param {string} name */ decimal: (name) => new Field(name, 'decimal'),
  /** @param {string} name */ text: (name) => new Field(name, 'text'),
  /** @param {string} name */ timestamp: (name) => new Field(name, 'timestamp'),
  /** @param {string} name */ date: (name) => new Field(name, 'date'),
  /** @param {string} name */ json: (name) => new Field(name, 'json'),
  /**
   * A list of `element` scalars.
   * @param {string} name @param {'boolean'|'integer'|'float'|'decimal'|'text'|'timestamp'|'date'} element
   */
  list: (name, element) => {
    if (!SCALAR_TYPES.includes(element)) throw new TypeError(`unknown list element type ${element}`);
    return new Field(name, 'list', element);
  },
});

/** A collection (table or index) of a read model. */
export class Collection {
  /** @param {string} name @param {string} description @param {'postgres' | 'elasticsearch'} sink */
  constructor(name, description, sink) {
    this.name = name;
    this.text = description;
    this.sink = sink;
    /** @type {Field[]} */
    this.fields = [];
    /** @type {string[]} */
    this.keyFields = [];
  }

  /** Adds fields after the ones declared so far. @param {...Field} fields */
  field(...fields) {
    this.fields.push(...fields);
    return this;
  }

  /** Names the primary-key fields, in key order; they are never nullable. @param {...string} names */
  primaryKey(...names) {
    this.keyFields = names.flat();
    return this;
  }

  /** The WIT `collection`. */
  toWit() {
    return {
      name: this.name,
      fields: this.fields.map((f) => ({
        name: f.name,
        type: f.type === 'list' ? { tag: 'list', val: f.element } : { tag: f.type },
        nullable: !this.keyFields.includes(f.name) && (f.isNullable ?? true),
        searchable: f.isSearchable,
        filterable: f.isFilterable,
        sortable: f.isSortable,
        computed: f.computed === undefined ? undefined : { tag: 'ratio', val: { ...f.computed } },
        description: f.about,
      })),
      primaryKey: [...this.keyFields],
      sink: this.sink,
      description: this.text,
    };
  }
}

/** A PostgreSQL table. @param {string} name @param {string} description what one row is */
export const postgres = (name, description) => new Collection(name, description, 'postgres');
/** An Elasticsearch index. @param {string} name @param {string} description what one document is */
export const elasticsearch = (name, description) => new Collection(name, description, 'elasticsearch');

/**
 * A projection spec (WIT `projection-spec`).
 * @param {string} name lowercase letters, digits and `-`
 * @param {number} version a new version is rebuilt from the start of the topic
 * @param {string} description one sentence on what the projection is for
 * @param {Collection[]} collections
 */
export function spec(name, version, description, collections) {
  return { name, version, description, collections: collections.map((c) => c.toWit()) };
}

// ---------------------------------------------------------------------------------------------
// Host access, context and the entry point
// ---------------------------------------------------------------------------------------------

/** Severities of log lines (WIT `level`). */
export const LEVELS = Object.freeze(['debug', 'info', 'warn', 'error']);

/** The most bytes the host stores under one state key. */
export const MAX_STATE_BYTES = 64 * 1024;

/**
 * What the helper needs from the host: the WIT `state` interface and `log.write`.
 * @typedef {{
 *   state: { get(key: string): Uint8Array | undefined, set(key: string, value: Uint8Array): void,
 *            remove(key: string): void },
 *   log(level: string, message: string): void,
 * }} Host
 */

/** @type {Host | null} */
let host = null;

/**
 * Connects the helper to the host: the component's entry module passes the real imports,
 * tests pass a fake. Returns the previous host.
 * @param {Host | null} next
 */
export function useHost(next) {
  const previous = host;
  host = next;
  return previous;
}

function currentHost() {
  if (!host) throw new Error('no host: the component entry (or a test harness) must call useHost()');
  return host;
}

/**
 * Per-key state and logging for the event being handled. State is JSON (numbers exact);
 * writes are visible to the same event at once and reach the host only when the event
 * succeeds, so a failed event leaves no state behind.
 */
export class Context {
  /** @param {Host} h */
  constructor(h) {
    this.host = h;
    /** @type {Map<string, Uint8Array | undefined>} the current event's writes (undefined: removed) */
    this.pending = new Map();
  }

  /** @param {string} key */
  #get(key) {
    return this.pending.has(key) ? this.pending.get(key) : this.host.state.get(key) ?? undefined;
  }

  /**
   * The raw bytes stored under `key`, if any.
   * @param {string} key
   */
  stateBytes(key) {
    return this.#get(key);
  }

  /**
   * The state stored under `key`, parsed as JSON (numbers exact); `undefined` when none.
   * @param {string} key
   * @returns {any}
   */
  state(key) {
    const bytes = this.#get(key);
    if (bytes === undefined) return undefined;
    try {
      const text = utf8Decode(bytes);
      if (text === undefined) throw new Error('not UTF-8');
      return parseJson(text);
    } catch (e) {
      throw new ProjectionError(`corrupt state under key \`${key}\`: ${/** @type {Error} */ (e).message}`);
    }
  }

  /**
   * Stores `value` under `key` as compact JSON, replacing what was there; refuses more than
   * {@link MAX_STATE_BYTES}.
   * @param {string} key @param {unknown} value
   */
  setState(key, value) {
    const bytes = utf8Encode(stringifyJson(value));
    if (bytes.length > MAX_STATE_BYTES) {
      throw new ProjectionError(
        `state under key \`${key}\` is ${bytes.length} bytes, over the ${MAX_STATE_BYTES}-byte limit`,
      );
    }
    this.pending.set(key, bytes);
  }

  /** Removes the state under `key`, if any. @param {string} key */
  removeState(key) {
    this.pending.set(key, undefined);
  }

  /**
   * Writes a line to the host's log (rate-limited by the host: keep per-event lines at debug).
   * @param {'debug' | 'info' | 'warn' | 'error'} level @param {string} message
   */
  log(level, message) {
    if (!LEVELS.includes(level)) throw new TypeError(`unknown log level ${level}`);
    this.host.log(level, String(message));
  }

  /** @param {string} message */
  debug(message) {
    this.log('debug', message);
  }

  /** @param {string} message */
  info(message) {
    this.log('info', message);
  }

  /** @param {string} message */
  warn(message) {
    this.log('warn', message);
  }

  /** @param {string} message */
  error(message) {
    this.log('error', message);
  }

  /** The event succeeded: pass its writes to the host. */
  commit() {
    for (const [key, bytes] of this.pending) {
      if (bytes === undefined) this.host.state.remove(key);
      else this.host.state.set(key, bytes);
    }
    this.pending.clear();
  }

  /** The event failed: drop its writes. */
  discard() {
    this.pending.clear();
  }
}

/**
 * The message recorded for an exception thrown by `handle`.
 * @param {unknown} e
 */
function errorMessage(e) {
  if (e instanceof ProjectionError) return e.message;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/**
 * Defines a projection; returns the component's two exports (`describe`, `handle`) in the
 * WIT shapes. Export them from the plugin module:
 * `export const { describe, handle } = projection({ describe, handle })`.
 *
 * @param {{
 *   describe: () => ReturnType<typeof spec>,
 *   handle: (event: Event, ctx: Context) => Iterable<Operation> | Operation | undefined | null,
 * }} definition `handle` returns the operations one event implies (nothing for an event it
 *   ignores) or throws; the exception becomes that event's error.
 */
export function projection(definition) {
  return {
    describe() {
      return definition.describe();
    },

    /** @param {ConstructorParameters<typeof Event>[0][]} events */
    handle(events) {
      const ctx = new Context(currentHost());
      const results = new Array(events.length);
      for (let k = 0; k < events.length; k++) results[k] = handleOne(definition.handle, events[k], ctx);
      return results;
    },
  };
}

/**
 * One event's WIT result.
 * @param {(event: Event, ctx: Context) => Iterable<Operation> | Operation | undefined | null} handle
 * @param {ConstructorParameters<typeof Event>[0]} record
 * @param {Context} ctx
 */
function handleOne(handle, record, ctx) {
  try {
    const result = handle(new Event(record), ctx);
    const ops = result == null ? [] : result instanceof Operation ? [result] : Array.isArray(result) ? result : [...result];
    const wit = new Array(ops.length);
    for (let k = 0; k < ops.length; k++) {
      const op = ops[k];
      if (!(op instanceof Operation)) throw new TypeError('handle must return operations (upsert/increment/del)');
      wit[k] = op.toWit();
    }
    ctx.commit();
    return { tag: 'ok', val: wit };
  } catch (e) {
    ctx.discard();
    return { tag: 'err', val: errorMessage(e) };
  }
}
