import type { ServerResponse } from 'node:http';

export const ERROR_TYPE_HEADER = 'x-damselfly-error-type';

/** A request the proxy refuses itself (not an answer relayed from upstream). */
export class ProxyRequestError extends Error {
  constructor(
    readonly status: number,
    /** A registry error code (distribution spec), so registry clients print it well. */
    readonly registryCode: string,
    message: string,
  ) {
    super(message);
  }
}

/** The distribution spec's error body, which registry clients and curl users can both read. */
export function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  type: string,
): void {
  const body = `${JSON.stringify({ errors: [{ code, message }] })}\n`;
  res
    .writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      [ERROR_TYPE_HEADER]: type,
    })
    .end(body);
}
