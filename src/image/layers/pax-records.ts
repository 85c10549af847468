import { LayerFormatError } from './errors.js';

/**
 * PAX extended header records (`"<length> <key>=<value>\n"`, POSIX.1-2001), parsed as strictly as
 * Go's archive/tar does. Values stay bytes: `SCHILY.xattr.*` values are binary (security.capability).
 */
export type PaxRecords = Map<string, Buffer>;

const SPACE = 0x20;
const EQUALS = 0x3d;
const NEWLINE = 0x0a;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Keys whose values are text and therefore may not contain NUL. */
const TEXT_KEYS = new Set(['path', 'linkpath', 'uname', 'gname']);

export function parsePaxRecords(data: Buffer, offset: number): PaxRecords {
  const records: PaxRecords = new Map();
  let rest = data;
  while (rest.length > 0) {
    const fail = (what: string) =>
      new LayerFormatError(
        'EHEADER',
        `layer tar: invalid PAX record in the extended header at byte ${offset}: ${what}`,
      );
    const space = rest.indexOf(SPACE);
    const lengthText = space > 0 ? rest.toString('latin1', 0, space) : '';
    if (!/^[0-9]{1,10}$/.test(lengthText)) throw fail('bad record length');
    const length = Number.parseInt(lengthText, 10);
    if (length <= space + 1 || length > rest.length) throw fail('record length out of range');
    if (rest[length - 1] !== NEWLINE) throw fail('record does not end with a newline');
    const record = rest.subarray(space + 1, length - 1);
    const equals = record.indexOf(EQUALS);
    if (equals <= 0) throw fail('record has no key');
    const key = decodeKey(record.subarray(0, equals), fail);
    const value = record.subarray(equals + 1);
    if (TEXT_KEYS.has(key) && value.includes(0)) throw fail(`NUL in ${key}`);
    records.set(key, value);
    rest = rest.subarray(length);
  }
  return records;
}

function decodeKey(bytes: Buffer, fail: (what: string) => Error): string {
  if (bytes.includes(0)) throw fail('NUL in key');
  try {
    return utf8.decode(bytes);
  } catch {
    throw fail('key is not UTF-8');
  }
}
