/**
 * Driving `damselfly mount` processes in tests: start one and wait for its "mounted" line, ask its
 * API socket, and clean up whatever is left (processes, mounts, loop devices) even after a failure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { promisify } from 'node:util';
import { ManagedProcess } from './cluster.js';

const run = promisify(execFile);

/** Whether something is mounted at `path`, and its fs type (from mountinfo, without touching it). */
export async function mountTypeAt(path: string): Promise<string | undefined> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const fields = line.split(' ');
    if (fields[4] === path) return fields[fields.indexOf('-') + 1];
  }
  return undefined;
}

/** Loop devices backed by `file` (`losetup -j`). */
export async function loopsOf(file: string): Promise<string[]> {
  const { stdout } = await run('losetup', ['-j', file]);
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(':')[0]!);
}

/** GET a JSON (or text) route of a mount's API socket. */
export function apiGet<T = unknown>(socketPath: string, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET' }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`${path}: ${res.statusCode} ${text}`));
        try {
          resolve((res.headers['content-type'] ?? '').includes('json') ? JSON.parse(text) : (text as T));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The mount processes and mountpoints of one test file, all cleaned up by `cleanUp`. */
export class MountProcesses {
  private readonly processes: ManagedProcess[] = [];
  private readonly mountpoints = new Set<string>();
  private readonly backingFiles = new Set<string>();

  constructor(private readonly logDir: string) {}

  /** Starts `damselfly mount SRC MNT …flags` and waits for its "mounted" line. */
  async start(name: string, src: string, mountpoint: string, ...flags: string[]): Promise<ManagedProcess> {
    this.mountpoints.add(mountpoint);
    const proc = ManagedProcess.spawn(name, ['mount', src, mountpoint, ...flags], this.logDir);
    this.processes.push(proc);
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const out = await readFile(proc.stdoutPath, 'utf8').catch(() => '');
      if (out.includes('mounted ')) return proc;
      if (!proc.running) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`mount did not come up:\n${await proc.logTail()}`);
  }

  /** Files whose loop devices `cleanUp` must detach if a kernel mount is left behind. */
  watchLoops(...files: string[]): void {
    for (const file of files) this.backingFiles.add(file);
  }

  async cleanUp(): Promise<void> {
    for (const proc of this.processes.splice(0)) await proc.stop('SIGKILL', 2000).catch(() => undefined);
    for (const path of this.mountpoints) {
      for (let tries = 0; tries < 3 && (await mountTypeAt(path)); tries++) {
        await run('umount', ['-l', path]).catch(() => undefined);
      }
    }
    for (const file of this.backingFiles) {
      for (const loop of await loopsOf(file).catch(() => []))
        await run('losetup', ['-d', loop]).catch(() => undefined);
    }
  }
}
