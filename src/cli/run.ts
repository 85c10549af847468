import { CommanderError } from 'commander';

/** An error meant for the user: printed as one line, no stack trace. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/**
 * Typed errors (our `XError { code }`, a registry's `MANIFEST_UNKNOWN`, the system's `ENOENT`) are
 * expected failures: one line. Node's own `ERR_*` codes mean a bug, so they keep their stack.
 */
function isUserFacing(err: unknown): err is Error & { code?: string } {
  if (err instanceof UserError) return true;
  const code = (err as { code?: unknown })?.code;
  return err instanceof Error && typeof code === 'string' && code !== '' && !code.startsWith('ERR_');
}

/** Runs the CLI; user mistakes and expected failures print one line and exit non-zero. */
export function runMain(main: () => Promise<unknown>): void {
  main().catch((err: unknown) => {
    if (err instanceof CommanderError) process.exit(err.exitCode);
    if (isUserFacing(err)) {
      process.stderr.write(`damselfly: ${err.message}\n`);
      process.exit(err instanceof UserError ? err.exitCode : 1);
    }
    process.stderr.write(`damselfly: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(70);
  });
}

/** Resolves when the process gets SIGINT or SIGTERM. */
export function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => resolve(signal);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

/** Parses an integer flag value, naming the flag on error. */
export function intOption(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw new UserError(`${flag} must be a non-negative integer, got "${value}"`);
    return n;
  };
}

/**
 * Closes a long-running component on a signal, then exits: lingering keep-alive sockets and HTTP/2
 * sessions must not keep the process alive, and a close that hangs is cut short after `graceMs`.
 */
export async function closeAndExit(close: () => Promise<void>, graceMs = 8000): Promise<never> {
  const timer = setTimeout(() => {
    process.stderr.write(`damselfly: shutdown took longer than ${graceMs} ms; exiting\n`);
    process.exit(1);
  }, graceMs);
  timer.unref();
  await close();
  process.exit(0);
}

/**
 * connect-node can emit an 'error' with no listener on an HTTP/2 session that received GOAWAY while idle
 * (a scheduler restarting). That must not take a daemon down: the next call opens a new session.
 */
export function surviveSchedulerGoaway(log: (msg: string) => void): void {
  process.on('uncaughtException', (err) => {
    if (/received GOAWAY/.test(String((err as Error)?.message))) {
      log(`scheduler connection closed (${(err as Error).message}); reconnecting on next use`);
      return;
    }
    process.stderr.write(`damselfly: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(70);
  });
}
