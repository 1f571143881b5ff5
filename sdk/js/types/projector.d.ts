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
/**
 * An error meant for the host: its message is recorded against the event that caused it, so it
 * says what was wrong with the event (which field), not where in the plugin it happened.
 */
export declare class ProjectionError extends Error {
    /** @param {string} message */
    constructor(message: string);
    /**
     * "missing field `name`".
     * @param {string} name
     */
    static missingField(name: string): ProjectionError;
    /**
     * "field `name`: problem".
     * @param {string} name
     * @param {string} problem
     */
    static invalidField(name: string, problem: string): ProjectionError;
}
/**
 * An exact decimal number: `coefficient × 10^-scale`, on BigInt, immutable. Keeps its scale
 * like a SQL NUMERIC (`99.0` has scale 1, `8.9 × 2` is `17.8`), prints in plain notation.
 */
export declare class Decimal {
    #private;
    /** @readonly */
    coefficient: bigint;
    /** @readonly */
    scale: number;
    /**
     * @param {bigint} coefficient the digits, as an integer
     * @param {number} [scale] digits after the decimal point (>= 0)
     */
    constructor(coefficient: bigint, scale?: number);
    /**
     * Parses a decimal from text: JSON number syntax with an optional exponent (`-12.50`,
     * `1e2`, `1.5E-3`), a leading `+` or leading zeros also accepted. Throws a RangeError on
     * anything else.
     * @param {string} text
     * @returns {Decimal}
     */
    static parse(text: string): Decimal;
    /**
     * A Decimal from a Decimal, BigInt, integer number or decimal text. Refuses non-integer
     * numbers: they already went through binary floating point (use a string or a Decimal).
     * @param {Decimal | bigint | number | string} value
     * @returns {Decimal}
     */
    static from(value: Decimal | bigint | number | string): Decimal;
    /** Zero, scale 0. */
    static get ZERO(): Decimal;
    /** @param {Decimal | bigint | number | string} other */
    add(other: Decimal | bigint | number | string): Decimal;
    /** @param {Decimal | bigint | number | string} other */
    sub(other: Decimal | bigint | number | string): Decimal;
    /** @param {Decimal | bigint | number | string} other */
    mul(other: Decimal | bigint | number | string): Decimal;
    /**
     * `this / other` rounded half away from zero to `scale` places.
     * @param {Decimal | bigint | number | string} other
     * @param {number} scale
     */
    div(other: Decimal | bigint | number | string, scale: number): Decimal;
    neg(): Decimal;
    abs(): Decimal;
    /**
     * -1, 0 or 1 as this is less than, equal to or greater than `other` (scale ignored).
     * @param {Decimal | bigint | number | string} other
     * @returns {-1 | 0 | 1}
     */
    cmp(other: Decimal | bigint | number | string): -1 | 0 | 1;
    /** @param {Decimal | bigint | number | string} other */
    equals(other: Decimal | bigint | number | string): boolean;
    isZero(): boolean;
    isNegative(): boolean;
    /**
     * Rounded half away from zero to at most `places` decimal places (a smaller scale is kept).
     * @param {number} places
     */
    round(places: number): Decimal;
    /**
     * Exactly `places` decimal places: padded with zeros, or rounded half away from zero.
     * @param {number} places
     */
    rescale(places: number): Decimal;
    /** Money: exactly 2 decimals, rounded half away from zero (`116.8` → `116.80`). */
    money(): Decimal;
    /** Whether this is an integer value (whatever its scale). */
    isInteger(): boolean;
    /** The integer part as a BigInt (truncated toward zero). */
    toBigInt(): bigint;
    /** Plain notation with the exact scale: `-12.50`, `116.8`, `0.05`, `3`. */
    toString(): string;
    /** JSON.stringify writes a Decimal as its plain-notation string. */
    toJSON(): string;
    /** A float approximation, for display only. */
    toNumber(): number;
}
/**
 * `amount` as money: exactly 2 decimals, rounded half away from zero.
 * @param {Decimal | bigint | number | string} amount
 */
export declare function money(amount: Decimal | bigint | number | string): Decimal;
/**
 * The exact sum of `amounts` (zero when empty).
 * @param {Iterable<Decimal | bigint | number | string>} amounts
 */
export declare function sum(amounts: Iterable<Decimal | bigint | number | string>): Decimal;
/**
 * UTF-8 bytes of `text` (lone surrogates become U+FFFD).
 * @param {string} text
 * @returns {Uint8Array}
 */
