/**
 * FUSE_INIT: which capabilities we ask for and the limits we announce. Pure: decides the reply from
 * the kernel's offer and the session options.
 */
import {
  InitFlag,
  KERNEL_MINOR_VERSION,
  KERNEL_VERSION,
  MAX_MAX_PAGES,
  MIN_KERNEL_MINOR_VERSION,
  PAGE_SIZE,
} from './abi.js';
import type { InitOut } from './reply-encoder.js';
import type { InitIn } from './request-decoder.js';

/**
 * What a read-only, immutable tree wants from the kernel (each taken only if the kernel offers it):
 * - ASYNC_READ: readahead and concurrent read()s of one file become parallel READs, not one at a time.
 * - PARALLEL_DIROPS: lookups and readdirs in one directory are not serialised by the kernel.
 * - DO_READDIRPLUS (without READDIRPLUS_AUTO): every listing comes with the attributes, so a walk
 *   (`tar`, `find -ls`, `ls -l`) needs no LOOKUP per name. Attributes of an immutable tree cost next
 *   to nothing to send; AUTO would list each directory plainly first and pay a LOOKUP per entry
 *   (`tar -cf /dev/null` of a 2,300-file tree: about 300 against 200 ms; docs/benchmarks.md).
 * - MAX_PAGES: READs (and READDIR buffers) up to max_pages pages instead of 32, i.e. 1 MiB.
 * - CACHE_SYMLINKS: READLINK answers live in the page cache.
 * Not asked: ASYNC_DIO (direct-I/O READs would become background requests that the kernel never
 * interrupts, waited for uninterruptibly: a reader stuck on a slow fetch could not even be killed), EXPORT_SUPPORT (the filesystem would have to answer "." and ".." lookups), POSIX_ACL (ACL
 * enforcement; ACL xattrs are still readable), AUTO_INVAL_DATA / WRITEBACK_CACHE / locks / splice
 * (nothing changes, nothing is written, Node cannot splice), ABORT_ERROR (ENODEV is what we handle).
 */
export const WANTED_INIT_FLAGS =
  InitFlag.ASYNC_READ |
  InitFlag.PARALLEL_DIROPS |
  InitFlag.DO_READDIRPLUS |
  InitFlag.MAX_PAGES |
  InitFlag.CACHE_SYMLINKS;

export interface InitLimits {
  /** Largest READ in bytes (also passed as the `max_read` mount option). */
  maxRead: number;
  /** Readahead cap in bytes; the kernel's offer when absent (INIT can only lower it). */
  maxReadahead?: number;
  /** Background requests (readahead, async direct I/O, releases) in flight at once. */
  maxBackground: number;
  /** Announced for completeness: the buffer that reads /dev/fuse must hold a WRITE this large. */
  maxWrite: number;
}

export type InitDecision =
  | { kind: 'accept'; reply: InitOut }
  /** A kernel with a newer major: answer our major, it sends INIT again (protocol rule). */
  | { kind: 'downgrade'; reply: InitOut }
  | { kind: 'reject'; reason: string };

function versionOnly(): InitOut {
  return {
    major: KERNEL_VERSION,
    minor: KERNEL_MINOR_VERSION,
    maxReadahead: 0,
    flags: 0,
    maxBackground: 0,
    congestionThreshold: 0,
    maxWrite: 0,
    timeGran: 0,
    maxPages: 0,
  };
}

export function negotiateInit(offer: InitIn, limits: InitLimits): InitDecision {
  if (offer.major > KERNEL_VERSION) return { kind: 'downgrade', reply: versionOnly() };
  if (offer.major < KERNEL_VERSION || offer.minor < MIN_KERNEL_MINOR_VERSION) {
    return {
      kind: 'reject',
      reason: `kernel FUSE protocol ${offer.major}.${offer.minor} is older than 7.${MIN_KERNEL_MINOR_VERSION}`,
    };
  }
  const maxBackground = Math.min(0xffff, Math.max(1, limits.maxBackground));
  return {
    kind: 'accept',
    reply: {
      major: KERNEL_VERSION,
      minor: Math.min(offer.minor, KERNEL_MINOR_VERSION),
      maxReadahead: Math.min(offer.maxReadahead, limits.maxReadahead ?? offer.maxReadahead),
      flags: (offer.flags & WANTED_INIT_FLAGS) >>> 0,
      maxBackground,
      // The kernel marks the bdi congested (readahead backs off) past 3/4 of max_background.
      congestionThreshold: Math.max(1, Math.floor((maxBackground * 3) / 4)),
      maxWrite: limits.maxWrite,
      timeGran: 1,
      maxPages: Math.min(MAX_MAX_PAGES, Math.max(1, Math.ceil(limits.maxRead / PAGE_SIZE))),
    },
  };
}
