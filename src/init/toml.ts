import { parse, stringify, type TomlTable } from 'smol-toml';
import { InitError } from './errors.js';

/**
 * TOML in and out. Integers stay BigInt and other numbers are written as floats, so a value keeps its
 * TOML type through a rewrite (`1.0` must not come back as the integer `1`). Comments and layout are not
 * kept: that is what the backup is for.
 */

export type Table = Record<string, unknown>;

export function parseToml(text: string, path: string): Table {
  try {
    return parse(text, { integersAsBigInt: true }) as Table;
  } catch (err) {
    const first = String((err as Error).message).split('\n')[0];
    throw new InitError(`${path} is not valid TOML: ${first}`);
  }
}

export function stringifyToml(doc: Table): string {
  const text = stringify(doc as TomlTable, { numbersAsFloat: true }).trim();
  return text === '' ? '' : `${text}\n`;
}

export function isTable(value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/**
 * The table at `keys` under `doc`, created when missing. A non-table in the way is an error that names
 * the key, since overwriting it would silently change the runtime's config.
 */
export function tableAt(doc: Table, keys: readonly string[], path: string): Table {
  let table = doc;
  const walked: string[] = [];
  for (const key of keys) {
    walked.push(key);
    const next = table[key];
    if (next === undefined) {
      const created: Table = {};
      table[key] = created;
      table = created;
    } else if (isTable(next)) {
      table = next;
    } else {
      throw new InitError(`${path}: ${dottedKey(walked)} is not a table`);
    }
  }
  return table;
}

/** `plugins."io.containerd.grpc.v1.cri".registry` */
export function dottedKey(keys: readonly string[]): string {
  return keys.map((k) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k))).join('.');
}