export declare function utf8Encode(text: string): Uint8Array;
/**
 * The text of UTF-8 `bytes`, or `undefined` when they are not valid UTF-8.
 * @param {Uint8Array} bytes
 * @returns {string | undefined}
 */
export declare function utf8Decode(bytes: Uint8Array): string | undefined;
/**
 * A path inside a JSON document, as serde prints it: `items[0].unitPrice`; `.` for the root.
 * @param {(string | number)[]} path
 */
export declare function formatPath(path: (string | number)[]): string;
/** A JSON syntax error; the message ends with `at line L column C`. */
export declare class JsonSyntaxError extends ProjectionError {
    /** @param {string} message */
    constructor(message: string);
}
export type Span = {
    start: number;
    end: number;
};
/**
 * Parses JSON text exactly: integers become numbers (BigInt beyond 2^53), every other number
 * an exact {@link Decimal} from its own digits. Throws a {@link JsonSyntaxError} naming the
 * position of a syntax error.
 * @param {string} text
 * @returns {unknown}
 */
export declare function parseJson(text: string): unknown;
/**
 * Serializes `value` as compact JSON: a Decimal as its exact digits (a JSON number), a BigInt
 * as an integer; `undefined` object members are left out. Throws on non-finite numbers.
 * @param {unknown} value
 * @returns {string}
 */
export declare function stringifyJson(value: unknown): string;
/**
 * An instant, in microseconds since 1970-01-01T00:00:00Z (UTC, no time zone kept).
 */
export declare class Timestamp {
    /** @readonly */
    micros: bigint;
    /** @param {bigint} micros */
    constructor(micros: bigint);
    /**
     * Parses an RFC 3339 instant (`2026-11-22T10:15:30.123Z`, `2026-11-22T11:15:30+01:00`),
     * normalized to UTC; fraction digits beyond microseconds are truncated.
     * @param {string} text
     */
    static parse(text: string): Timestamp;
    /** @param {number | bigint} millis e.g. a Kafka record timestamp */
    static fromMillis(millis: number | bigint): Timestamp;
    /** The UTC calendar day, in days since 1970-01-01. */
    days(): number;
    /** RFC 3339 in UTC with `Z`, fraction only when needed (3 or 6 digits): `2026-11-20T23:59:59.999Z`. */
    toString(): string;
    toJSON(): string;
}
/**
 * Days since 1970-01-01 of `YYYY-MM-DD`.
 * @param {string} text
 * @returns {number}
 */
export declare function parseDate(text: string): number;
/**
 * `YYYY-MM-DD` of day `days` since 1970-01-01.
 * @param {number} days
 */
export declare function formatDate(days: number): string;
export type Schema<T> = {
    expecting: string;
    decode: (value: unknown, at: Cursor) => T;
    optional?: boolean;
};
/**
 * A decoder from a JSON value to a JS value. `decode` throws a {@link DecodeFailure}.
 * @template T
 * @typedef {{ expecting: string, decode: (value: unknown, at: Cursor) => T, optional?: boolean }} Schema
 */
/** Where a decoder is: the document and the path in it. */
declare class Cursor {
    doc: JsonDocument;
    /** @type {(string | number)[] | undefined} */
    known: (string | number)[] | undefined;
    parent: Cursor | undefined;
    segment: string | number | undefined;
    /**
     * @param {JsonDocument} doc
     * @param {(string | number)[] | undefined} path
     * @param {Cursor} [parent] set (with `segment`) for a child: its path is only built when asked for
     * @param {string | number} [segment]
     */
    constructor(doc: JsonDocument, path: (string | number)[] | undefined, parent?: Cursor, segment?: string | number);
    /** The path from the document's root. @returns {(string | number)[]} */
    get path(): (string | number)[];
    /** @param {string | number} segment */
    child(segment: string | number): Cursor;
}
/** A parsed JSON document that can tell where a value is, for error messages. */
export declare class JsonDocument {
    text: string;
    /** @type {unknown} */
    value: unknown;
    /** @type {Map<string, Span> | null} */
    spans: Map<string, Span> | null;
    /** @param {string} text */
    constructor(text: string);
    /**
     * `at line L column C` for the value at `path`, or '' when it cannot be located.
     * @param {(string | number)[]} path
     * @param {'start' | 'end'} edge
     */
    position(path: (string | number)[], edge: 'start' | 'end'): string;
    /**
     * Decodes the document with `schema`; throws a {@link ProjectionError} naming the field.
     * @template T
     * @param {Schema<T>} schema
     * @returns {T}
     */
    decode<T>(schema: Schema<T>): T;
}
/**
 * Decoders for {@link Event.decode} and {@link JsonDocument.decode}. Errors use serde's
 * wording so a message names the field: "missing field `total`", "field `items[0].unitPrice`:
 * invalid type: string \"1\", expected a JSON number at line 1 column 161".
 */
