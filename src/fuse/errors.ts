import { constants } from 'node:os';

const ERRNO: Readonly<Record<string, number>> = constants.errno;
/** The kernel rejects replies whose error is outside 1..511 (ERESTARTSYS and above are internal). */
const MAX_REPLY_ERRNO = 511;

export type ErrnoName = keyof typeof constants.errno;

/** Thrown by a filesystem method to answer the kernel with this errno. */
export class FuseError extends Error {
  override readonly name = 'FuseError';
  readonly errno: number;
  readonly code: string;

  constructor(code: ErrnoName | number, message?: string) {
    const errno = typeof code === 'number' ? code : ERRNO[code];
    if (errno === undefined || !Number.isInteger(errno) || errno < 1 || errno > MAX_REPLY_ERRNO) {
      throw new RangeError(`not an errno a FUSE reply can carry: ${String(code)}`);
    }
    const name = typeof code === 'string' ? code : errnoName(errno);
    super(message ?? name);
    this.errno = errno;
    this.code = name;
  }
}

export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(ERRNO)) if (value === errno) return name;
  return `errno ${errno}`;
}

export function errnoNumber(name: ErrnoName): number {
  return ERRNO[name]!;
}

export type FuseSessionErrorCode =
  /** An option is out of range or the mountpoint is not a directory. */
  | 'EINVAL'
  /** Opening /dev/fuse or mount(8) failed (not root, no FUSE, mountpoint busy or stale). */
  | 'EMOUNT'
  /** The kernel speaks a FUSE protocol older than we support. */
  | 'EPROTO'
  /** The kernel never sent INIT, or the connection ended before it was answered. */
  | 'EINIT'
  /** The mount was aborted through its AbortSignal. */
  | 'EABORTED';

export class FuseSessionError extends Error {
  override readonly name = 'FuseSessionError';
  constructor(
    readonly code: FuseSessionErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A request that does not match the ABI (too short, bad length); answered with EIO. */
export class FuseProtocolError extends Error {
  override readonly name = 'FuseProtocolError';
}
