/**
 * @file Native test support for projections written with `projector-plugin`: run a plugin's
 * `describe`/`handle` exports under Node with in-memory state, applying the operations with
 * the host's semantics, and assert exact rows.
 *
 * Invariants:
 * - The harness calls the plugin's real exports (the WIT-shaped `describe` and `handle`), so
 *   the conversions a component performs are exercised too.
 * - Operations apply like the host applies them: upsert merges (unnamed fields stay, a new
 *   row starts null), increment adds (absent or null counts as zero; a JSON object of numbers
 *   adds key by key, exactly, and a key reaching zero is removed), delete removes, computed
 *   ratios are `round(numerator / denominator, scale)` half away from zero, null on a zero or
 *   null denominator. An operation the host would reject throws, naming the event.
 * - A failed event leaves no trace: no operation of it applies and its state writes are dropped.
 * - Rows render as plain JSON-like objects: decimals as strings with their scale (`"116.80"`),
 *   timestamps as RFC 3339 (`"2026-11-20T09:00:00Z"`), dates as `"YYYY-MM-DD"`, integers as
 *   numbers (BigInt beyond 2^53), JSON fields as parsed documents (numbers as JS numbers).
 */

import {
  Decimal,
  Timestamp,
  formatDate,
  parseJson,
  stringifyJson,
  toWitValue,
  useHost,
  utf8Decode,
  utf8Encode,
} from './projector.js';

/** @typedef {{ tag: string, val?: any }} WitValue */

const NUMERIC = ['integer', 'float', 'decimal'];

// The name rules, as the host's `spec.rs` states them (checked by the shared conformance
// corpus, `tests/conformance/declarations.json`).
/** Longest projection name; collection and field identifiers may have 8 more characters. */
export const MAX_NAME = 40;
const MAX_COLLECTIONS = 32;
const MAX_FIELDS = 256;
const MAX_DESCRIPTION = 4096;
const PROJECTION_NAME = new RegExp(`^[a-z](?:[a-z0-9-]{0,${MAX_NAME - 2}}[a-z0-9])?$`);
const IDENTIFIER = new RegExp(`^[a-z][a-z0-9_]{0,${MAX_NAME + 7}}$`);
const KEY_TYPES = ['text', 'integer', 'boolean', 'date', 'timestamp'];

/**
 * Whether `name` is a valid projection name: lowercase ASCII letters, digits and `-`, starting
 * with a letter, not ending with `-`, at most 40 characters.
 * @param {string} name
 */
export const isProjectionName = (name) => PROJECTION_NAME.test(name);

/**
 * Whether `name` is a valid collection or field name: lowercase ASCII letters, digits and `_`,
 * starting with a letter, at most 48 characters.
 * @param {string} name
 */
export const isIdentifier = (name) => IDENTIFIER.test(name);
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/**
 * Sorts object members recursively, like serde_json's default (BTreeMap) maps.
 * @param {unknown} value
 * @returns {unknown}
 */
function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object' && !(value instanceof Decimal)) {
    const object = /** @type {Record<string, unknown>} */ (value);
    const sorted = {};
    for (const key of Object.keys(object).sort()) {
      Object.defineProperty(sorted, key, { value: sortKeys(object[key]), enumerable: true, writable: true, configurable: true });
    }
    return sorted;
  }
  return value;
}

/**
 * The event one `samples.jsonl` line describes (`{"key", "headers", "value"}`), in the WIT
 * shape, on topic `order-events`, partition 0: the value is re-serialized compactly with its
 * numbers' exact digits and its members sorted, as the host's `projector check` does.
 * @param {string} line
 * @param {number | bigint} [offset]
 */