export declare const schema: Readonly<{
    /** @type {Schema<string>} */
    string: Schema<string>;
    /** @type {Schema<boolean>} */
    boolean: Schema<boolean>;
    /** A JSON integer within JavaScript's safe range, as a number. @type {Schema<number>} */
    integer: Schema<number>;
    /** A JSON integer as a BigInt (i64 range). @type {Schema<bigint>} */
    bigint: Schema<bigint>;
    /** A JSON number (not a string), as an exact Decimal from its digits. @type {Schema<Decimal>} */
    number: Schema<Decimal>;
    /** A decimal: a JSON number or a string of one, as an exact Decimal. @type {Schema<Decimal>} */
    decimal: Schema<Decimal>;
    /** An RFC 3339 string, as a {@link Timestamp}. @type {Schema<Timestamp>} */
    timestamp: Schema<Timestamp>;
    /** A `YYYY-MM-DD` string, as days since 1970-01-01. @type {Schema<number>} */
    date: Schema<number>;
    /** Any JSON value, as parsed (exact numbers). @type {Schema<unknown>} */
    any: Schema<unknown>;
    /**
     * `inner`, or `undefined` when the member is absent or null.
     * @template T
     * @param {Schema<T>} inner
     * @returns {Schema<T | undefined>}
     */
    optional<T>(inner: Schema<T>): Schema<T | undefined>;
    /**
     * A JSON array of `item`.
     * @template T
     * @param {Schema<T>} item
     * @returns {Schema<T[]>}
     */
    list<T>(item: Schema<T>): Schema<T[]>;
    /**
     * A JSON object with these members (others are ignored), decoded in document order; then
     * the first absent required member, in declared order, is reported missing.
     * @template {Record<string, Schema<any>>} F
     * @param {string} name the record's name, for messages ("expected struct Item")
     * @param {F} fields
     * @returns {Schema<{ [K in keyof F]: F[K] extends Schema<infer T> ? T : never }>}
     */
    record<F extends Record<string, Schema<any>>>(name: string, fields: F): Schema<{ [K in keyof F]: F[K] extends Schema<infer T> ? T : never; }>;
}>;
/** The header Spring Kafka's JsonSerializer fills with the event's Java class name. */
export declare const TYPE_ID_HEADER = "__TypeId__";
/**
 * One Kafka record as the host delivers it (WIT `event`), with helpers to read it. The
 * record is kept as consumed; the helpers only read it.
 */
