import type { Readable } from 'node:stream';

/**
 * Ways to be done with a response body we do not want. undici reports a body destroyed before its
 * end as an 'error' ("Request aborted"); without a listener that would crash the process.
 */

/** Read and drop the rest (small bodies: keeps the connection reusable). */
export function drainBody(body: Readable): void {
  body.on('error', () => {});
  body.resume();
}

/** Close it now (big or endless bodies: the connection is given up). */
export function discardBody(body: { destroy(): unknown; on?: Readable['on'] }): void {
  body.on?.('error', () => {});
  body.destroy();
}
