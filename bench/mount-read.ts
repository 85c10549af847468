/**
 * `damselfly mount` read performance with a warm cache, against the same tree on the native
 * filesystem, as ratios measured in one run (issue 4's benchmark). Needs root.
 *
 *   node --import tsx bench/mount-read.ts [--source /usr/share] [--random-reads 400000] [--files 40] [--rounds 3]
 *
 * 1. Copies --source into a temp dir (the native tree) and `image build`s it (lz4, 1 MiB chunks).
 * 2. `mount --mode kernel` once fills the blob cache; then the same cache is mounted with
 *    `--mode fuse`, `--mode kernel` (file-backed where Linux can) and `--mode kernel
 *    --kernel-backing loop`.
 * 3. --rounds times, for native and each mount in turn, with the page cache dropped before every phase
 *    (`echo 3 > /proc/sys/vm/drop_caches`: the damselfly cache files are on disk, not in memory):
 *    - sequential: the --files largest files read with 1 MiB read()s (MB/s);
 *    - random 4 KiB: --random-reads preads at random 4 KiB offsets of files ≥ 64 KiB, the same
 *      sequence (fixed seed) in every phase, so every phase meets the same cache misses (ops/s);
 *    - tar: `tar -cf - . | cat > /dev/null` over the tree (seconds; `tar -cf /dev/null` is not used:
 *      GNU tar notices /dev/null and does not read file contents at all).
 *    A ratio is mode throughput / native throughput of the same round (1.0 = as fast as native); the
 *    table shows the median over rounds of figures and of ratios (the machine drifts between rounds).
 * 4. Time to first byte of a cold file: an image of the --files largest files pushed to a local
 *    docker-registry on loopback, converted, mounted with an empty cache; each file's first byte
 *    read once (open + 1-byte read), median and max over the files; plus the mount's start time.
 * Prints a table; writes bench/results/mount-read-<date>.{json,md}.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { RegistryClient } from '../src/image/oci/index.js';
import { cliPath, ManagedProcess } from '../test/helpers/cluster.js';
import { mountTypeAt } from '../test/helpers/mount-process.js';
import { buildImage as buildOciImage, pushImage } from '../test/helpers/oci-image.js';
import { startRegistry } from '../test/helpers/registry.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    source: { type: 'string', default: '/usr/share' },
    'random-reads': { type: 'string', default: '400000' },
    files: { type: 'string', default: '40' },
    rounds: { type: 'string', default: '3' },
  },
});
const ROUNDS = Math.max(1, Number(values.rounds));
const RANDOM_READS = Number(values['random-reads']);
const FILES = Number(values.files);

/** Plain-JS reader child (no loader): prints {bytes, ops, seconds}. */
const READER = `
const fs = require('node:fs');
const [mode, count, ...paths] = process.argv.slice(1);
let bytes = 0, ops = 0, x = 88172645;
const start = process.hrtime.bigint();
const elapsed = () => Number(process.hrtime.bigint() - start) / 1e9;
if (mode === 'seq') {
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const path of paths) {
    const fd = fs.openSync(path, 'r');
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) { bytes += n; ops++; }
    fs.closeSync(fd);
  }
} else {
  const buf = Buffer.allocUnsafe(4096);
  const files = paths.map((p) => { const fd = fs.openSync(p, 'r'); return { fd, blocks: Math.floor(fs.fstatSync(fd).size / 4096) }; });
  while (ops < Number(count)) {
    for (let i = 0; i < 64; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      const f = files[(x >>> 0) % files.length];
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      bytes += fs.readSync(f.fd, buf, 0, 4096, ((x >>> 0) % f.blocks) * 4096); ops++;
    }
  }
}
process.stdout.write(JSON.stringify({ bytes, ops, seconds: elapsed() }));
`;

interface Figures {
  sequentialMBps: number;
  random4kOps: number;
  tarSeconds: number;
}

async function dropCaches(): Promise<void> {
  await run('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

async function reader(
  mode: 'seq' | 'rand',
  paths: string[],
): Promise<{ bytes: number; ops: number; seconds: number }> {
  const { stdout } = await run(process.execPath, ['-e', READER, mode, String(RANDOM_READS), ...paths], {
    maxBuffer: 16 * MiB,
  });
  return JSON.parse(stdout);
}

async function measure(root: string, largest: string[], randomFiles: string[]): Promise<Figures> {
  await dropCaches();
  const seq = await reader(
    'seq',
    largest.map((p) => join(root, p)),
  );
  await dropCaches();
  const rand = await reader(
    'rand',
    randomFiles.map((p) => join(root, p)),
  );
  await dropCaches();
  const started = performance.now();
  await run('sh', ['-c', 'tar -cf - . | cat > /dev/null'], { cwd: root, maxBuffer: MiB });
  const tarSeconds = (performance.now() - started) / 1000;
  return { sequentialMBps: seq.bytes / MiB / seq.seconds, random4kOps: rand.ops / rand.seconds, tarSeconds };
}

/** Regular files under `root` with their sizes (relative paths). */
async function listFiles(root: string): Promise<Array<{ path: string; size: number }>> {
  const out: Array<{ path: string; size: number }> = [];
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) out.push({ path: relative(root, path), size: (await stat(path)).size });
    }
  };
  await walk(root);
  return out;
}

