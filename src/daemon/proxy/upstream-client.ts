import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Agent, type Dispatcher, interceptors, request } from 'undici';
import { forwardResponseHeaders } from './headers.js';

/** Pass-through answers are relayed as they are: redirects included (the client follows them). */
const relaying = new Agent({ connections: 32 });
/** The access check follows redirects, as a peer fetching the task would (blob stores behind a registry). */
const following = new Agent({ connections: 32 }).compose(interceptors.redirect({ maxRedirections: 5 }));

export type AccessCheck =
  | { allowed: true; contentLength: number }
  | { allowed: false; answer: Dispatcher.ResponseData };

/**
 * Asks the origin whether this client may read the URL: `GET Range: bytes=0-0` with the client's own
 * headers (one byte moves; a presigned URL that refuses HEAD still answers). Anything but 200/206/416 is
 * the origin's verdict, to be relayed to the client with its body (a 401 carries the auth challenge).
 */
export async function checkAccess(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<AccessCheck> {
  const answer = await request(url, {
    method: 'GET',
    headers: { ...headers, range: 'bytes=0-0' },
    signal,
    dispatcher: following,
  });
  const { statusCode } = answer;
  if (statusCode === 206) {
    answer.body.resume();
    const total = /\/(\d+)\s*$/.exec(String(answer.headers['content-range'] ?? ''));
    return { allowed: true, contentLength: total ? Number(total[1]) : -1 };
  }
  if (statusCode === 416) {
    answer.body.resume();
    return { allowed: true, contentLength: 0 };
  }
  if (statusCode === 200) {
    answer.body.destroy();
    const length = Number(answer.headers['content-length'] ?? -1);
    return { allowed: true, contentLength: Number.isSafeInteger(length) ? length : -1 };
  }
  return { allowed: false, answer };
}

/** Wants a copy of a successful (200) answer's body of at most `maxBytes`, once it has been relayed. */
export interface BodyTap {
  maxBytes: number;
  onBody: (body: Buffer) => void;
}

/** Sends an upstream answer to the client: status, end-to-end headers and body. Returns body bytes sent. */
export async function relay(
  answer: Dispatcher.ResponseData,
  res: ServerResponse,
  head = false,
  tap?: BodyTap,
): Promise<number> {
  res.writeHead(answer.statusCode, forwardResponseHeaders(answer.headers));
  if (head) {
    answer.body.resume();
    res.end();
    return 0;
  }
  let bytes = 0;
  let copy: Buffer[] | null = tap && answer.statusCode === 200 ? [] : null;
  answer.body.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (copy && bytes > tap!.maxBytes) copy = null;
    copy?.push(chunk);
  });
  await pipeline(answer.body, res);
  if (copy) tap!.onBody(Buffer.concat(copy));
  return bytes;
}

/** Sends the client's request on to `url` and relays the answer. Returns the body bytes relayed. */
export async function passThrough(
  req: IncomingMessage,
  res: ServerResponse,
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
  tap?: BodyTap,
): Promise<number> {
  const method = (req.method ?? 'GET') as Dispatcher.HttpMethod;
  const hasBody = method !== 'GET' && method !== 'HEAD';
  const answer = await request(url, {
    method,
    headers,
    body: hasBody ? req : undefined,
    signal,
    dispatcher: relaying,
  });
  return relay(answer, res, method === 'HEAD', tap);
}
