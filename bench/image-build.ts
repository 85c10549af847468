/**
 * `damselfly image build` against `mkfs.erofs` on the same tree, in the same run, alternating
 * rounds after one discarded warm-up round (the source tree is read into the page cache first).
 * Timings on a shared 2-core machine vary by ±30% from run to run; the same-run ratio is the figure. Reports the median wall time, throughput over the tree's file
 * bytes, CPU seconds and output size, and each damselfly build's time as a ratio to mkfs.erofs
 * (goal: ≤ 2×). damselfly fsyncs its outputs (the build's contract); mkfs.erofs does not, so a
 * "mkfs.erofs + sync" row gives the durable baseline too.
 *
 *   npm run build && node --import tsx bench/image-build.ts [--dir /usr/lib/x86_64-linux-gnu] \
 *     [--rounds 3] [--chunk-size 1048576]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cliPath } from '../test/helpers/cluster.js';
import { reapedChildrenCpuSplit } from './proc-stats.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/usr/lib/x86_64-linux-gnu' },
    rounds: { type: 'string', default: '3' },
    'chunk-size': { type: 'string', default: String(1024 * 1024) },
    /** Only the tools whose name matches this regular expression (baselines they name are kept). */
    only: { type: 'string' },
  },
});
const DIR = values.dir!;
const ROUNDS = Number(values.rounds);
const CHUNK = Number(values['chunk-size']);

interface Tool {
  name: string;
  /** Runs once into a fresh, empty `out` directory. */
  run(out: string): void;
  /** The mkfs.erofs rows this one is compared with (for damselfly rows). */
  baselines?: string[];
}

function exec(command: string, args: string[]): void {
  const result = spawnSync(command, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`);
}

const mkfs = (name: string, flags: (out: string) => string[], sync = false): Tool => ({
  name,
  run: (out) => {
    exec('mkfs.erofs', ['--quiet', ...flags(out), join(out, 'image.erofs'), DIR]);
    if (sync)
      exec(
        'sync',
        readdirSync(out).map((f) => join(out, f)),
      );
  },
});

const damselfly = (compressor: string, baselines: string[]): Tool => ({
  name: `damselfly image build --compressor ${compressor}`,
  baselines,
  run: (out) =>
    exec(process.execPath, [
      cliPath,
      'image',
      'build',
      DIR,
      '-o',
      out,
      '--compressor',
      compressor,
      '--chunk-size',
      String(CHUNK),
    ]),
});

const allTools: Tool[] = [
  mkfs('mkfs.erofs (uncompressed)', () => []),
  mkfs('mkfs.erofs (uncompressed) + sync', () => [], true),
  mkfs('mkfs.erofs --chunksize --blobdev', (out) => [
    `--chunksize=${CHUNK}`,
    `--blobdev=${join(out, 'blob')}`,
  ]),
  mkfs('mkfs.erofs -zlz4', () => ['-zlz4']),
  mkfs('mkfs.erofs -zlz4hc', () => ['-zlz4hc']),
  damselfly('none', [
    'mkfs.erofs (uncompressed)',
    'mkfs.erofs (uncompressed) + sync',
    'mkfs.erofs --chunksize --blobdev',
  ]),
  damselfly('lz4', ['mkfs.erofs -zlz4']),
  damselfly('zstd', ['mkfs.erofs -zlz4hc', 'mkfs.erofs (uncompressed)']),
];

/** The selected tools plus the baselines they are compared with, in table order. */
function selectTools(): Tool[] {
  if (!values.only) return allTools;
  const pattern = new RegExp(values.only);
  const wanted = new Set(
    allTools.filter((t) => pattern.test(t.name)).flatMap((t) => [t.name, ...(t.baselines ?? [])]),
  );
  return allTools.filter((t) => wanted.has(t.name));
}
const tools = selectTools();

function bytesUnder(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((sum, name) => sum + bytesUnder(join(path, name)), 0);
}

/** Regular-file bytes of the tree, each inode once (what both tools have to read). */
function treeBytes(): number {
  const out = execFileSync('find', [DIR, '-xdev', '-type', 'f', '-printf', '%i %s\\n'], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const sizes = new Map<string, number>();
  for (const line of out.split('\n')) {
    const [ino, size] = line.split(' ');
    if (ino) sizes.set(ino, Number(size));
  }
  return [...sizes.values()].reduce((a, b) => a + b, 0);
}

interface Sample {
  wall: number;
  cpu: number;
  bytes: number;
}

function measure(tool: Tool, work: string): Sample {
  const out = join(work, 'out');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out);
  exec('sync', []); // the previous run's dirty pages are not this run's cost
  const cpuBefore = reapedChildrenCpuSplit();
  const started = performance.now();
  tool.run(out);
  const wall = (performance.now() - started) / 1000;
  const cpuAfter = reapedChildrenCpuSplit();
  const cpu = cpuAfter.user - cpuBefore.user + (cpuAfter.system - cpuBefore.system);
  const bytes = bytesUnder(out);
  rmSync(out, { recursive: true, force: true });
  return { wall, cpu, bytes };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mb = (n: number) => n / 1e6;

function main(): void {
  const work = mkdtempSync(join(tmpdir(), 'damselfly-bench-image-'));
  try {
    const bytes = treeBytes();
    const files =
      execFileSync('find', [DIR, '-xdev'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }).split('\n')
        .length - 1;
    execFileSync('sh', ['-c', `find "${DIR}" -xdev -type f -print0 | xargs -0 cat > /dev/null`]);
    for (const tool of tools) measure(tool, work); // a warm-up round, not counted
    const samples = new Map<string, Sample[]>(tools.map((t) => [t.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const tool of tools) samples.get(tool.name)!.push(measure(tool, work));
      process.stderr.write(`round ${round + 1}/${ROUNDS} done\n`);
    }
    const wallOf = (name: string) => median(samples.get(name)!.map((s) => s.wall));
    console.log(`# image build vs mkfs.erofs — ${new Date().toISOString()}`);
    console.log('');
    console.log(
      `tree: ${DIR} (${files} entries, ${mb(bytes).toFixed(0)} MB of file data); chunk size ${CHUNK}; ` +
        `${ROUNDS} rounds after a warm-up, medians; ${availableParallelism()} × ${cpus()[0]?.model ?? 'cpu'}; ` +
        `Node ${process.version}`,
    );
    console.log('');
    console.log('| tool | wall s | MB/s | CPU s | output MB | vs baseline |');
    console.log('|---|---:|---:|---:|---:|---|');
    for (const tool of tools) {
      const list = samples.get(tool.name)!;
      const wall = wallOf(tool.name);
      const ratio = (tool.baselines ?? []).map((b) => `${(wall / wallOf(b)).toFixed(2)}× ${b}`).join('; ');
      console.log(
        `| ${tool.name} | ${wall.toFixed(2)} | ${(mb(bytes) / wall).toFixed(0)} | ` +
          `${median(list.map((s) => s.cpu)).toFixed(2)} | ${mb(median(list.map((s) => s.bytes))).toFixed(0)} | ${ratio} |`,
      );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