export function eventFromSample(line, offset = 0) {
  const sample = /** @type {any} */ (parseJson(line));
  const headers = Object.entries(sample.headers ?? {}).map(([key, value]) => {
    if (value !== null && typeof value !== 'string') throw new Error(`header \`${key}\` must be a string or null`);
    return { key, value: value === null ? undefined : utf8Encode(value) };
  });
  return {
    topic: 'order-events',
    partition: 0,
    offset: BigInt(offset),
    key: sample.key == null ? undefined : utf8Encode(sample.key),
    value: sample.value == null ? undefined : utf8Encode(stringifyJson(sortKeys(sample.value))),
    headers,
    timestampMs: undefined,
  };
}

/**
 * The events of a `samples.jsonl` text, blank lines skipped; offsets count from 0.
 * @param {string} jsonl
 */
export function eventsFromSamples(jsonl) {
  return jsonl
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, offset) => eventFromSample(line, offset));
}

/** @param {WitValue} v */
function asDecimal(v) {
  if (v.tag === 'integer') return new Decimal(v.val, 0);
  if (v.tag === 'decimal') return Decimal.parse(v.val);
  if (v.tag === 'float') return Number.isFinite(v.val) ? Decimal.parse(String(v.val)) : undefined;
  return undefined;
}

/** @param {WitValue} v */
function show(v) {
  return v.val === undefined ? v.tag : `${v.tag}(${typeof v.val === 'string' ? JSON.stringify(v.val) : String(v.val)})`;
}

/** @param {{ tag: string, val?: string }} type */
const typeName = (type) => (type.tag === 'list' ? `list<${type.val}>` : type.tag);

/** @param {string} text */
function isPlainDecimal(text) {
  return typeof text === 'string' && /^-?\d+(\.\d+)?$/.test(text);
}

/**
 * Whether `v` fits a field of type `type` (null always does).
 * @param {{ tag: string, val?: string }} type @param {WitValue} v
 * @returns {boolean}
 */
function fits(type, v) {
  if (v.tag === 'null') return true;
  switch (type.tag) {
    case 'decimal':
      return (v.tag === 'decimal' && isPlainDecimal(v.val)) || (v.tag === 'integer' && fits(INTEGER, v));
    case 'float':
      return v.tag === 'float' || (v.tag === 'integer' && fits(INTEGER, v));
    case 'json':
      if (v.tag !== 'json') return false;
      try {
        parseJson(v.val);
        return true;
      } catch {
        return false;
      }
    case 'list':
      return v.tag === 'list' && v.val.every((/** @type {WitValue} */ s) => fits({ tag: /** @type {string} */ (type.val) }, s));
    case 'integer':
      return v.tag === 'integer' && v.val >= I64_MIN && v.val <= I64_MAX;
    default:
      return v.tag === type.tag;
  }
}

const INTEGER = { tag: 'integer' };

/**
 * The value a field of `type` stores for `v`: an integer is accepted for a decimal or float
 * field (alone or in a list) and stored as that type, as the host does.
 * @param {{ tag: string, val?: string }} type @param {WitValue} v
 * @returns {WitValue}
 */
function stored(type, v) {
  if (v.tag === 'integer' && type.tag === 'decimal') return { tag: 'decimal', val: String(v.val) };
  if (v.tag === 'integer' && type.tag === 'float') return { tag: 'float', val: Number(v.val) };
  if (v.tag === 'list' && type.tag === 'list') return { tag: 'list', val: v.val.map((/** @type {WitValue} */ e) => stored({ tag: /** @type {string} */ (type.val) }, e)) };
  return v;
}

/**
 * `current + amount` for an increment.
 * @param {{ tag: string }} type @param {WitValue} current @param {WitValue} amount
 * @returns {WitValue}
 */
