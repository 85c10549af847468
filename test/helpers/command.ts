/** Running a program to completion and collecting its output, for tests. */
import { spawn } from 'node:child_process';

const DEFAULT_TIMEOUT_MS = 120_000;

export interface CommandResult {
  /** Exit code; null when the command was killed by a signal (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs a command to completion, collecting its output; never throws for a non-zero exit (only when
 * the program cannot be started). SIGKILL (by PID) after `timeoutMs`.
 */
export function runCommand(
  command: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) stderr += `\n[test] ${command} killed after ${timeoutMs} ms\n`;
      resolvePromise({ code, signal, stdout, stderr, ms: Math.round(performance.now() - started) });
    });
  });
}

/** A command result for an error or assertion message. */
export function describeCommand(what: string, r: CommandResult): string {
  return `${what} exited code=${r.code} signal=${r.signal} after ${r.ms} ms\nstdout: ${r.stdout.trim()}\nstderr: ${r.stderr.trim()}`;
}