export declare class Event {
    #private;
    topic: string;
    partition: number;
    offset: bigint;
    /** Raw key bytes, `undefined` for a null key. */
    keyBytes: Uint8Array<ArrayBufferLike> | undefined;
    /** Raw value bytes, `undefined` for a tombstone. */
    valueBytes: Uint8Array<ArrayBufferLike> | undefined;
    headers: {
        key: string;
        value?: Uint8Array;
    }[];
    timestampMs: bigint | undefined;
    /** @type {JsonDocument | undefined} */
    doc: JsonDocument | undefined;
    /**
     * @param {{ topic: string, partition: number, offset: bigint, key?: Uint8Array,
     *   value?: Uint8Array, headers: { key: string, value?: Uint8Array }[], timestampMs?: bigint }} record
     */
    constructor(record: {
        topic: string;
        partition: number;
        offset: bigint;
        key?: Uint8Array;
        value?: Uint8Array;
        headers: {
            key: string;
            value?: Uint8Array;
        }[];
        timestampMs?: bigint;
    });
    /** The record key as UTF-8 text, `undefined` when null or not UTF-8. */
    get key(): string | undefined;
    /**
     * The value of the last header named `name` (Kafka's lastHeader), `undefined` when there is
     * none or its value is null.
     * @param {string} name
     * @returns {Uint8Array | undefined}
     */
    header(name: string): Uint8Array | undefined;
    /**
     * The last header named `name` as UTF-8 text.
     * @param {string} name
     */
    headerText(name: string): string | undefined;
    /** The broker timestamp, if any. Prefer the instants inside the event: they survive a re-publication. */
    get timestamp(): Timestamp | undefined;
    /**
     * The simple type name, e.g. `OrderCreated`: the part after the last `.` of the
     * `__TypeId__` header, otherwise the string `type` member of the JSON value; `undefined`
     * when neither is there.
     * @returns {string | undefined}
     */
    get type(): string | undefined;
    /** The value as UTF-8 text; throws for a tombstone or invalid UTF-8. */
    text(): string;
    /** The value as a parsed {@link JsonDocument} (cached). */
    document(): JsonDocument;
    /**
     * The value parsed as JSON, numbers exact (see {@link parseJson}).
     * @returns {unknown}
     */
    json(): unknown;
    /**
     * The value decoded with `schema`; the error names the field.
     * @template T
     * @param {Schema<T>} s
     * @returns {T}
     */
    decode<T>(s: Schema<T>): T;
}
/** A value with an explicit WIT type, made by {@link float}, {@link timestamp}, ... */
export declare class Typed {
    tag: string;
    val: unknown;
    /** @param {string} tag WIT variant case @param {unknown} val its payload */
    constructor(tag: string, val: unknown);
}
/** @param {number} n a 64-bit float (not for money) */
export declare const float: (n: number) => Typed;
/** @param {Decimal | bigint | number | string} d an exact decimal */
export declare const decimal: (d: Decimal | bigint | number | string) => Typed;
/** @param {string} s text */
export declare const text: (s: string) => Typed;
/** @param {bigint | number} n a 64-bit integer */
export declare const integer: (n: bigint | number) => Typed;
/**
 * An instant: a {@link Timestamp}, BigInt microseconds, an RFC 3339 string or a JS Date.
 * @param {Timestamp | bigint | string | Date} t
 */
export declare function timestamp(t: Timestamp | bigint | string | Date): Typed;
/**
 * A calendar date: days since 1970-01-01, `YYYY-MM-DD` or a {@link Timestamp} (its UTC day).
 * @param {number | string | Timestamp} d
 */
export declare function date(d: number | string | Timestamp): Typed;
/** @param {unknown} doc a JSON document (Decimals keep their digits) */
export declare const json: (doc: unknown) => Typed;
/** @param {Iterable<unknown>} items scalars of the field's element type */
export declare const list: (items: Iterable<unknown>) => Typed;
/** SQL NULL. */
export declare const NULL: Typed;
/**
 * The WIT `value` (or `scalar`) for a JS value: null/undefined → null, boolean, string →
 * text, BigInt or safe integer → integer, Decimal → decimal, Timestamp → timestamp, or a
 * {@link Typed} wrapper. Other numbers are refused: say `float(x)` or use a Decimal.
 * @param {unknown} v
 * @param {boolean} [asScalar]
 * @returns {{ tag: string, val?: unknown }}
 */
export declare function toWitValue(v: unknown, asScalar?: boolean): {
    tag: string;
    val?: unknown;
};
export type Key = unknown | unknown[];
/** An operation on one row; build it with {@link upsert}, {@link increment} or {@link del}. */
export declare class Operation {
    kind: "delete" | "increment" | "upsert";
    collection: string;
    key: unknown;
    /** @type {[string, unknown][]} */
    fields: [string, unknown][];
    /** @param {'upsert' | 'increment' | 'delete'} kind @param {string} collection @param {Key} key */
    constructor(kind: 'upsert' | 'increment' | 'delete', collection: string, key: Key);
    /** The WIT `operation`. */
    toWit(): {
        tag: string;
        val: {
            collection: string;
            key: any[];
            fields?: undefined;
        };
    } | {
        tag: "increment" | "upsert";
        val: {
            collection: string;
            key: any[];
            fields: any[];
        };
    };
}
/** Merge fields into a row, creating it when absent (unnamed fields then start null). */
export declare class Upsert extends Operation {
    /** @param {string} collection @param {Key} key */
    constructor(collection: string, key: Key);
    /**
     * Sets `field` to `value` (null or undefined clears it).
     * @param {string} field @param {unknown} value
     */
    set(field: string, value: unknown): this;
}
/** Add to numeric (or JSON counter map) fields of a row, creating it when absent. */
export declare class Increment extends Operation {
    /** @param {string} collection @param {Key} key */
    constructor(collection: string, key: Key);
    /**
     * Adds `amount` to `field`: an integer, `float(x)` or Decimal of the field's type, or for a
     * json field an object of numbers added key by key, e.g. `{ SUBMITTED: -1, SHIPPED: 1 }`
     * (a key reaching zero is removed). A plain object is sent as JSON.
     * @param {string} field @param {unknown} amount
     */
    add(field: string, amount: unknown): this;
}
/** @param {string} collection @param {Key} key */
export declare const upsert: (collection: string, key: Key) => Upsert;
/** @param {string} collection @param {Key} key */
export declare const increment: (collection: string, key: Key) => Increment;
/**
 * Delete the row with this key, if any.
 * @param {string} collection @param {Key} key
 */
