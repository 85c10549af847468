/**
 * A read-only FUSE server over /dev/fuse in plain Node.js (no native addon). See docs/fuse.md.
 */
export {
  appendExtent,
  type ContentExtent,
  type ContentFile,
  type ContentMap,
  validContentMap,
} from './content-map.js';
export { type ErrnoName, FuseError, FuseSessionError, type FuseSessionErrorCode } from './errors.js';
export { unmountStale } from './kernel-mount.js';
export type { FuseStats } from './request-dispatcher.js';
export { type FuseMountOptions, FuseSession } from './session.js';
export { type TerminationOptions, unmountOnTermination } from './termination-signals.js';
export type {
  Attr,
  DirectoryEntry,
  Entry,
  InodeNumber,
  OpenDirResult,
  OpenResult,
  ReadOnlyFilesystem,
  RequestContext,
  Statfs,
  Timespec,
} from './types.js';
