/**
 * What the FUSE protocol costs before any image logic: the same bytes read through src/fuse (an
 * in-memory filesystem in this process) and from a tmpfs file, by reader processes (plain Node,
 * synchronous preads), as ratios. Needs root.
 *
 *   node --import tsx bench/fuse-read.ts [--size 256] [--seconds 3] [--reader-threads 1,2,4]
 *
 * - sequential: 1 MiB read()s of the whole file, median of 3 passes. Through FUSE the file is opened
 *   without keep_cache, so every pass goes through the protocol (page cache dropped on open), with
 *   the default 1 MiB readahead and with the kernel's 128 KiB; "direct" is FOPEN_DIRECT_IO: each
 *   read() is READs of the caller's size.
 * - random 4 KiB: preads at random 4 KiB-aligned offsets for --seconds, by 1 and by 4 processes;
 *   "direct" is one READ round trip per pread, the protocol's latency bound.
 * - reader threads: the 4-process direct case again with each --reader-threads count.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { pino } from 'pino';
import { type FuseMountOptions, FuseSession } from '../src/fuse/index.js';
import { MemoryFilesystem, patternBytes } from '../test/helpers/fuse-memory-fs.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256' },
    seconds: { type: 'string', default: '3' },
    'reader-threads': { type: 'string', default: '1,2,4' },
  },
});
const SIZE = Number(values.size) * MiB;
const SECONDS = Number(values.seconds);
const READER_THREADS = values['reader-threads'].split(',').map(Number);

/** The reader process: prints {bytes, ops, seconds}. Plain JS so that no loader runs in it. */
const READER = `
const fs = require('node:fs');
const [path, mode, blockSize, seconds, seed] = process.argv.slice(1);
const bs = Number(blockSize);
const buf = Buffer.allocUnsafe(bs);
const fd = fs.openSync(path, 'r');
const size = fs.fstatSync(fd).size;
let bytes = 0, ops = 0, x = Number(seed) >>> 0 || 1;
const start = process.hrtime.bigint();
const elapsed = () => Number(process.hrtime.bigint() - start) / 1e9;
if (mode === 'seq') {
  for (let n; (n = fs.readSync(fd, buf, 0, bs, null)) > 0; ) { bytes += n; ops++; }
} else {
  const blocks = Math.floor(size / bs);
  while (elapsed() < Number(seconds)) {
    for (let i = 0; i < 64; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      bytes += fs.readSync(fd, buf, 0, bs, ((x >>> 0) % blocks) * bs); ops++;
    }
  }
}
process.stdout.write(JSON.stringify({ bytes, ops, seconds: elapsed() }));
`;

interface ReaderResult {
  bytes: number;
  ops: number;
  seconds: number;
}

async function reader(
  path: string,
  mode: 'seq' | 'rand',
  blockSize: number,
  seed: number,
): Promise<ReaderResult> {
  const args = ['-e', READER, path, mode, String(blockSize), String(SECONDS), String(seed)];
  const { stdout } = await run(process.execPath, args, { timeout: 600_000 });
  return JSON.parse(stdout) as ReaderResult;
}

interface Figure {
  /** MB/s for sequential, reads/s for random. */
  value: number;
  unit: 'MB/s' | 'reads/s';
}

async function sequential(path: string): Promise<Figure> {
  const passes: number[] = [];
  for (let i = 0; i < 3; i++) {
    const result = await reader(path, 'seq', MiB, 0);
    if (result.bytes !== SIZE) throw new Error(`${path}: read ${result.bytes} bytes of ${SIZE}`);
    passes.push(result.bytes / 1e6 / result.seconds);
  }
  return { value: passes.sort((a, b) => a - b)[1]!, unit: 'MB/s' };
}

async function random(path: string, processes: number): Promise<Figure> {
  const results = await Promise.all(
    Array.from({ length: processes }, (_, i) => reader(path, 'rand', 4096, i + 1)),
  );
  return { value: results.reduce((sum, r) => sum + r.ops / r.seconds, 0), unit: 'reads/s' };
}

interface Row {
  case: string;
  tmpfs: Figure;
  fuse: Figure;
  /** READ requests the server answered, and their mean size. */
  reads: number;
  meanRead: number;
  /** Server CPU (all threads) per second of the case. */
  serverCpu: number;
}