export declare const del: (collection: string, key: Key) => Operation;
export { del as deleteRow };
/** One field of a collection; chain the flag methods. */
export declare class Field {
    name: string;
    type: string;
    element: string | undefined;
    /** @type {boolean | undefined} */
    isNullable: boolean | undefined;
    isSearchable: boolean;
    isFilterable: boolean;
    isSortable: boolean;
    /** @type {{ numerator: string, denominator: string, scale: number } | undefined} */
    computed: {
        numerator: string;
        denominator: string;
        scale: number;
    } | undefined;
    about: string;
    /** @param {string} name @param {string} type @param {string} [element] list element type */
    constructor(name: string, type: string, element?: string);
    /** Says what the field means, for people reading the read model. @param {string} text */
    description(text: string): this;
    /** Allows null (the default, except for primary-key fields). */
    nullable(): this;
    /** Forbids null: the host declares the column NOT NULL. */
    required(): this;
    /** Puts the field into the collection's full-text search document. */
    searchable(): this;
    /** Lets queries filter on the field (the host indexes it). */
    filterable(): this;
    /** Lets queries sort on the field (the host indexes it). */
    sortable(): this;
    /**
     * Makes the host compute the field as `round(numerator / denominator, scale)`, null when
     * the denominator is zero or null. Operations must not write it.
     * @param {string} numerator @param {string} denominator @param {number} scale
     */
    ratio(numerator: string, denominator: string, scale: number): this;
}
/**
 * Field constructors: `field.text('customer_id').filterable().description('...')`.
 */
export declare const field: Readonly<{
    /** @param {string} name */ boolean: (name: string) => Field;
    /** @param {string} name */ integer: (name: string) => Field;
    /** @param {string} name */ float: (name: string) => Field;
    /** @param {string} name */ decimal: (name: string) => Field;
    /** @param {string} name */ text: (name: string) => Field;
    /** @param {string} name */ timestamp: (name: string) => Field;
    /** @param {string} name */ date: (name: string) => Field;
    /** @param {string} name */ json: (name: string) => Field;
    /**
     * A list of `element` scalars.
     * @param {string} name @param {'boolean'|'integer'|'float'|'decimal'|'text'|'timestamp'|'date'} element
     */
    list: (name: string, element: 'boolean' | 'integer' | 'float' | 'decimal' | 'text' | 'timestamp' | 'date') => Field;
}>;
/** A collection (table or index) of a read model. */
export declare class Collection {
    name: string;
    text: string;
    sink: "elasticsearch" | "postgres";
    /** @type {Field[]} */
    fields: Field[];
    /** @type {string[]} */
    keyFields: string[];
    /** @param {string} name @param {string} description @param {'postgres' | 'elasticsearch'} sink */
    constructor(name: string, description: string, sink: 'postgres' | 'elasticsearch');
    /** Adds fields after the ones declared so far. @param {...Field} fields */
    field(...fields: Field[]): this;
    /** Names the primary-key fields, in key order; they are never nullable. @param {...string} names */
    primaryKey(...names: string[]): this;
    /** The WIT `collection`. */
    toWit(): {
        name: string;
        fields: {
            name: string;
            type: {
                tag: string;
                val: string | undefined;
            } | {
                val?: undefined;
                tag: string;
            };
            nullable: boolean;
            searchable: boolean;
            filterable: boolean;
            sortable: boolean;
            computed: {
                tag: string;
                val: {
                    numerator: string;
                    denominator: string;
                    scale: number;
                };
            } | undefined;
            description: string;
        }[];
        primaryKey: string[];
        sink: "elasticsearch" | "postgres";
        description: string;
    };
}
/** A PostgreSQL table. @param {string} name @param {string} description what one row is */
export declare const postgres: (name: string, description: string) => Collection;
/** An Elasticsearch index. @param {string} name @param {string} description what one document is */
export declare const elasticsearch: (name: string, description: string) => Collection;
/**
 * A projection spec (WIT `projection-spec`).
 * @param {string} name lowercase letters, digits and `-`
 * @param {number} version a new version is rebuilt from the start of the topic
 * @param {string} description one sentence on what the projection is for
 * @param {Collection[]} collections
 */
