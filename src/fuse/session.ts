/**
 * A mounted read-only FUSE filesystem: /dev/fuse opened, mount(8) run on it, reader threads feeding
 * the dispatcher, and the way out (unmount, external umount, kernel abort, process exit).
 */
import { closeSync, open } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { createLogger, type Logger } from '../observability/index.js';
import { DeviceReader } from './device-reader.js';
import { FuseSessionError } from './errors.js';
import type { InitLimits } from './init-negotiation.js';
import {
  abortAndDetachSync,
  abortConnection,
  findMount,
  isMounted,
  type MountParameters,
  mountFuse,
  setReadahead,
  umount,
} from './kernel-mount.js';
import { FilesystemOperations } from './operations.js';
import { ReplyChannel } from './reply-channel.js';
import type { InitOut } from './reply-encoder.js';
import { type FuseStats, RequestDispatcher } from './request-dispatcher.js';
import type { ReadOnlyFilesystem } from './types.js';

const openFd = promisify(open);

export interface FuseMountOptions {
  /** The mount's source, as `mount` and `df` show it. */
  fsName: string;
  /** Filesystem type is `fuse.<subtype>`; default "damselfly". */
  subtype?: string;
  /** Seconds the kernel caches names and attributes; default 1. An immutable image can use hours. */
  entryTimeout?: number;
  attrTimeout?: number;
  /** Seconds a name that does not exist is cached; default 0 (not cached). */
  negativeTimeout?: number;
  /** Largest READ in bytes, 4 KiB … 1 MiB; default 1 MiB. */
  maxRead?: number;
  /**
   * Readahead window in bytes; default maxRead (1 MiB). The kernel offers 128 KiB at INIT, which INIT
   * can only lower: a larger window is set through /sys/class/bdi/<dev>/read_ahead_kb once mounted
   * (1 MiB doubles sequential throughput over 128 KiB, with 8× fewer READs; docs/fuse.md).
   */
  readahead?: number;
  /** Background requests (readahead, async direct I/O) the kernel keeps in flight; default 64. */
  maxBackground?: number;
  /** Threads blocking in read(2) on /dev/fuse; default 2 (see docs/fuse.md, "Threading"). */
  readerThreads?: number;
  /** Let users other than root use the mount (containers); default true. */
  allowOther?: boolean;
  /** Let the kernel check permissions from the mode bits (no ACCESS requests); default true. */
  defaultPermissions?: boolean;
  /** Mount `ro`, so the kernel refuses writes before asking us; default true. */
  readOnly?: boolean;
  /** Abort the connection and detach the mount when the process exits; default true. */
  unmountOnExit?: boolean;
  /** How long to wait for the kernel's INIT; default 10 s. */
  initTimeoutMs?: number;
  logger?: Logger;
  /** Aborts mounting (not an established session: call unmount() for that). */
  signal?: AbortSignal;
}

const MiB = 1024 * 1024;
/** We never accept writes; the kernel still wants room for one in the read buffer (see below). */
const MAX_WRITE = 128 * 1024;
/**
 * The kernel refuses a read of /dev/fuse smaller than max(8 KiB, in_header + write_in + max_write);
 * libfuse reserves 4 KiB for headers. 132 KiB also fits any SETXATTR value (64 KiB) with its name,
 * so even those reach us and get EROFS rather than E2BIG.
 */
const READ_BUFFER_SIZE = MAX_WRITE + 4096;
/** After umount, how long the readers get to see ENODEV before the connection is aborted. */
const UNMOUNT_GRACE_MS = 2000;

interface ResolvedOptions {
  mount: MountParameters;
  readahead: number;
  limits: InitLimits;
  timeouts: { entry: number; attr: number };
  negativeTimeout: number;
  readerThreads: number;
  unmountOnExit: boolean;
  initTimeoutMs: number;
  logger: Logger;
}

function seconds(value: number | undefined, fallback: number, name: string): number {
  const result = value ?? fallback;
  if (!(result >= 0) || !Number.isFinite(result)) {
    throw new FuseSessionError('EINVAL', `${name} must be a finite number of seconds ≥ 0`);
  }
  return result;
}

function integer(
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
  name: string,
): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min || result > max) {
    throw new FuseSessionError('EINVAL', `${name} must be an integer in ${min}…${max}`);
  }
  return result;
}

