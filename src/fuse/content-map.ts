/**
 * Content maps: where a file's bytes already sit in local files, so that the reader threads can
 * answer its READs themselves (one pread + one write, no trip through the main thread). A filesystem
 * hands one out from `open` only for content that is final: the map must stay true for the node id
 * for the whole session (the bytes at those positions never change, the files are never truncated).
 */

/** A local file holding content; the reader threads open it by path and check it is still this inode. */
export interface ContentFile {
  path: string;
  /** `st_dev` / `st_ino` of the file the filesystem vouches for (fstat of its own open fd). */
  dev: number;
  ino: number;
}

export interface ContentExtent {
  /** Bytes [offset, offset + length) of the node's content … */
  offset: number;
  length: number;
  /** … are at `position` of `files[file]`; without `file` they are zeros (a hole). */
  file?: number;
  position?: number;
}

export interface ContentMap {
  /** The node's size: reads end here. */
  size: number;
  files: readonly ContentFile[];
  /** Sorted by offset, covering [0, size) without gaps or overlaps. */
  extents: readonly ContentExtent[];
}

/** Posted to every reader thread (structured clone). */
export interface ContentMapMessage {
  map: { nodeid: number; content: ContentMap };
}

/** True when `map` covers [0, size) exactly, in order, with sane numbers (else it is not used). */
export function validContentMap(map: ContentMap): boolean {
  if (!Number.isSafeInteger(map.size) || map.size < 0) return false;
  let at = 0;
  for (const extent of map.extents) {
    if (extent.offset !== at || !Number.isSafeInteger(extent.length) || extent.length <= 0) return false;
    if (extent.file !== undefined) {
      if (map.files[extent.file] === undefined) return false;
      if (!Number.isSafeInteger(extent.position) || (extent.position as number) < 0) return false;
    }
    at += extent.length;
  }
  return at === map.size;
}

/** Appends an extent, merging it into the last one when it continues it (same file, next position). */
export function appendExtent(extents: ContentExtent[], extent: ContentExtent): void {
  const last = extents.at(-1);
  if (
    last !== undefined &&
    last.offset + last.length === extent.offset &&
    last.file === extent.file &&
    (last.file === undefined || (last.position as number) + last.length === extent.position)
  ) {
    last.length += extent.length;
    return;
  }
  extents.push({ ...extent });
}
