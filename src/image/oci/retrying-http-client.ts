import { Agent, type Dispatcher, request } from 'undici';
import type { Logger } from '../../observability/index.js';
import { RegistryError } from './errors.js';
import { discardBody } from './response-body.js';
import {
  backoffDelay,
  isRetryableNetworkError,
  isRetryableStatus,
  parseRetryAfter,
  type RetryPolicy,
  waitBeforeRetry,
} from './retry-policy.js';

export type HttpMethod = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

export interface HttpRequest {
  method: HttpMethod;
  url: URL;
  headers?: Record<string, string>;
  /** Buffers only: a retry must be able to send the same bytes again. */
  body?: Buffer | string;
  signal?: AbortSignal;
  /** False for requests that are not safe to repeat (an upload PATCH): one attempt only. */
  retry?: boolean;
}

export interface RetryingHttpClientOptions {
  policy: RetryPolicy;
  userAgent: string;
  logger?: Logger;
}

/** Never log a URL's query: upload locations and redirected blob URLs may carry signed credentials. */
export function redactUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/**
 * One HTTP exchange with retries: 5xx, 408, 429 (honouring Retry-After) and connection resets or
 * timeouts are retried with jittered exponential backoff. Any other answer is returned to the caller
 * (whose job it is to read or discard the body); when retries run out the last answer is returned.
 */
export class RetryingHttpClient {
  private readonly dispatcher: Dispatcher;

  constructor(private readonly options: RetryingHttpClientOptions) {
    this.dispatcher = new Agent({
      connections: 32,
      connect: { timeout: 30_000 },
      headersTimeout: 60_000,
      bodyTimeout: 120_000,
    });
  }

  async send(req: HttpRequest): Promise<Dispatcher.ResponseData> {
    const attempts = req.retry === false ? 1 : this.options.policy.retries + 1;
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= attempts;
      let res: Dispatcher.ResponseData;
      try {
        res = await this.sendOnce(req);
      } catch (err) {
        if (req.signal?.aborted || last || !isRetryableNetworkError(err)) throw networkError(err, req);
        await this.pause(req, attempt, undefined, (err as Error).message);
        continue;
      }
      if (last || !isRetryableStatus(res.statusCode)) return res;
      discardBody(res.body);
      await this.pause(req, attempt, parseRetryAfter(res.headers['retry-after']), `HTTP ${res.statusCode}`);
    }
  }

  private sendOnce(req: HttpRequest): Promise<Dispatcher.ResponseData> {
    return request(req.url, {
      method: req.method,
      headers: { 'user-agent': this.options.userAgent, ...req.headers },
      body: req.body ?? null,
      signal: req.signal ?? null,
      dispatcher: this.dispatcher,
    });
  }

  private async pause(req: HttpRequest, attempt: number, retryAfterMs: number | undefined, why: string) {
    const delay = backoffDelay(this.options.policy, attempt, retryAfterMs);
    this.options.logger?.warn(
      { method: req.method, url: redactUrl(req.url), attempt, delayMs: Math.round(delay), reason: why },
      'registry request failed, retrying',
    );
    await waitBeforeRetry(delay, req.signal);
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

function networkError(err: unknown, req: HttpRequest): unknown {
  if (req.signal?.aborted) return req.signal.reason ?? err;
  if (err instanceof RegistryError) return err;
  const cause = (err as { cause?: { message?: string } }).cause?.message;
  const detail = cause ? `${(err as Error).message} (${cause})` : (err as Error).message;
  return new RegistryError(
    `cannot reach registry at ${req.url.host} (${req.method} ${redactUrl(req.url)}): ${detail}`,
    'NETWORK',
    0,
  );
}
