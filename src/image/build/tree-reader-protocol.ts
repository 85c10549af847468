/**
 * What the tree reader worker sends the walker: the tree's entries and its files' bytes, in image
 * order (depth first, names sorted by UTF-8 bytes), batched into messages of records.
 *
 * Flow control: the worker stops reading while it has sent `budgetBytes` more file bytes than the
 * walker has consumed; the walker publishes what it consumed in a shared counter.
 */

export interface TreeReaderInput {
  /** Absolute, symlink-free path of the directory to read. */
  root: string;
  /** Largest piece of file content per record. */
  readSize: number;
  budgetBytes: number;
  /** When set, each data record carries the sha256 of every `digestSize` slice of its bytes. */
  digestSize?: number;
  /** BigInt64Array[1]: file bytes consumed by the walker (Atomics). */
  consumed: SharedArrayBuffer;
}

export type EntryKind = 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface EntryRecord {
  type: 'entry';
  /** Sequential from 0 (the root). */
  id: number;
  /** The directory's id; -1 for the root. */
  parent: number;
  name: string;
  kind: EntryKind;
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  target?: string;
  /** A directory on another filesystem: kept, not descended into. */
  mountPoint?: boolean;
}

/** Another name of an earlier entry (a hard link). */
export interface LinkRecord {
  type: 'link';
  parent: number;
  name: string;
  target: number;
}

/** The next piece of file `id`'s content; `end` on the last one. At most `size + 1` bytes in all. */
export interface DataRecord {
  type: 'data';
  id: number;
  bytes: Uint8Array;
  end: boolean;
  /** sha256 of each `digestSize` slice of `bytes` (32 bytes each), when asked for. */
  digests?: Uint8Array;
}

export interface DoneRecord {
  type: 'done';
}

export interface ErrorRecord {
  type: 'error';
  /** An ImageBuildError code (`ENONUTF8NAME`, `EINVAL`) or an errno code (`EACCES`, …). */
  code: string;
  message: string;
}

export type TreeRecord = EntryRecord | LinkRecord | DataRecord | DoneRecord | ErrorRecord;
