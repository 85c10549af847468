/**
 * Checks on the writer's input nodes and names: everything the model's types allow but an EROFS
 * inode or dirent cannot hold. Violations throw `InvalidImageError` naming the path.
 */

import {
  MAX_DEVICE_MAJOR,
  MAX_DEVICE_MINOR,
  MAX_NAME_LENGTH,
  MAX_SYMLINK_LENGTH,
  PERMISSION_BITS,
} from './erofs-layout.js';
import { InvalidImageError } from './errors.js';
import { isNodeKind } from './node-kinds.js';
import type { TreeNode } from './tree.js';

const U32_MAX = 0xffffffff;

/** A child name as the bytes a dirent stores. */
export function encodeName(name: string, parentPath: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const where = `${parentPath}: entry ${JSON.stringify(name.slice(0, 300))}`;
  if (bytes.toString('utf8') !== name) throw new InvalidImageError(`${where}: name is not valid Unicode`);
  if (bytes.length === 0 || bytes.length > MAX_NAME_LENGTH) {
    throw new InvalidImageError(
      `${where}: name must be 1 to ${MAX_NAME_LENGTH} bytes (it has ${bytes.length})`,
    );
  }
  if (name === '.' || name === '..' || bytes.includes(0x2f) || bytes.includes(0)) {
    throw new InvalidImageError(`${where}: name must not be . or .., nor contain '/' or NUL`);
  }
  return bytes;
}

export function checkNode(node: TreeNode, path: string): void {
  if (typeof node !== 'object' || node === null || !isNodeKind(node.kind)) {
    throw new InvalidImageError(
      `${path}: not a tree node (kind ${JSON.stringify((node as { kind?: unknown })?.kind)})`,
    );
  }
  if (!Number.isInteger(node.mode) || node.mode < 0 || node.mode > PERMISSION_BITS) {
    const shown = Number.isInteger(node.mode) ? `0o${node.mode.toString(8)}` : String(node.mode);
    throw new InvalidImageError(
      `${path}: mode ${shown} has bits outside 0o7777 (the file type comes from kind)`,
    );
  }
  checkInteger(path, 'uid', node.uid, 0, U32_MAX);
  checkInteger(path, 'gid', node.gid, 0, U32_MAX);
  checkInteger(path, 'mtimeSec', node.mtimeSec, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  checkInteger(path, 'mtimeNsec', node.mtimeNsec, 0, 999_999_999);
  if (!(node.xattrs instanceof Map)) throw new InvalidImageError(`${path}: xattrs is not a Map`);
  checkKindFields(node, path);
}

function checkKindFields(node: TreeNode, path: string): void {
  switch (node.kind) {
    case 'file':
      checkInteger(path, 'size', node.size, 0, Number.MAX_SAFE_INTEGER);
      if (!Array.isArray(node.chunks)) throw new InvalidImageError(`${path}: chunks is not an array`);
      return;
    case 'directory':
      if (!(node.children instanceof Map)) throw new InvalidImageError(`${path}: children is not a Map`);
      return;
    case 'symlink':
      checkSymlinkTarget(node.target, path);
      return;
    case 'char':
    case 'block':
      checkInteger(path, 'rdevMajor', node.rdevMajor, 0, MAX_DEVICE_MAJOR);
      checkInteger(path, 'rdevMinor', node.rdevMinor, 0, MAX_DEVICE_MINOR);
      return;
    default:
      return;
  }
}

function checkSymlinkTarget(target: string, path: string): void {
  const bytes = typeof target === 'string' ? Buffer.from(target, 'utf8') : undefined;
  if (bytes === undefined || bytes.toString('utf8') !== target) {
    throw new InvalidImageError(`${path}: symlink target is not a valid Unicode string`);
  }
  if (bytes.length === 0 || bytes.length > MAX_SYMLINK_LENGTH || bytes.includes(0)) {
    throw new InvalidImageError(
      `${path}: symlink target must be 1 to ${MAX_SYMLINK_LENGTH} bytes without NUL (it has ${bytes.length})`,
    );
  }
}

function checkInteger(path: string, field: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidImageError(`${path}: ${field} ${value} is not an integer between ${min} and ${max}`);
  }
}