function add(type, current, amount) {
  const fail = () => new Error(`cannot add ${show(amount)} to a ${typeName(type)} field holding ${show(current)}`);
  const base = current.tag === 'null' ? undefined : current;
  if (base && base.tag !== type.tag) throw fail();
  switch (type.tag) {
    case 'integer': {
      if (amount.tag !== 'integer') throw fail();
      const total = (base ? base.val : 0n) + amount.val;
      if (total < I64_MIN || total > I64_MAX) throw new Error('integer overflow');
      return { tag: 'integer', val: total };
    }
    case 'float':
      if (amount.tag !== 'float' && amount.tag !== 'integer') throw fail();
      return { tag: 'float', val: (base ? base.val : 0) + Number(amount.val) };
    case 'decimal': {
      if (!(amount.tag === 'decimal' && isPlainDecimal(amount.val)) && amount.tag !== 'integer') throw fail();
      const a = /** @type {Decimal} */ (asDecimal(amount));
      return { tag: 'decimal', val: (base ? Decimal.parse(base.val) : Decimal.ZERO).add(a).toString() };
    }
    case 'json':
      if (amount.tag !== 'json') throw fail();
      return { tag: 'json', val: addJson(base?.val, amount.val) };
    default:
      throw fail();
  }
}

/**
 * Adds a JSON object of numbers to a stored JSON object key by key; keys reaching zero go.
 * @param {string | undefined} current @param {string} amount
 */
function addJson(current, amount) {
  const isObject = (/** @type {unknown} */ v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Decimal);
  const amounts = parseJson(amount);
  if (!isObject(amounts)) throw new Error(`a JSON increment must be an object of numbers, not ${amount}`);
  const object = /** @type {Record<string, unknown>} */ (current === undefined ? {} : parseJson(current));
  if (!isObject(object)) throw new Error(`cannot add to the JSON value ${current}: not an object`);
  for (const [key, delta] of Object.entries(/** @type {object} */ (amounts))) {
    if (!(typeof delta === 'number' || typeof delta === 'bigint' || delta instanceof Decimal)) {
      throw new Error(`JSON increment \`${key}\` is ${stringifyJson(delta)}, not a number`);
    }
    const held = object[key];
    if (held !== undefined && held !== null && !(typeof held === 'number' || typeof held === 'bigint' || held instanceof Decimal)) {
      throw new Error(`cannot add to \`${key}\`: it holds ${stringifyJson(held)}`);
    }
    const total = Decimal.from(held ?? 0).add(Decimal.from(delta));
    if (total.isZero()) delete object[key];
    else object[key] = total.scale === 0 ? total.coefficient : total;
  }
  return stringifyJson(object);
}

/**
 * A stored value as a plain JSON-like value.
 * @param {WitValue} v
 * @returns {unknown}
 */
function render(v) {
  switch (v.tag) {
    case 'null':
      return null;
    case 'integer':
      return v.val >= BigInt(Number.MIN_SAFE_INTEGER) && v.val <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v.val) : v.val;
    case 'timestamp':
      return new Timestamp(v.val).toString();
    case 'date':
      return formatDate(v.val);
    case 'json':
      return plain(parseJson(v.val));
    case 'list':
      return v.val.map(render);
    default:
      return v.val;
  }
}