async function startMount(work: string, name: string, src: string, mnt: string, ...flags: string[]) {
  await mkdir(mnt, { recursive: true });
  const started = performance.now();
  const proc = ManagedProcess.spawn(name, ['mount', src, mnt, ...flags], work);
  for (;;) {
    const out = await readFile(proc.stdoutPath, 'utf8').catch(() => '');
    if (out.includes('mounted ')) return { proc, seconds: (performance.now() - started) / 1000 };
    if (!proc.running) throw new Error(`mount failed:\n${await proc.logTail()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function firstByteMs(path: string): Promise<number> {
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('head', ['-c', '1', path], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`head ${path}: ${code}`))));
  });
  return performance.now() - started;
}

async function timeToFirstByte(work: string, tree: string, files: string[]) {
  const registry = await startRegistry();
  try {
    const entries = [];
    const dirs = new Set<string>();
    for (const file of files) {
      const parts = file.split('/');
      for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    }
    for (const dir of [...dirs].sort()) entries.push({ path: dir, type: 'dir' as const });
    for (const file of files) entries.push({ path: file, content: await readFile(join(tree, file)) });
    const image = await buildOciImage({ layers: [entries], compression: 'gzip' });
    await pushImage(new RegistryClient({ plainHttp: true }), `${registry.host}/bench:src`, image);
    await run(process.execPath, [
      cliPath,
      'image',
      'convert',
      `${registry.host}/bench:src`,
      `${registry.host}/bench:df`,
      '--plain-http',
      '--no-progress',
      '--compressor',
      'lz4',
    ]);
    const mnt = join(work, 'mnt-ttfb');
    const mounted = await startMount(
      work,
      'ttfb',
      `${registry.host}/bench:df`,
      mnt,
      '--plain-http',
      '--mode',
      'fuse',
      '--cache-dir',
      join(work, 'cache-ttfb'),
    );
    try {
      const times: number[] = [];
      for (const file of files) times.push(await firstByteMs(join(mnt, file)));
      times.sort((a, b) => a - b);
      return {
        mountSeconds: mounted.seconds,
        files: files.length,
        medianMs: times[times.length >> 1]!,
        maxMs: times.at(-1)!,
      };
    } finally {
      await mounted.proc.stop('SIGTERM');
    }
  } finally {
    await registry.stop();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (mounts, drop_caches)');
  const work = await mkdtemp(join(tmpdir(), 'damselfly-bench-mount-'));
  const procs: ManagedProcess[] = [];
  try {
    const tree = join(work, 'tree');
    await run('cp', ['-a', values.source, tree]);
    const all = await listFiles(tree);
    const treeBytes = all.reduce((sum, f) => sum + f.size, 0);
    const largest = [...all]
      .sort((a, b) => b.size - a.size)
      .slice(0, FILES)
      .map((f) => f.path);
    const randomFiles = all.filter((f) => f.size >= 64 * 1024).map((f) => f.path);
    process.stderr.write(`tree: ${all.length} files, ${(treeBytes / MiB).toFixed(0)} MiB\n`);
    const out = join(work, 'image');
    const buildStarted = performance.now();
    await run(process.execPath, [cliPath, 'image', 'build', tree, '-o', out, '--compressor', 'lz4']);
    const buildSeconds = (performance.now() - buildStarted) / 1000;
    const cache = join(work, 'cache');
    const fill = await startMount(
      work,
      'fill',
      out,
      join(work, 'mnt-fill'),
      '--mode',
      'kernel',
      '--cache-dir',
      cache,
    );
    await fill.proc.stop('SIGTERM');
    const fuse = await startMount(
      work,
      'fuse',
      out,
      join(work, 'mnt-fuse'),
      '--mode',
      'fuse',
      '--cache-dir',
      cache,
    );
    procs.push(fuse.proc);
    const kernel = await startMount(
      work,
      'kernel',
      out,
      join(work, 'mnt-kernel'),
      '--mode',
      'kernel',
      '--cache-dir',
      cache,
    );
    procs.push(kernel.proc);
    const kernelLoop = await startMount(
      work,
      'kernel-loop',
      out,
      join(work, 'mnt-kernel-loop'),
      '--mode',
      'kernel',
      '--kernel-backing',
      'loop',
      '--cache-dir',
      cache,
    );
    procs.push(kernelLoop.proc);
    for (const name of ['mnt-kernel', 'mnt-kernel-loop'])
      if ((await mountTypeAt(join(work, name))) !== 'erofs') throw new Error(`${name} is not erofs`);

    const roots = {
      native: tree,
      fuse: join(work, 'mnt-fuse'),
      kernel: join(work, 'mnt-kernel'),
      kernelLoop: join(work, 'mnt-kernel-loop'),
    };
    const rounds: Array<Record<keyof typeof roots, Figures>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const figures = {} as Record<keyof typeof roots, Figures>;
      for (const [mode, root] of Object.entries(roots) as Array<[keyof typeof roots, string]>) {
        figures[mode] = await measure(root, largest, randomFiles);
        process.stderr.write(`round ${round + 1} ${mode}: ${JSON.stringify(figures[mode])}\n`);
      }
      rounds.push(figures);
    }
    const ttfb = await timeToFirstByte(work, tree, largest.slice(0, Math.min(20, largest.length)));

    const summary = (mode: keyof typeof roots) => ({
      figures: medianFigures(rounds.map((r) => r[mode])),
      ratio: medianRatio(rounds.map((r) => ratio(r[mode], r.native))),
    });
    const result = {
      date: new Date().toISOString(),
      source: values.source,
      tree: {
        files: all.length,
        bytes: treeBytes,
        sequentialFiles: largest.length,
        randomFiles: randomFiles.length,
      },
      buildSeconds,
      kernelCacheFillSeconds: fill.seconds,
      native: medianFigures(rounds.map((r) => r.native)),
      fuse: summary('fuse'),
      kernel: summary('kernel'),
      kernelLoop: summary('kernelLoop'),
      rounds,
      ttfb,
      goals: { fuseSequential: 0.7, fuseTar: 0.5, kernel: 0.9 },
      nydus: { fuseSequential: 0.7, fuseRandom: 0.76, fuseTar: 0.33, loopErofs: 0.9 },
    };
    const md = table(result);
    process.stdout.write(md);
    const stamp = result.date.slice(0, 16).replace(/:/g, '');
    await mkdir(join('bench', 'results'), { recursive: true });
    await writeFile(
      join('bench', 'results', `mount-read-${stamp}.json`),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    await writeFile(join('bench', 'results', `mount-read-${stamp}.md`), md);
  } finally {
    for (const proc of procs) await proc.stop('SIGTERM').catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

function ratio(mode: Figures, native: Figures): Record<string, number> {
  return {
    sequential: mode.sequentialMBps / native.sequentialMBps,
    random4k: mode.random4kOps / native.random4kOps,
    tar: native.tarSeconds / mode.tarSeconds,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function medianFigures(all: Figures[]): Figures {
  return {
    sequentialMBps: median(all.map((x) => x.sequentialMBps)),
    random4kOps: median(all.map((x) => x.random4kOps)),
    tarSeconds: median(all.map((x) => x.tarSeconds)),
  };
}

function medianRatio(all: Array<Record<string, number>>): Record<string, number> {
  return Object.fromEntries(Object.keys(all[0]!).map((key) => [key, median(all.map((x) => x[key]!))]));
}

function table(r: {
  tree: { files: number; bytes: number };
  native: Figures;
  fuse: { figures: Figures; ratio: Record<string, number> };
  kernel: { figures: Figures; ratio: Record<string, number> };
  kernelLoop: { figures: Figures; ratio: Record<string, number> };
  rounds: unknown[];
  ttfb: { mountSeconds: number; files: number; medianMs: number; maxMs: number };
  source: string;
}): string {
  const f = (n: number, d = 2) => n.toFixed(d);
  const row = (name: string, x: Figures, ratio?: Record<string, number>) =>
    `| ${name} | ${f(x.sequentialMBps, 0)} MB/s${ratio ? ` (${f(ratio.sequential!)})` : ''} | ${f(x.random4kOps, 0)}/s${ratio ? ` (${f(ratio.random4k!)})` : ''} | ${f(x.tarSeconds)} s${ratio ? ` (${f(ratio.tar!)})` : ''} |`;
  return [
    `Tree: copy of ${r.source}, ${r.tree.files} files, ${(r.tree.bytes / MiB).toFixed(0)} MiB; warm damselfly cache, page cache dropped before each phase; medians of ${r.rounds.length} rounds (figures and per-round ratios).`,
    '',
    '| | sequential (ratio) | random 4 KiB (ratio) | tar (ratio) |',
    '|---|---|---|---|',
    row('native', r.native),
    row('FUSE', r.fuse.figures, r.fuse.ratio),
    row('kernel EROFS, file-backed', r.kernel.figures, r.kernel.ratio),
    row('kernel EROFS, loop devices', r.kernelLoop.figures, r.kernelLoop.ratio),
    '| Nydus (seed) FUSE / loop EROFS | 0.70 / 0.90 | 0.76 / – | 0.33 / – |',
    '| goal FUSE / kernel | ≥ 0.7 / ≥ 0.9 | – / ≥ 0.9 | ≥ 0.5 / ≥ 0.9 |',
    '',
    `Cold file from a loopback registry: mount up in ${f(r.ttfb.mountSeconds)} s; first byte median ${f(r.ttfb.medianMs, 1)} ms, max ${f(r.ttfb.maxMs, 1)} ms over ${r.ttfb.files} files.`,
    '',
  ].join('\n');
}

await main();