function resolveOptions(options: FuseMountOptions): ResolvedOptions {
  const subtype = options.subtype ?? 'damselfly';
  if (!/^[A-Za-z0-9_.+-]+$/.test(subtype)) throw new FuseSessionError('EINVAL', `bad subtype "${subtype}"`);
  if (!/^[^\s\0]+$/.test(options.fsName)) {
    throw new FuseSessionError('EINVAL', 'fsName must be non-empty without whitespace');
  }
  const maxRead = integer(options.maxRead, MiB, 4096, MiB, 'maxRead');
  const readahead = integer(options.readahead, maxRead, 0, 64 * MiB, 'readahead');
  return {
    readahead,
    mount: {
      fsName: options.fsName,
      subtype,
      maxRead,
      allowOther: options.allowOther ?? true,
      defaultPermissions: options.defaultPermissions ?? true,
      readOnly: options.readOnly ?? true,
    },
    limits: {
      maxRead,
      maxReadahead: readahead,
      maxBackground: integer(options.maxBackground, 64, 1, 0xffff, 'maxBackground'),
      maxWrite: MAX_WRITE,
    },
    timeouts: {
      entry: seconds(options.entryTimeout, 1, 'entryTimeout'),
      attr: seconds(options.attrTimeout, 1, 'attrTimeout'),
    },
    negativeTimeout: seconds(options.negativeTimeout, 0, 'negativeTimeout'),
    readerThreads: integer(options.readerThreads, 2, 1, 64, 'readerThreads'),
    unmountOnExit: options.unmountOnExit ?? true,
    initTimeoutMs: integer(options.initTimeoutMs, 10_000, 1, 2 ** 31 - 1, 'initTimeoutMs'),
    logger: options.logger ?? createLogger('fuse'),
  };
}

async function directory(mountpoint: string): Promise<string> {
  try {
    const canonical = await realpath(mountpoint);
    if (!(await stat(canonical)).isDirectory()) throw new Error('not a directory');
    return canonical;
  } catch (err) {
    const hint =
      (err as NodeJS.ErrnoException).code === 'ENOTCONN' ? ' (a dead FUSE mount: unmountStale())' : '';
    throw new FuseSessionError('EINVAL', `mountpoint ${mountpoint}: ${(err as Error).message}${hint}`, {
      cause: err,
    });
  }
}

export class FuseSession {
  /** Resolves once the session is over: unmounted, aborted by the kernel, or detached. Never rejects. */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private readonly dispatcher: RequestDispatcher;
  private readonly replies: ReplyChannel;
  private readonly reader: DeviceReader;
  private readonly logger: Logger;
  private ended = false;
  private readersRunning = true;
  private unmounting: Promise<void> | undefined;
  private negotiated: InitOut | undefined;
  private initWaiter: { resolve(): void; reject(err: Error): void } | undefined;

  /** Mounts `fs` at `mountpoint` (root only) and resolves once the kernel's INIT is answered. */
  static async mount(
    mountpoint: string,
    fs: ReadOnlyFilesystem,
    options: FuseMountOptions,
  ): Promise<FuseSession> {
    const resolved = resolveOptions(options);
    const abortError = () => new FuseSessionError('EABORTED', `mounting ${mountpoint} was aborted`);
    if (options.signal?.aborted) throw abortError();
    const canonical = await directory(mountpoint);
    const fd = await openFd('/dev/fuse', 'r+').catch((err: Error) => {
      throw new FuseSessionError('EMOUNT', `cannot open /dev/fuse: ${err.message}`, { cause: err });
    });
    try {
      await mountFuse(fd, canonical, resolved.mount);
    } catch (err) {
      closeSync(fd);
      throw new FuseSessionError('EMOUNT', `mount ${canonical}: ${(err as Error).message}`, { cause: err });
    }
    const device = (await findMount(canonical))?.device;
    const session = new FuseSession(canonical, device, fd, fs, resolved);
    try {
      await session.initialization(resolved.initTimeoutMs, options.signal, abortError);
    } catch (err) {
      await session.unmount();
      throw err;
    }
    await session.raiseReadahead(resolved.readahead);
    return session;
  }

  private constructor(
    /** Canonical path of the mountpoint. */
    readonly mountpoint: string,
    /** "major:minor" of the mount (its fusectl connection), if mountinfo showed it. */
    readonly device: string | undefined,
    private readonly fd: number,
    fs: ReadOnlyFilesystem,
    options: ResolvedOptions,
  ) {
    this.logger = options.logger.child({ mountpoint });
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.replies = new ReplyChannel(fd, this.logger);
    const operations = new FilesystemOperations(
      fs,
      {
        timeouts: options.timeouts,
        negativeTimeout: options.negativeTimeout,
        publishContentMap: (nodeid, content) => this.reader.publish(nodeid, content),
      },
      this.logger,
    );
    this.dispatcher = new RequestDispatcher(operations, this.replies, options.limits, this.logger, {
      initialized: (reply) => {
        this.negotiated = reply;
        this.initWaiter?.resolve();
      },
      initFailed: (reason) => {
        this.initWaiter?.reject(new FuseSessionError('EPROTO', reason));
      },
    });
    const maxRead = options.mount.maxRead;
    this.reader = new DeviceReader({ fd, bufferSize: READ_BUFFER_SIZE, maxRead }, options.readerThreads, {
      request: (message) => this.dispatcher.dispatch(message),
      end: (reason) => this.readersEnded(reason),
    });
    if (options.unmountOnExit) exitCleanup.add(this, () => abortAndDetachSync(mountpoint, device));
  }