/** @param {unknown} v JSON with exact numbers → JSON with JS numbers @returns {unknown} */
function plain(v) {
  if (v instanceof Decimal) return v.toNumber();
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** @param {WitValue[]} key */
const keyId = (key) => JSON.stringify(key.map((v) => [v.tag, v.val === undefined ? null : String(v.val)]));

/**
 * Orders keys like the Rust harness: numbers, then timestamps, dates, text.
 * @param {WitValue[]} a @param {WitValue[]} b
 */
function compareKeys(a, b) {
  const rank = (/** @type {WitValue} */ v) =>
    ({ integer: 1, decimal: 1, float: 1, timestamp: 2, date: 3, text: 4 })[v.tag] ?? 5;
  for (let k = 0; k < Math.min(a.length, b.length); k++) {
    const [x, y] = [a[k], b[k]];
    if (rank(x) !== rank(y)) return rank(x) - rank(y);
    let c = 0;
    if (rank(x) === 1) c = /** @type {Decimal} */ (asDecimal(x)).cmp(/** @type {Decimal} */ (asDecimal(y)));
    else if (rank(x) <= 3) c = x.val < y.val ? -1 : x.val > y.val ? 1 : 0;
    else c = String(x.val) < String(y.val) ? -1 : String(x.val) > String(y.val) ? 1 : 0;
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/**
 * Why the host would refuse `spec`, or undefined: the checks of the host's `spec.rs`, in its
 * order (names, sizes, keys, field flags, ratios).
 * @param {any} spec
 */
function specProblem(spec) {
  if (!isProjectionName(spec.name)) {
    return `projection name \`${spec.name}\` must be 1-${MAX_NAME} lowercase ASCII letters, digits and \`-\`, starting with a letter`;
  }
  if (!Number.isInteger(spec.version) || spec.version < 1 || spec.version >= 2 ** 32) return `version ${spec.version}: must be at least 1 and fit a u32`;
  if (spec.collections.length === 0) return 'a projection declares at least one collection';
  if (spec.collections.length > MAX_COLLECTIONS) return `${spec.collections.length} collections declared; at most ${MAX_COLLECTIONS}`;
  const texts = [spec.description, ...spec.collections.flatMap((/** @type {any} */ c) => [c.description, ...c.fields.map((/** @type {any} */ f) => f.description)])];
  if (texts.some((t) => utf8Encode(t ?? '').length > MAX_DESCRIPTION)) return `a description is over ${MAX_DESCRIPTION} bytes`;
  const names = new Set();
  for (const c of spec.collections) {
    const problem = collectionProblem(c);
    if (problem) return `collection \`${c.name}\`: ${problem}`;
    if (names.has(c.name)) return `collection \`${c.name}\` is declared twice`;
    names.add(c.name);
  }
  return undefined;
}

/** @param {any} c a WIT collection */
function collectionProblem(c) {
  if (!isIdentifier(c.name)) return 'the name must be lowercase ASCII letters, digits and `_`, starting with a letter';
  if (c.fields.length === 0) return 'declares no fields';
  if (c.fields.length > MAX_FIELDS) return `${c.fields.length} fields declared; at most ${MAX_FIELDS}`;
  const byName = new Map();
  for (const f of c.fields) {
    if (!isIdentifier(f.name)) return `field \`${f.name}\`: the name must be lowercase ASCII letters, digits and \`_\`, starting with a letter`;
    if (byName.has(f.name)) return `field \`${f.name}\` is declared twice`;
    byName.set(f.name, f);
  }
  if (c.primaryKey.length === 0) return 'declares no primary key';
  if (new Set(c.primaryKey).size !== c.primaryKey.length) return 'the primary key names a field twice';
  for (const k of c.primaryKey) {
    const f = byName.get(k);
    if (!f) return `primary key names unknown field \`${k}\``;
    if (!KEY_TYPES.includes(f.type.tag)) return `primary key field \`${k}\` must be text, integer, boolean, date or timestamp`;
    if (f.computed) return `primary key field \`${k}\` cannot be computed`;
  }
  for (const f of c.fields) {
    if (f.sortable && (f.type.tag === 'json' || f.type.tag === 'list')) return `field \`${f.name}\`: json and list fields cannot be sortable`;
    if (f.searchable && !(f.type.tag === 'text' || (f.type.tag === 'list' && f.type.val === 'text'))) {
      return `field \`${f.name}\`: only text and list<text> fields can be searchable`;
    }
    if (!f.computed) continue;
    const { numerator, denominator, scale } = f.computed.val;
    if (f.type.tag !== 'decimal' && f.type.tag !== 'float') return `field \`${f.name}\`: a computed ratio must be decimal or float`;
    if (!(scale >= 0 && scale <= 30)) return `field \`${f.name}\`: ratio scale must be at most 30`;
    for (const operand of [numerator, denominator]) {
      const o = byName.get(operand);
      if (!o || !NUMERIC.includes(o.type.tag) || o.computed) {
        return `field \`${f.name}\`: ratio operand \`${operand}\` must be a stored integer, float or decimal field`;
      }
    }
  }
  return undefined;
}

/** One collection's rows, kept as WIT values. */
class Table {
  /** @param {any} spec the WIT collection */
  constructor(spec) {
    this.spec = spec;
    /** @type {Map<string, { key: WitValue[], row: Map<string, WitValue> }>} */
    this.rows = new Map();
    /** @type {Map<string, any>} */
    this.fields = new Map(spec.fields.map((/** @type {any} */ f) => [f.name, f]));
  }

  /** @param {any} op a WIT operation */
  apply(op) {
    const { key } = op.val;
    const names = this.spec.primaryKey;
    if (key.length !== names.length) {
      throw new Error(`key has ${key.length} values, \`${this.spec.name}\` has ${names.length} key fields`);
    }
    names.forEach((/** @type {string} */ name, /** @type {number} */ k) => {
      if (key[k].tag === 'null') throw new Error(`key field \`${name}\` is null`);
      if (!fits(this.fields.get(name).type, key[k])) {
        throw new Error(`key field \`${name}\`: ${show(key[k])} does not fit a ${typeName(this.fields.get(name).type)} field`);
      }
    });
    const id = keyId(key);
    if (op.tag === 'delete') {
      this.rows.delete(id);
      return;
    }
    const existing = this.rows.get(id);
    const row = existing
      ? new Map(existing.row)
      : new Map(this.spec.fields.map((/** @type {any} */ f) => {
          const k = names.indexOf(f.name);
          return [f.name, k < 0 ? { tag: 'null' } : key[k]];
        }));
    const seen = new Set();
    for (const { name, value } of op.val.fields) {
      const f = this.fields.get(name);
      if (!f) throw new Error(`unknown field \`${name}\` in \`${this.spec.name}\``);
      if (f.computed) throw new Error(`field \`${name}\` is computed by the host and must not be written`);
      if (names.includes(name)) throw new Error(`key field \`${name}\` is set through the operation's key`);
      if (seen.has(name)) throw new Error(`field \`${name}\` written twice in one operation`);
      seen.add(name);
      if (op.tag === 'upsert') {
        if (!fits(f.type, value)) throw new Error(`field \`${name}\`: ${show(value)} does not fit a ${typeName(f.type)} field`);
        row.set(name, stored(f.type, value));
      } else {
        try {
          row.set(name, add(f.type, /** @type {WitValue} */ (row.get(name)), value));
        } catch (e) {
          throw new Error(`field \`${name}\`: ${/** @type {Error} */ (e).message}`);
        }
      }
    }
    this.compute(row);
    for (const f of this.spec.fields) {
      if (!f.nullable && row.get(f.name)?.tag === 'null') throw new Error(`field \`${f.name}\` is not nullable but would be null`);
    }
    this.rows.set(id, { key, row });
  }

  /** @param {Map<string, WitValue>} row */
  compute(row) {
    for (const f of this.spec.fields) {
      if (!f.computed) continue;
      const { numerator, denominator, scale } = f.computed.val;
      const n = asDecimal(/** @type {WitValue} */ (row.get(numerator)));
      const d = asDecimal(/** @type {WitValue} */ (row.get(denominator)));
      if (!n || !d || d.isZero()) {
        row.set(f.name, { tag: 'null' });
        continue;
      }
      const q = n.div(d, scale);
      if (f.type.tag === 'integer') row.set(f.name, { tag: 'integer', val: q.toBigInt() });
      else if (f.type.tag === 'float') row.set(f.name, { tag: 'float', val: q.toNumber() });
      else row.set(f.name, { tag: 'decimal', val: q.toString() });
    }
  }
}

/**
 * Runs a projection natively the way the host does, keeping its per-key state, its log and an
 * in-memory read model across calls.
 */
export class Harness {
  /**
   * @param {{ describe: () => any, handle: (events: any[]) => { tag: 'ok' | 'err', val: any }[] }} plugin
   *   the plugin module's exports
   */
  constructor(plugin) {
    this.plugin = plugin;
    this.spec = plugin.describe();
    const problem = specProblem(this.spec);
    if (problem) throw new Error(`invalid projection spec: ${problem}`);
    /** @type {Map<string, Table>} */
    this.tables = new Map(this.spec.collections.map((/** @type {any} */ c) => [c.name, new Table(c)]));
    /** @type {Map<string, Uint8Array>} */
    this.store = new Map();
    /** @type {[string, string][]} */
    this.logs = [];
  }

  /**
   * Handles `events` in one `handle` call (one batch) and applies the operations of each event
   * that succeeded; returns the WIT results (`{ tag: 'ok', val: ops }` / `{ tag: 'err', val }`).
   * @param {any[]} events WIT-shaped events, e.g. from {@link eventsFromSamples}
   */
  feedBatch(events) {
    const previous = useHost({
      state: {
        get: (key) => this.store.get(key),
        set: (key, value) => {
          this.store.set(key, Uint8Array.from(value));
        },
        remove: (key) => {
          this.store.delete(key);
        },
      },
      log: (level, message) => {
        this.logs.push([level, message]);
      },
    });
    let results;
    try {
      results = this.plugin.handle(events);
    } finally {
      useHost(previous);
    }
    if (results.length !== events.length) throw new Error(`handle returned ${results.length} results for ${events.length} events`);
    results.forEach((result, k) => {
      if (result.tag !== 'ok') return;
      for (const op of result.val) {
        const table = this.tables.get(op.val.collection);
        try {
          if (!table) throw new Error(`unknown collection \`${op.val.collection}\``);
          table.apply(op);
        } catch (e) {
          throw new Error(`event at offset ${events[k].offset}: the host would reject ${op.tag} on \`${op.val.collection}\`: ${/** @type {Error} */ (e).message}`);
        }
      }
    });
    return results;
  }

  /**
   * Handles one event (a batch of one); returns its WIT result.
   * @param {any} event
   */
  feed(event) {
    return this.feedBatch([event])[0];
  }

  /**
   * Feeds `events` one batch each; one result per event.
   * @param {any[]} events
   */
  feedAll(events) {
    return events.map((event) => this.feed(event));
  }

  /** @param {string} collection */
  #table(collection) {
    const table = this.tables.get(collection);
    if (!table) throw new Error(`projection \`${this.spec.name}\` has no collection \`${collection}\``);
    return table;
  }

  /**
   * The rows of `collection` in primary-key order, as plain objects in column order.
   * @param {string} collection
   */
  rows(collection) {
    return [...this.#table(collection).rows.values()]
      .sort((a, b) => compareKeys(a.key, b.key))
      .map(({ row }) => Object.fromEntries([...row].map(([name, v]) => [name, render(v)])));
  }

  /**
   * The row of `collection` with primary key `key` (a value, or an array for a composite key).
   * @param {string} collection @param {unknown} key
   */
  row(collection, key) {
    const values = (Array.isArray(key) ? key : [key]).map((v) => toWitValue(v));
    const found = this.#table(collection).rows.get(keyId(values));
    return found && Object.fromEntries([...found.row].map(([name, v]) => [name, render(v)]));
  }

  /**
   * The state stored under `key` as text (its exact JSON), if any.
   * @param {string} key
   */
  stateText(key) {
    const bytes = this.store.get(key);
    return bytes === undefined ? undefined : utf8Decode(bytes);
  }

  /**
   * The state stored under `key`, parsed (numbers exact), if any.
   * @param {string} key
   */
  state(key) {
    const text = this.stateText(key);
    return text === undefined ? undefined : parseJson(text);
  }
}
