/**
 * The request dispatcher without a kernel: hand-built requests in, recorded replies out. Covers what
 * a real mount cannot show deterministically: reply ordering under concurrency, INTERRUPT races,
 * the EROFS/ENOSYS table, error mapping, READDIRPLUS lookup accounting.
 */
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { Opcode, StructSize } from '../../src/fuse/abi.js';
import { errnoNumber, FuseError } from '../../src/fuse/errors.js';
import { FilesystemOperations } from '../../src/fuse/operations.js';
import { type ReplySink, RequestDispatcher } from '../../src/fuse/request-dispatcher.js';
import type { DirectoryEntry, ReadOnlyFilesystem, RequestContext } from '../../src/fuse/types.js';

const silent = pino({ level: 'silent' });
const errno = (name: Parameters<typeof errnoNumber>[0]) => errnoNumber(name);

interface Reply {
  unique: number | bigint;
  errno: number;
  body: Buffer;
}

class RecordingSink implements ReplySink {
  readonly replies: Reply[] = [];
  send(unique: number | bigint, error: number, body: readonly Buffer[] = []): void {
    this.replies.push({ unique, errno: error, body: Buffer.concat(body) });
  }
  for(unique: number): Reply[] {
    return this.replies.filter((reply) => reply.unique === unique);
  }
}

let nextUnique = 100;

function takeUnique(): number {
  nextUnique += 2;
  return nextUnique;
}

function message(opcode: number, body: Buffer = Buffer.alloc(0), nodeid = 1, unique = takeUnique()): Buffer {
  const head = Buffer.alloc(StructSize.IN_HEADER);
  head.writeUInt32LE(StructSize.IN_HEADER + body.length, 0);
  head.writeUInt32LE(opcode, 4);
  head.writeBigUInt64LE(BigInt(unique), 8);
  head.writeBigUInt64LE(BigInt(nodeid), 16);
  return Buffer.concat([head, body]);
}

function uniqueOf(request: Buffer): number {
  return Number(request.readBigUInt64LE(8));
}

function initBody(minor = 45): Buffer {
  const body = Buffer.alloc(64);
  body.writeUInt32LE(7, 0);
  body.writeUInt32LE(minor, 4);
  body.writeUInt32LE(131072, 8);
  body.writeUInt32LE(0x73fffffb, 12);
  return body;
}

function readBody(offset: number, size: number, fh = 0): Buffer {
  const body = Buffer.alloc(StructSize.READ_IN);
  body.writeBigUInt64LE(BigInt(fh), 0);
  body.writeBigUInt64LE(BigInt(offset), 8);
  body.writeUInt32LE(size, 16);
  return body;
}

function u32Pair(first: number, second = 0): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32LE(first, 0);
  body.writeUInt32LE(second, 4);
  return body;
}