  /** What INIT settled on (protocol minor, flags, max_pages, readahead …); undefined before INIT. */
  get protocol(): Readonly<InitOut> | undefined {
    return this.negotiated;
  }

  get stats(): Readonly<FuseStats> {
    const fast = this.reader.fastReads;
    return { ...this.dispatcher.stats, fastReads: fast.reads, fastBytesRead: fast.bytes };
  }

  /** Requests being served right now. */
  get pendingRequests(): number {
    return this.dispatcher.pending;
  }

  /**
   * Unmounts and resolves when the session is over. A busy mount (open files, a process inside) is
   * detached lazily; if its connection is still alive after a grace period it is aborted (callers
   * still inside then get ENOTCONN). Idempotent.
   */
  unmount(): Promise<void> {
    this.unmounting ??= this.runUnmount();
    return this.unmounting;
  }

  private async runUnmount(): Promise<void> {
    if (!this.ended) {
      await this.detach();
      if (!(await this.endsWithin(UNMOUNT_GRACE_MS)) && this.device !== undefined) {
        this.logger.warn('fuse connection still in use after unmount: aborting it');
        if (await abortConnection(this.device)) await this.endsWithin(UNMOUNT_GRACE_MS);
      }
      if (!this.ended) {
        this.logger.warn('fuse connection could not be aborted: reader threads left to the kernel');
        this.reader.unref();
        this.end('detached while still in use');
      }
    }
    await this.closed;
  }

  private async detach(): Promise<void> {
    try {
      await umount(this.mountpoint, false);
    } catch (err) {
      if (this.ended || !(await this.stillMounted())) return;
      this.logger.info({ reason: (err as Error).message.trim() }, 'fuse mount busy: detaching lazily');
      await umount(this.mountpoint, true).catch((lazyErr: Error) => {
        this.logger.error({ err: lazyErr }, 'fuse lazy umount failed');
      });
    }
  }

  private async stillMounted(): Promise<boolean> {
    if (this.device === undefined)
      return (await findMount(this.mountpoint))?.fsType.startsWith('fuse') ?? false;
    return isMounted(this.mountpoint, this.device);
  }

  private endsWithin(ms: number): Promise<boolean> {
    if (this.ended) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      void this.closed.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private initialization(
    timeoutMs: number,
    signal: AbortSignal | undefined,
    abortError: () => Error,
  ): Promise<void> {
    if (this.negotiated) return Promise.resolve();
    if (this.ended) return Promise.reject(new FuseSessionError('EINIT', 'the connection ended before INIT'));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => settle(abortError());
      const timer = setTimeout(
        () => settle(new FuseSessionError('EINIT', `no FUSE INIT from the kernel within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const settle = (err?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.initWaiter = undefined;
        if (err) reject(err);
        else resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.initWaiter = { resolve: () => settle(), reject: settle };
    });
  }

  /** INIT can only lower the readahead the kernel offers (128 KiB); the bdi setting raises it. */
  private async raiseReadahead(bytes: number): Promise<void> {
    const offered = this.negotiated?.maxReadahead ?? 0;
    if (bytes <= offered || this.device === undefined) return;
    try {
      await setReadahead(this.device, bytes);
    } catch (err) {
      this.logger.warn({ err, bytes }, 'fuse readahead could not be raised; keeping the kernel default');
    }
  }

  /** Every reader saw the connection end (ENODEV after umount or abort) or failed. */
  private readersEnded(reason: string): void {
    this.readersRunning = false;
    // Only now is the fd free of blocked reads; closing it earlier could let a reader read a reused fd.
    closeSync(this.fd);
    this.end(reason === 'ENODEV' ? 'connection ended' : `reader stopped: ${reason}`);
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    exitCleanup.delete(this);
    this.replies.close();
    this.dispatcher.abortAll(new DOMException('the FUSE session ended', 'AbortError'));
    this.initWaiter?.reject(new FuseSessionError('EINIT', `the connection ended before INIT: ${reason}`));
    this.logger.info({ reason }, 'fuse session ended');
    void this.detachIfStale().finally(() => this.resolveClosed());
  }

  /** After an abort from outside (fusectl) the mount stays, answering ENOTCONN: detach it. */
  private async detachIfStale(): Promise<void> {
    if (this.device === undefined || this.readersRunning) return;
    try {
      if (await isMounted(this.mountpoint, this.device)) await umount(this.mountpoint, true);
    } catch (err) {
      this.logger.error({ err }, 'fuse stale mount could not be detached');
    }
  }
}

/** Synchronous teardown of live sessions at process exit, through one 'exit' listener for all. */
const exitCleanup = new (class {
  private readonly teardowns = new Map<FuseSession, () => void>();
  private installed = false;

  add(session: FuseSession, teardownSync: () => void): void {
    this.teardowns.set(session, teardownSync);
    if (this.installed) return;
    this.installed = true;
    process.on('exit', () => {
      for (const teardown of this.teardowns.values()) teardown();
    });
  }

  delete(session: FuseSession): void {
    this.teardowns.delete(session);
  }
})();
