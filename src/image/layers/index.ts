/**
 * OCI layer tars, read safely and merged into one tree.
 *
 * - `openLayerStream(blob, mediaType)`: the uncompressed tar (plain or gzip; zstd not yet).
 * - `readLayer(tar, sink)`: one layer → a LayerTree (entries, whiteouts, opaque markers, links to
 *   lower files), each regular file's content streamed to `sink` which returns its chunk indexes.
 * - `applyLayer(lower, upper)` / `mergeLayers(layers)`: OCI semantics into a `DirectoryNode`.
 *
 * Choices, where containerd, the OCI spec and GNU tar differ or say nothing:
 * - The tar parser is our own, read as Go's archive/tar reads (what containerd unpacks with), not
 *   tar-stream, which decodes PAX values as UTF-8 (mangling binary `SCHILY.xattr.security.capability`),
 *   merges PAX global headers into later entries (containerd ignores them), leaves PAX uid/gid/mtime
 *   unapplied, buffers meta headers up to a fixed 4 MiB, and reads on past the end-of-archive marker.
 *   Ours refuses oversized PAX/GNU headers before buffering them and insists on the end marker.
 * - Whiteouts and opaque markers hide lower entries only, wherever they sit in the tar (OCI spec).
 *   The name decides, whatever the entry type (containerd does the same).
 * - A hard link resolves to what its target path holds at that point of the archive: an earlier
 *   entry of the layer (same node object), else the file of the lower layers (same node object).
 * - Paths: `./` and `//` and `.` components dropped; absolute paths, `..`, components over 255
 *   bytes, paths over 4096 bytes are refused; so is any entry whose parent is a symlink (in this layer
 *   or below) — containerd would follow it inside the root; we build a tree and refuse.
 * - Entries naming the root (`./`) are ignored (containerd too); the merged root is 0755 root:root.
 * - Implied parent directories are 0755, uid 0, gid 0 or a setgid parent's group (as mkdir under
 *   containerd), mtime 0 (containerd: the time of unpacking). Directories holding only whiteout or
 *   opaque markers are not created where nothing exists below: deleting nothing is a no-op.
 * - A directory entry over a directory sets mode/owner/mtime and its xattrs key by key (lower xattrs
 *   it does not name stay, as with containerd's setxattr); a hard link entry does the same to the
 *   shared node (containerd chowns/chmods/chtimes the link path). Real producers write identical values.
 * - Unknown typeflags (GNU `V`, `D`, `M`, vendor letters) are skipped and counted in
 *   `stats.skipped`; sparse files are refused (EUNSUPPORTED_ENTRY) rather than silently emptied.
 * - Bytes after the end-of-archive marker are read and ignored (counted in `stats.trailingBytes`);
 *   after a gzip stream's end, garbage is a gzip error (containerd fails on it too).
 * - Names must be UTF-8 (the tree keeps names as strings; other bytes could not round-trip).
 */
export { applyLayer, mergeLayers } from './apply-layer.js';
export {
  LayerFormatError,
  type LayerFormatErrorCode,
  LayerSinkError,
  UnsupportedLayerError,
  type UnsupportedLayerErrorCode,
} from './errors.js';
export {
  type DeclaredCompression,
  declaredCompressionOf,
  type LayerCompression,
  openLayerStream,
  sniffCompression,
} from './layer-stream.js';
export type {
  LayerDirectory,
  LayerEntry,
  LayerLowerLink,
  LayerNode,
  LayerStats,
  LayerTree,
  LeafNode,
  ParentState,
} from './layer-tree.js';
export { DEFAULT_LAYER_LIMITS, type LayerLimits } from './limits.js';
export { type FileContentSink, type ReadLayerOptions, readLayer } from './read-layer.js';
