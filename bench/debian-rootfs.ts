/**
 * Root filesystems for the image benchmarks, made once and cached outside the repository:
 * Debian trees from `debootstrap --variant=minbase`, trimmed the way the official `debian` image is
 * (no apt lists or caches, empty /dev).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface RootfsInfo {
  suite: string;
  path: string;
  /** When debootstrap made it (the cache keeps the first one). */
  createdAt: string;
  debootstrapS: number;
  mirror: string;
}

function run(command: string, argv: string[], logPath?: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (d: Buffer) => {
      output = (output + d.toString('utf8')).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.once('error', reject);
    child.once('close', async (code) => {
      if (logPath) await writeFile(logPath, output).catch(() => undefined);
      if (code === 0) resolvePromise();
      else reject(new Error(`${command} ${argv.join(' ')} exited ${code}:\n${output.slice(-2000)}`));
    });
  });
}

/**
 * `<cacheDir>/rootfs/<suite>`, made with debootstrap unless a finished one is cached (its record is
 * `<suite>.json` beside it, written last). `rebuild` throws the cached tree away first.
 */
export async function debianRootfs(
  cacheDir: string,
  suite: string,
  mirror: string,
  rebuild: boolean,
  log: (msg: string) => void,
): Promise<RootfsInfo> {
  const dir = join(cacheDir, 'rootfs');
  const path = join(dir, suite);
  const record = join(dir, `${suite}.json`);
  if (!rebuild && existsSync(record) && existsSync(path))
    return JSON.parse(await readFile(record, 'utf8')) as RootfsInfo;
  await mkdir(dir, { recursive: true });
  await rm(record, { force: true });
  await rm(path, { recursive: true, force: true });
  const partial = `${path}.partial`;
  await rm(partial, { recursive: true, force: true });
  log(`debootstrap --variant=minbase ${suite} (${mirror})`);
  const started = performance.now();
  await run('debootstrap', ['--variant=minbase', suite, partial, mirror], join(dir, `${suite}.log`));
  // What the official image leaves out (debuerreotype): package lists, apt's binary caches, /dev nodes.
  await run('sh', [
    '-c',
    'cd "$1" && rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb dev/* && mkdir -p var/lib/apt/lists/partial',
    'sh',
    partial,
  ]);
  await rename(partial, path);
  const info: RootfsInfo = {
    suite,
    path,
    createdAt: new Date().toISOString(),
    debootstrapS: Math.round((performance.now() - started) / 100) / 10,
    mirror,
  };
  await writeFile(record, `${JSON.stringify(info, null, 2)}\n`);
  return info;
}
