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
export type WitValue = {
    tag: string;
    val?: any;
};
/** Longest projection name; collection and field identifiers may have 8 more characters. */
export declare const MAX_NAME = 40;
/**
 * Whether `name` is a valid projection name: lowercase ASCII letters, digits and `-`, starting
 * with a letter, not ending with `-`, at most 40 characters.
 * @param {string} name
 */
export declare const isProjectionName: (name: string) => boolean;
/**
 * Whether `name` is a valid collection or field name: lowercase ASCII letters, digits and `_`,
 * starting with a letter, at most 48 characters.
 * @param {string} name
 */
export declare const isIdentifier: (name: string) => boolean;
/**
 * The event one `samples.jsonl` line describes (`{"key", "headers", "value"}`), in the WIT
 * shape, on topic `order-events`, partition 0: the value is re-serialized compactly with its
 * numbers' exact digits and its members sorted, as the host's `projector check` does.
 * @param {string} line
 * @param {number | bigint} [offset]
 */
export declare function eventFromSample(line: string, offset?: number | bigint): {
    topic: string;
    partition: number;
    offset: bigint;
    key: Uint8Array<ArrayBufferLike> | undefined;
    value: Uint8Array<ArrayBufferLike> | undefined;
    headers: {
        key: string;
        value: Uint8Array<ArrayBufferLike> | undefined;
    }[];
    timestampMs: undefined;
};
/**
 * The events of a `samples.jsonl` text, blank lines skipped; offsets count from 0.
 * @param {string} jsonl
 */
export declare function eventsFromSamples(jsonl: string): {
    topic: string;
    partition: number;
    offset: bigint;
    key: Uint8Array<ArrayBufferLike> | undefined;
    value: Uint8Array<ArrayBufferLike> | undefined;
    headers: {
        key: string;
        value: Uint8Array<ArrayBufferLike> | undefined;
    }[];
    timestampMs: undefined;
}[];
/** One collection's rows, kept as WIT values. */
declare class Table {
    spec: any;
    /** @type {Map<string, { key: WitValue[], row: Map<string, WitValue> }>} */
    rows: Map<string, {
        key: WitValue[];
        row: Map<string, WitValue>;
    }>;
    /** @type {Map<string, any>} */
    fields: Map<string, any>;
    /** @param {any} spec the WIT collection */
    constructor(spec: any);
    /** @param {any} op a WIT operation */
    apply(op: any): void;
    /** @param {Map<string, WitValue>} row */
    compute(row: Map<string, WitValue>): void;
}
/**
 * Runs a projection natively the way the host does, keeping its per-key state, its log and an
 * in-memory read model across calls.
 */
export declare class Harness {
    #private;
    plugin: {
        describe: () => any;
        handle: (events: any[]) => {
            tag: 'ok' | 'err';
            val: any;
        }[];
    };
    spec: any;
    /** @type {Map<string, Table>} */
    tables: Map<string, Table>;
    /** @type {Map<string, Uint8Array>} */
    store: Map<string, Uint8Array>;
    /** @type {[string, string][]} */
    logs: [string, string][];
    /**
     * @param {{ describe: () => any, handle: (events: any[]) => { tag: 'ok' | 'err', val: any }[] }} plugin
     *   the plugin module's exports
     */
    constructor(plugin: {
        describe: () => any;
        handle: (events: any[]) => {
            tag: 'ok' | 'err';
            val: any;
        }[];
    });
    /**
     * Handles `events` in one `handle` call (one batch) and applies the operations of each event
     * that succeeded; returns the WIT results (`{ tag: 'ok', val: ops }` / `{ tag: 'err', val }`).
     * @param {any[]} events WIT-shaped events, e.g. from {@link eventsFromSamples}
     */
    feedBatch(events: any[]): {
        tag: 'ok' | 'err';
        val: any;
    }[];
    /**
     * Handles one event (a batch of one); returns its WIT result.
     * @param {any} event
     */
    feed(event: any): {
        tag: 'ok' | 'err';
        val: any;
    };
    /**
     * Feeds `events` one batch each; one result per event.
     * @param {any[]} events
     */
    feedAll(events: any[]): {
        tag: 'ok' | 'err';
        val: any;
    }[];
    /**
     * The rows of `collection` in primary-key order, as plain objects in column order.
     * @param {string} collection
     */
    rows(collection: string): {
        [k: string]: unknown;
    }[];
    /**
     * The row of `collection` with primary key `key` (a value, or an array for a composite key).
     * @param {string} collection @param {unknown} key
     */
    row(collection: string, key: unknown): {
        [k: string]: unknown;
    } | undefined;
    /**
     * The state stored under `key` as text (its exact JSON), if any.
     * @param {string} key
     */
    stateText(key: string): string | undefined;
    /**
     * The state stored under `key`, parsed (numbers exact), if any.
     * @param {string} key
     */
    state(key: string): unknown;
}
export {};