async function measure(
  session: FuseSession,
  fs: MemoryFilesystem,
  name: string,
  baseline: () => Promise<Figure>,
  through: () => Promise<Figure>,
): Promise<Row> {
  const tmpfs = await baseline();
  const readsBefore = fs.counters.read;
  const bytesBefore = session.stats.bytesRead;
  const cpuBefore = process.cpuUsage();
  const began = performance.now();
  const fuse = await through();
  const cpu = process.cpuUsage(cpuBefore);
  const wall = (performance.now() - began) / 1000;
  const reads = fs.counters.read - readsBefore;
  return {
    case: name,
    tmpfs,
    fuse,
    reads,
    meanRead: reads ? (session.stats.bytesRead - bytesBefore) / reads : 0,
    serverCpu: (cpu.user + cpu.system) / 1e6 / wall,
  };
}

function format(row: Row): string {
  const ratio = row.fuse.value / row.tmpfs.value;
  const number = (figure: Figure) => `${Math.round(figure.value).toLocaleString('en-US')} ${figure.unit}`;
  return [
    row.case.padEnd(34),
    number(row.tmpfs).padStart(18),
    number(row.fuse).padStart(18),
    ratio.toFixed(3).padStart(7),
    String(row.reads).padStart(9),
    `${Math.round(row.meanRead / 1024)} KiB`.padStart(9),
    `${(row.serverCpu * 100).toFixed(0)}%`.padStart(6),
  ].join(' ');
}

async function withMount<T>(
  data: Buffer,
  options: Partial<FuseMountOptions>,
  body: (session: FuseSession, fs: MemoryFilesystem, mnt: string) => Promise<T>,
): Promise<T> {
  const fs = new MemoryFilesystem();
  fs.addFile('data.bin', data, { open: { keepCache: false } });
  fs.addFile('direct.bin', data, { open: { directIo: true } });
  const mnt = await mkdtemp(join(tmpdir(), 'damselfly-bench-fuse-'));
  const session = await FuseSession.mount(mnt, fs, {
    fsName: 'bench',
    subtype: 'damselfly-bench',
    ...options,
    logger: pino({ level: 'silent' }),
  });
  try {
    return await body(session, fs, mnt);
  } finally {
    await session.unmount();
    await rm(mnt, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (mount -t fuse)');
  const data = patternBytes(SIZE, 5);
  const shm = await mkdtemp('/dev/shm/damselfly-bench-');
  const baseline = join(shm, 'data.bin');
  await writeFile(baseline, data);
  try {
    console.log(`file ${SIZE / MiB} MiB, random runs ${SECONDS} s, node ${process.version}`);
    console.log(
      `${'case'.padEnd(34)} ${'tmpfs'.padStart(18)} ${'FUSE'.padStart(18)} ${'ratio'.padStart(7)} ` +
        `${'READs'.padStart(9)} ${'mean READ'.padStart(9)} ${'server CPU'.padStart(6)}`,
    );
    await withMount(data, { readahead: 128 * 1024 }, async (session, fs, mnt) => {
      const row = await measure(
        session,
        fs,
        'sequential 1 MiB, 128 KiB readahead',
        () => sequential(baseline),
        () => sequential(join(mnt, 'data.bin')),
      );
      console.log(format(row));
    });
    await withMount(data, {}, async (session, fs, mnt) => {
      const rows = [
        await measure(
          session,
          fs,
          'sequential 1 MiB, page cache',
          () => sequential(baseline),
          () => sequential(join(mnt, 'data.bin')),
        ),
        await measure(
          session,
          fs,
          'sequential 1 MiB, direct',
          () => sequential(baseline),
          () => sequential(join(mnt, 'direct.bin')),
        ),
        await measure(
          session,
          fs,
          'random 4 KiB ×1, page cache',
          () => random(baseline, 1),
          () => random(join(mnt, 'data.bin'), 1),
        ),
        await measure(
          session,
          fs,
          'random 4 KiB ×1, direct',
          () => random(baseline, 1),
          () => random(join(mnt, 'direct.bin'), 1),
        ),
        await measure(
          session,
          fs,
          'random 4 KiB ×4, direct',
          () => random(baseline, 4),
          () => random(join(mnt, 'direct.bin'), 4),
        ),
      ];
      for (const row of rows) console.log(format(row));
    });
    for (const threads of READER_THREADS) {
      await withMount(data, { readerThreads: threads }, async (session, fs, mnt) => {
        const row = await measure(
          session,
          fs,
          `random 4 KiB ×4, direct, ${threads} reader${threads > 1 ? 's' : ''}`,
          () => random(baseline, 4),
          () => random(join(mnt, 'direct.bin'), 4),
        );
        console.log(format(row));
      });
    }
  } finally {
    await rm(shm, { recursive: true, force: true });
  }
}

await main();