function interruptBody(unique: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeBigUInt64LE(BigInt(unique), 0);
  return body;
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A promise the test resolves or rejects by hand. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function baseFs(): ReadOnlyFilesystem {
  return {
    async lookup(_parent, name) {
      if (name.toString() === 'present') return { ino: 5, attr: { mode: 0o100644, size: 3 } };
      if (name.toString() === 'broken') throw new Error('disk on fire');
      throw new FuseError('ENOENT');
    },
    async getattr() {
      return { mode: 0o040755 };
    },
    async read(_ino, _fh, offset, size) {
      return Buffer.alloc(size + 10, offset & 0xff);
    },
    *readdir() {},
  };
}

function setup(fs: ReadOnlyFilesystem = baseFs(), negativeTimeout = 0) {
  const sink = new RecordingSink();
  const events = { initialized: 0, failed: [] as string[] };
  const operations = new FilesystemOperations(
    fs,
    { timeouts: { entry: 1, attr: 1 }, negativeTimeout },
    silent,
  );
  const dispatcher = new RequestDispatcher(
    operations,
    sink,
    { maxRead: 1 << 20, maxBackground: 64, maxWrite: 131072 },
    silent,
    {
      initialized: () => {
        events.initialized++;
      },
      initFailed: (reason) => {
        events.failed.push(reason);
      },
    },
  );
  const init = () => dispatcher.dispatch(message(Opcode.INIT, initBody(), 0, 2));
  return { sink, dispatcher, events, init };
}

describe('fuse dispatcher: INIT', () => {
  it('answers EIO before INIT, then INIT with fuse_init_out', () => {
    const { sink, dispatcher, events, init } = setup();
    const early = message(Opcode.GETATTR, Buffer.alloc(16));
    dispatcher.dispatch(early);
    assert.equal(sink.for(uniqueOf(early))[0]!.errno, errno('EIO'));
    init();
    const reply = sink.for(2)[0]!;
    assert.equal(reply.errno, 0);
    assert.equal(reply.body.length, StructSize.INIT_OUT);
    assert.equal(reply.body.readUInt32LE(4), 38);
    assert.equal(events.initialized, 1);
  });

  it('answers EPROTO to a kernel too old, and reports it', () => {
    const { sink, dispatcher, events } = setup();
    dispatcher.dispatch(message(Opcode.INIT, initBody(26), 0, 2));
    assert.equal(sink.for(2)[0]!.errno, errno('EPROTO'));
    assert.equal(events.failed.length, 1);
    assert.equal(events.initialized, 0);
  });
});

describe('fuse dispatcher: answers without the filesystem', () => {
  let ctx: ReturnType<typeof setup>;
  beforeEach(() => {
    ctx = setup();
    ctx.init();
  });

  it('EROFS for every opcode that writes; ENOSYS for unknown ones, FLUSH and FSYNC', () => {
    const cases: Array<[number, string]> = [
      [Opcode.SETATTR, 'EROFS'],
      [Opcode.WRITE, 'EROFS'],
      [Opcode.CREATE, 'EROFS'],
      [Opcode.MKNOD, 'EROFS'],
      [Opcode.MKDIR, 'EROFS'],
      [Opcode.UNLINK, 'EROFS'],
      [Opcode.RMDIR, 'EROFS'],
      [Opcode.RENAME, 'EROFS'],
      [Opcode.RENAME2, 'EROFS'],
      [Opcode.LINK, 'EROFS'],
      [Opcode.SYMLINK, 'EROFS'],
      [Opcode.SETXATTR, 'EROFS'],
      [Opcode.REMOVEXATTR, 'EROFS'],
      [Opcode.FALLOCATE, 'EROFS'],
      [Opcode.COPY_FILE_RANGE, 'EROFS'],
      [Opcode.TMPFILE, 'EROFS'],
      [Opcode.FLUSH, 'ENOSYS'],
      [Opcode.FSYNC, 'ENOSYS'],
      [Opcode.FSYNCDIR, 'ENOSYS'],
      [Opcode.LSEEK, 'ENOSYS'],
      [Opcode.STATX, 'ENOSYS'],
      [Opcode.GETXATTR, 'ENOSYS'], // the filesystem has no getxattr
      [Opcode.READLINK, 'ENOSYS'],
      [9999, 'ENOSYS'],
    ];
    for (const [opcode, expected] of cases) {
      const request = message(opcode, Buffer.alloc(64));
      ctx.dispatcher.dispatch(request);
      // Answered synchronously: no filesystem call, no promise.
      assert.equal(ctx.sink.for(uniqueOf(request))[0]?.errno, errno(expected as 'EROFS'), `opcode ${opcode}`);
    }
  });

  it('OPEN for writing is EROFS before the filesystem is asked', async () => {
    let opened = 0;
    const fs = {
      ...baseFs(),
      open: async () => {
        opened++;
        return {};
      },
    };
    const { sink, dispatcher, init } = setup(fs);
    init();
    for (const flags of [constants.O_WRONLY, constants.O_RDWR, constants.O_WRONLY | constants.O_APPEND]) {
      const request = message(Opcode.OPEN, u32Pair(flags), 5);
      dispatcher.dispatch(request);
      await settle();
      assert.equal(sink.for(uniqueOf(request))[0]!.errno, errno('EROFS'));
    }
    assert.equal(opened, 0);
    const read = message(Opcode.OPEN, u32Pair(constants.O_RDONLY), 5);
    dispatcher.dispatch(read);
    await settle();
    const reply = sink.for(uniqueOf(read))[0]!;
    assert.equal(reply.errno, 0);
    assert.equal(reply.body.readUInt32LE(8), 2, 'FOPEN_KEEP_CACHE by default');
    assert.equal(opened, 1);
  });

  it('ACCESS: W_OK is EROFS, anything else allowed by default', async () => {
    const write = message(Opcode.ACCESS, u32Pair(constants.W_OK | constants.R_OK));
    const read = message(Opcode.ACCESS, u32Pair(constants.R_OK | constants.X_OK));
    ctx.dispatcher.dispatch(write);
    ctx.dispatcher.dispatch(read);
    await settle();
    assert.equal(ctx.sink.for(uniqueOf(write))[0]!.errno, errno('EROFS'));
    assert.equal(ctx.sink.for(uniqueOf(read))[0]!.errno, 0);
  });

  it('OPENDIR without an opendir method caches the listing', async () => {
    const request = message(Opcode.OPENDIR, u32Pair(0));
    ctx.dispatcher.dispatch(request);
    await settle();
    assert.equal(ctx.sink.for(uniqueOf(request))[0]!.body.readUInt32LE(8), 0b1010); // CACHE_DIR | KEEP_CACHE
  });
});

describe('fuse dispatcher: errors', () => {
  it('FuseError → its errno, other errors → EIO, ENOENT may be cached as a negative entry', async () => {
    const { sink, dispatcher, init } = setup();
    init();
    const missing = message(Opcode.LOOKUP, Buffer.from('missing\0'));
    const broken = message(Opcode.LOOKUP, Buffer.from('broken\0'));
    const present = message(Opcode.LOOKUP, Buffer.from('present\0'));
    for (const request of [missing, broken, present]) dispatcher.dispatch(request);
    await settle();
    assert.equal(sink.for(uniqueOf(missing))[0]!.errno, errno('ENOENT'));
    assert.equal(sink.for(uniqueOf(broken))[0]!.errno, errno('EIO'));
    const entry = sink.for(uniqueOf(present))[0]!;
    assert.equal(entry.errno, 0);
    assert.equal(entry.body.readBigUInt64LE(0), 5n);

    const negative = setup(baseFs(), 30);
    negative.init();
    const again = message(Opcode.LOOKUP, Buffer.from('missing\0'));
    negative.dispatcher.dispatch(again);
    await settle();
    const cached = negative.sink.for(uniqueOf(again))[0]!;
    assert.equal(cached.errno, 0);
    assert.equal(cached.body.readBigUInt64LE(0), 0n);
    assert.equal(cached.body.readBigUInt64LE(16), 30n);
  });

  it('a malformed request is answered EIO and the session goes on', async () => {
    const { sink, dispatcher, init } = setup();
    init();
    const short = message(Opcode.READ, Buffer.alloc(8), 5);
    dispatcher.dispatch(short);
    const lying = message(Opcode.GETATTR, Buffer.alloc(16));
    lying.writeUInt32LE(4096, 0);
    dispatcher.dispatch(lying);
    await settle();
    assert.equal(sink.for(uniqueOf(short))[0]!.errno, errno('EIO'));
    assert.equal(sink.for(uniqueOf(lying))[0]!.errno, errno('EIO'));
    const ok = message(Opcode.GETATTR, Buffer.alloc(16));
    dispatcher.dispatch(ok);
    await settle();
    assert.equal(sink.for(uniqueOf(ok))[0]!.errno, 0);
  });

  it('a READ answer longer than asked is cut to the size', async () => {
    const { sink, dispatcher, init } = setup();
    init();
    const request = message(Opcode.READ, readBody(3, 100), 5);
    dispatcher.dispatch(request);
    await settle();
    assert.equal(sink.for(uniqueOf(request))[0]!.body.length, 100);
  });
});

describe('fuse dispatcher: concurrency and INTERRUPT', () => {
  function blockingFs() {
    const reads = new Map<number, ReturnType<typeof deferred<Buffer>>>();
    const lookups: Array<{ gate: ReturnType<typeof deferred<void>>; ctx: RequestContext }> = [];
    const signals = new Map<number, AbortSignal>();
    const fs: ReadOnlyFilesystem = {
      ...baseFs(),
      async read(_ino, _fh, offset, _size, ctx) {
        const gate = deferred<Buffer>();
        reads.set(offset, gate);
        signals.set(offset, ctx.signal);
        return gate.promise;
      },
      async lookup(_parent, _name, ctx) {
        const gate = deferred<void>();
        lookups.push({ gate, ctx });
        await gate.promise;
        return { ino: 9, attr: { mode: 0o100644 } };
      },
    };
    return { fs, reads, lookups, signals };
  }

  it('replies in completion order: a slow READ does not hold up later requests', async () => {
    const blocking = blockingFs();
    const { sink, dispatcher, init } = setup(blocking.fs);
    init();
    const slow = message(Opcode.READ, readBody(0, 10), 5);
    const fast = message(Opcode.READ, readBody(4096, 10), 5);
    const stat = message(Opcode.GETATTR, Buffer.alloc(16));
    dispatcher.dispatch(slow);
    dispatcher.dispatch(fast);
    dispatcher.dispatch(stat);
    await settle();
    blocking.reads.get(4096)!.resolve(Buffer.from('fast'));
    await settle();
    assert.deepEqual(
      sink.replies.slice(1).map((reply) => reply.unique),
      [uniqueOf(stat), uniqueOf(fast)],
    );
    assert.equal(dispatcher.pending, 1);
    blocking.reads.get(0)!.resolve(Buffer.from('slow'));
    await settle();
    assert.equal(sink.for(uniqueOf(slow))[0]!.body.toString(), 'slow');
    assert.equal(dispatcher.pending, 0);
  });

  it('INTERRUPT of a READ: signal aborted, EINTR at once, the late result dropped', async () => {
    const blocking = blockingFs();
    const { sink, dispatcher, init } = setup(blocking.fs);
    init();
    const read = message(Opcode.READ, readBody(0, 10), 5);
    dispatcher.dispatch(read);
    await settle();
    dispatcher.dispatch(message(Opcode.INTERRUPT, interruptBody(uniqueOf(read)), 0, uniqueOf(read) | 1));
    assert.equal(blocking.signals.get(0)!.aborted, true);
    assert.deepEqual(
      sink.for(uniqueOf(read)).map((reply) => reply.errno),
      [errno('EINTR')],
    );
    blocking.reads.get(0)!.resolve(Buffer.from('late'));
    await settle();
    assert.equal(sink.for(uniqueOf(read)).length, 1, 'one reply only');
    assert.equal(sink.for(uniqueOf(read) | 1).length, 0, 'INTERRUPT itself is not answered');
  });

  it('INTERRUPT of a LOOKUP waits for the filesystem: a result it made still reaches the kernel', async () => {
    const blocking = blockingFs();
    const { sink, dispatcher, init } = setup(blocking.fs);
    init();
    const lookup = message(Opcode.LOOKUP, Buffer.from('x\0'));
    dispatcher.dispatch(lookup);
    await settle();
    dispatcher.dispatch(message(Opcode.INTERRUPT, interruptBody(uniqueOf(lookup))));
    assert.equal(blocking.lookups[0]!.ctx.signal.aborted, true);
    assert.equal(sink.for(uniqueOf(lookup)).length, 0);
    blocking.lookups[0]!.gate.resolve();
    await settle();
    assert.deepEqual(
      sink.for(uniqueOf(lookup)).map((reply) => reply.errno),
      [0],
    );

    const second = message(Opcode.LOOKUP, Buffer.from('y\0'));
    dispatcher.dispatch(second);
    await settle();
    dispatcher.dispatch(message(Opcode.INTERRUPT, interruptBody(uniqueOf(second))));
    blocking.lookups[1]!.gate.reject(blocking.lookups[1]!.ctx.signal.reason);
    await settle();
    assert.deepEqual(
      sink.for(uniqueOf(second)).map((reply) => reply.errno),
      [errno('EINTR')],
    );
  });

  it('an INTERRUPT that overtook its request (another reader thread) still applies', async () => {
    const blocking = blockingFs();
    const { sink, dispatcher, init } = setup(blocking.fs);
    init();
    const read = message(Opcode.READ, readBody(0, 10), 5);
    dispatcher.dispatch(message(Opcode.INTERRUPT, interruptBody(uniqueOf(read))));
    dispatcher.dispatch(read);
    await settle();
    assert.equal(blocking.signals.get(0)?.aborted ?? true, true);
    assert.deepEqual(
      sink.for(uniqueOf(read)).map((reply) => reply.errno),
      [errno('EINTR')],
    );
  });

  it('an INTERRUPT for a request already answered is ignored', async () => {
    const { sink, dispatcher, init } = setup();
    init();
    const stat = message(Opcode.GETATTR, Buffer.alloc(16));
    dispatcher.dispatch(stat);
    await settle();
    dispatcher.dispatch(message(Opcode.INTERRUPT, interruptBody(uniqueOf(stat))));
    await settle();
    assert.equal(sink.for(uniqueOf(stat)).length, 1);
    assert.equal(dispatcher.stats.interrupts, 1);
  });

  it('abortAll (the session ended) aborts every running request', async () => {
    const blocking = blockingFs();
    const { dispatcher, init } = setup(blocking.fs);
    init();
    dispatcher.dispatch(message(Opcode.READ, readBody(0, 10), 5));
    dispatcher.dispatch(message(Opcode.READ, readBody(8192, 10), 5));
    await settle();
    dispatcher.abortAll(new Error('ended'));
    assert.ok([...blocking.signals.values()].every((signal) => signal.aborted));
  });
});

describe('fuse dispatcher: FORGET, READDIRPLUS, xattrs', () => {
  it('FORGET and BATCH_FORGET reach forget() and get no reply', () => {
    const forgotten: Array<[unknown, number]> = [];
    const { sink, dispatcher, init } = setup({ ...baseFs(), forget: (ino, n) => forgotten.push([ino, n]) });
    init();
    const one = Buffer.alloc(8);
    one.writeBigUInt64LE(3n, 0);
    dispatcher.dispatch(message(Opcode.FORGET, one, 17));
    const batch = Buffer.alloc(8 + 32);
    batch.writeUInt32LE(2, 0);
    batch.writeBigUInt64LE(20n, 8);
    batch.writeBigUInt64LE(1n, 16);
    batch.writeBigUInt64LE(2n ** 60n, 24);
    batch.writeBigUInt64LE(4n, 32);
    dispatcher.dispatch(message(Opcode.BATCH_FORGET, batch, 0));
    assert.deepEqual(forgotten, [
      [17, 3],
      [20, 1],
      [2n ** 60n, 4],
    ]);
    assert.equal(sink.replies.length, 1, 'only INIT was answered');
  });

  it('READDIRPLUS pulls entries until full and gives back the one that did not fit', async () => {
    let pulled = 0;
    const forgotten: unknown[] = [];
    const fs: ReadOnlyFilesystem = {
      ...baseFs(),
      *readdir(_ino, _fh, offset, plus): Iterable<DirectoryEntry> {
        for (let i = Number(offset); i < 1000; i++) {
          pulled++;
          yield {
            name: `name-${i}`,
            ino: 100 + i,
            mode: 0o100644,
            offset: i + 1,
            attr: plus ? { mode: 0o100644 } : undefined,
          };
        }
      },
      forget: (ino) => forgotten.push(ino),
    };
    const { sink, dispatcher, init } = setup(fs);
    init();
    const request = message(Opcode.READDIRPLUS, readBody(0, 4096));
    dispatcher.dispatch(request);
    await settle();
    const body = sink.for(uniqueOf(request))[0]!.body;
    const perEntry = 128 + 24 + 8; // "name-NN" is 7 bytes: 159 → 160
    const fitted = Math.floor(4096 / perEntry);
    assert.equal(body.length, fitted * perEntry);
    assert.equal(pulled, fitted + 1, 'one entry pulled beyond the buffer, no more');
    assert.deepEqual(forgotten, [100 + fitted]);

    const resumed = message(Opcode.READDIR, readBody(fitted, 4096));
    dispatcher.dispatch(resumed);
    await settle();
    const first = sink.for(uniqueOf(resumed))[0]!.body;
    assert.equal(first.toString('utf8', 24, 24 + 7), `name-${fitted}`);
  });

  it('GETXATTR size probe, ERANGE, value; ENODATA passes through', async () => {
    const fs: ReadOnlyFilesystem = {
      ...baseFs(),
      async getxattr(_ino, name) {
        if (name.toString() === 'user.k') return Buffer.from('value!');
        throw new FuseError('ENODATA');
      },
      async listxattr() {
        return ['user.k', 'user.other'];
      },
    };
    const { sink, dispatcher, init } = setup(fs);
    init();
    const ask = (size: number, name: string) => {
      const request = message(Opcode.GETXATTR, Buffer.concat([u32Pair(size), Buffer.from(`${name}\0`)]));
      dispatcher.dispatch(request);
      return uniqueOf(request);
    };
    const probe = ask(0, 'user.k');
    const small = ask(3, 'user.k');
    const fits = ask(64, 'user.k');
    const absent = ask(64, 'user.none');
    const list = message(Opcode.LISTXATTR, u32Pair(0));
    dispatcher.dispatch(list);
    await settle();
    assert.equal(sink.for(probe)[0]!.body.readUInt32LE(0), 6);
    assert.equal(sink.for(small)[0]!.errno, errno('ERANGE'));
    assert.equal(sink.for(fits)[0]!.body.toString(), 'value!');
    assert.equal(sink.for(absent)[0]!.errno, errno('ENODATA'));
    assert.equal(sink.for(uniqueOf(list))[0]!.body.readUInt32LE(0), 'user.k\0user.other\0'.length);
  });
});