export declare function spec(name: string, version: number, description: string, collections: Collection[]): {
    name: string;
    version: number;
    description: string;
    collections: {
        name: string;
        fields: {
            name: string;
            type: {
                tag: string;
                val: string | undefined;
            } | {
                val?: undefined;
                tag: string;
            };
            nullable: boolean;
            searchable: boolean;
            filterable: boolean;
            sortable: boolean;
            computed: {
                tag: string;
                val: {
                    numerator: string;
                    denominator: string;
                    scale: number;
                };
            } | undefined;
            description: string;
        }[];
        primaryKey: string[];
        sink: "elasticsearch" | "postgres";
        description: string;
    }[];
};
/** Severities of log lines (WIT `level`). */
export declare const LEVELS: readonly string[];
/** The most bytes the host stores under one state key. */
export declare const MAX_STATE_BYTES: number;
export type Host = {
    state: {
        get(key: string): Uint8Array | undefined;
        set(key: string, value: Uint8Array): void;
        remove(key: string): void;
    };
    log(level: string, message: string): void;
};
/**
 * Connects the helper to the host: the component's entry module passes the real imports,
 * tests pass a fake. Returns the previous host.
 * @param {Host | null} next
 */
export declare function useHost(next: Host | null): Host | null;
/**
 * Per-key state and logging for the event being handled. State is JSON (numbers exact);
 * writes are visible to the same event at once and reach the host only when the event
 * succeeds, so a failed event leaves no state behind.
 */
export declare class Context {
    #private;
    host: Host;
    /** @type {Map<string, Uint8Array | undefined>} the current event's writes (undefined: removed) */
    pending: Map<string, Uint8Array | undefined>;
    /** @param {Host} h */
    constructor(h: Host);
    /**
     * The raw bytes stored under `key`, if any.
     * @param {string} key
     */
    stateBytes(key: string): Uint8Array<ArrayBufferLike> | undefined;
    /**
     * The state stored under `key`, parsed as JSON (numbers exact); `undefined` when none.
     * @param {string} key
     * @returns {any}
     */
    state(key: string): any;
    /**
     * Stores `value` under `key` as compact JSON, replacing what was there; refuses more than
     * {@link MAX_STATE_BYTES}.
     * @param {string} key @param {unknown} value
     */
    setState(key: string, value: unknown): void;
    /** Removes the state under `key`, if any. @param {string} key */
    removeState(key: string): void;
    /**
     * Writes a line to the host's log (rate-limited by the host: keep per-event lines at debug).
     * @param {'debug' | 'info' | 'warn' | 'error'} level @param {string} message
     */
    log(level: 'debug' | 'info' | 'warn' | 'error', message: string): void;
    /** @param {string} message */
    debug(message: string): void;
    /** @param {string} message */
    info(message: string): void;
    /** @param {string} message */
    warn(message: string): void;
    /** @param {string} message */
    error(message: string): void;
    /** The event succeeded: pass its writes to the host. */
    commit(): void;
    /** The event failed: drop its writes. */
    discard(): void;
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
export declare function projection(definition: {
    describe: () => ReturnType<typeof spec>;
    handle: (event: Event, ctx: Context) => Iterable<Operation> | Operation | undefined | null;
}): {
    describe(): {
        name: string;
        version: number;
        description: string;
        collections: {
            name: string;
            fields: {
                name: string;
                type: {
                    tag: string;
                    val: string | undefined;
                } | {
                    val?: undefined;
                    tag: string;
                };
                nullable: boolean;
                searchable: boolean;
                filterable: boolean;
                sortable: boolean;
                computed: {
                    tag: string;
                    val: {
                        numerator: string;
                        denominator: string;
                        scale: number;
                    };
                } | undefined;
                description: string;
            }[];
            primaryKey: string[];
            sink: "elasticsearch" | "postgres";
            description: string;
        }[];
    };
    /** @param {ConstructorParameters<typeof Event>[0][]} events */
    handle(events: ConstructorParameters<typeof Event>[0][]): any[];
};
