import { type Logger, pino } from 'pino';

export type { Logger };

/** Structured logs on stderr (stdout stays free for command output). */
export function createLogger(name: string, level = process.env.DAMSELFLY_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2));
}
