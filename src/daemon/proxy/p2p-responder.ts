import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from '../../observability/index.js';
import type { DownloadHandle, Downloads } from '../download/downloads.js';
import type { DownloadRequest, PeerTask } from '../download/peer-task.js';
import type { DaemonMetrics } from '../metrics.js';
import type { TaskStorage } from '../storage/index.js';
import { AccessCache } from './access-cache.js';
import { parseByteRange } from './byte-range.js';
import { forwardRequestHeaders, taskOriginHeaders } from './headers.js';
import { pipeTaskRange, waitForByte } from './task-stream.js';
import { type BodyTap, checkAccess, passThrough, relay } from './upstream-client.js';

export const TASK_ID_HEADER = 'x-damselfly-task-id';

export interface P2PGet {
  /** The origin URL: the task's URL and where the access check goes. */
  url: string;
  /** Metrics label: the registry (mirror) or the origin host (forward proxy). */
  registry: string;
  /** Added to a successful answer (e.g. Docker-Content-Digest). */
  headers?: OutgoingHttpHeaders;
  /** Told the download that a client allowed by the origin started (the mirror's layer prefetch). */
  onStarted?: (request: DownloadRequest) => void;
}

function optionalHeader(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' && v.trim() ? v.trim() : undefined;
}

/**
 * Answers a GET from the P2P network: check with the origin that this client may read the URL, start
 * (or join) the task, and stream the requested bytes in order as pieces are stored. Until the first byte
 * is there nothing has been sent, so a failed P2P download falls back to passing the request through.
 */
export class P2PResponder {
  /** Tasks whose traffic is already counted per registry. */
  private readonly counted = new WeakSet<PeerTask>();

  private readonly access: AccessCache;

  constructor(
    private readonly downloads: Downloads,
    private readonly storage: TaskStorage,
    private readonly metrics: DaemonMetrics,
    private readonly logger: Logger,
    /** How long the origin's "yes" to a client's credentials for a URL is trusted (0 = ask every time). */
    accessCacheTtlMs: number,
  ) {
    this.access = new AccessCache(accessCacheTtlMs);
  }

  async serve(req: IncomingMessage, res: ServerResponse, get: P2PGet, signal: AbortSignal): Promise<void> {
    const originHeaders = taskOriginHeaders(req.headers);
    const accessKey = AccessCache.key(get.url, originHeaders);
    let length = this.access.get(accessKey);
    if (length === undefined) {
      const access = await checkAccess(get.url, originHeaders, signal);
      if (!access.allowed) {
        // Relayed as the origin said it: a 401 carries the challenge the client needs for its token flow.
        this.logger.info({ url: get.url, status: access.answer.statusCode }, 'origin refused the client');
        this.metrics.proxyRequests.inc({ via: 'refused' });
        this.count(get.registry, await relay(access.answer, res));
        return;
      }
      length = access.contentLength;
      if (length > 0) this.access.allow(accessKey, length);
    }
    if (length <= 0) return this.passThrough(req, res, get, signal); // empty or unknown length: nothing to share
    const range = parseByteRange(optionalHeader(req, 'range'), length);
    if (range.kind === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': `bytes */${length}` }).end();
      return;
    }
    const { start, end } = range.kind === 'partial' ? range : { start: 0, end: length - 1 };
    let handle: DownloadHandle;
    try {
      const request: DownloadRequest = {
        url: get.url,
        headers: originHeaders,
        tag: optionalHeader(req, 'x-damselfly-tag'),
        application: optionalHeader(req, 'x-damselfly-application'),
        priority: priorityOf(req),
        // A range fetches only the pieces under it (lazy image chunks read this way).
        range: range.kind === 'partial' ? { start, length: end - start + 1 } : undefined,
      };
      handle = this.downloads.start(request);
      this.countTraffic(handle, get.registry);
      get.onStarted?.(request);
      await waitForByte(this.storage, handle.taskId, start, handle.done, signal);
    } catch (err) {
      if (signal.aborted) return;
      this.logger.warn({ url: get.url, err: (err as Error).message }, 'P2P download failed; passing through');
      return this.passThrough(req, res, get, signal);
    }
    const record = this.storage.getTask(handle.taskId);
    if (record && record.contentLength !== length) {
      this.logger.warn(
        { url: get.url, taskId: handle.taskId, origin: length, task: record.contentLength },
        'task length differs from the origin; passing through',
      );
      return this.passThrough(req, res, get, signal);
    }
    res.writeHead(range.kind === 'partial' ? 206 : 200, {
      'content-type': 'application/octet-stream',
      ...get.headers,
      'content-length': end - start + 1,
      ...(range.kind === 'partial' ? { 'content-range': `bytes ${start}-${end}/${length}` } : {}),
      'accept-ranges': 'bytes',
      [TASK_ID_HEADER]: handle.taskId,
    });
    this.metrics.proxyRequests.inc({ via: 'p2p' });
    try {
      const sent = await pipeTaskRange(this.storage, handle.taskId, { start, end }, handle.done, res, signal);
      this.count(get.registry, sent);
      res.end();
    } catch (err) {
      // Headers are out: the only honest signal left is a cut connection (the client retries).
      if (!signal.aborted)
        this.logger.warn({ url: get.url, err: (err as Error).message }, 'P2P stream failed');
      res.destroy();
    }
  }

  /** Passes the request straight to `get.url` and relays the answer, counting it for the registry. */
  async passThrough(
    req: IncomingMessage,
    res: ServerResponse,
    get: Pick<P2PGet, 'url' | 'registry'>,
    signal: AbortSignal,
    tap?: BodyTap,
  ): Promise<void> {
    this.metrics.proxyRequests.inc({ via: 'direct' });
    const sent = await passThrough(req, res, get.url, forwardRequestHeaders(req.headers), signal, tap);
    this.count(get.registry, sent);
    this.metrics.proxyTraffic.inc({ registry: get.registry, type: 'back_to_source' }, sent);
  }

  private count(registry: string, bytes: number): void {
    this.metrics.proxyServed.inc({ registry }, bytes);
  }

  /** Once per download: the bytes this daemon took from peers and from the origin for the registry. */
  private countTraffic(handle: DownloadHandle, registry: string): void {
    if (this.counted.has(handle.task)) return;
    this.counted.add(handle.task);
    const p = handle.task.progress;
    handle.done.then(
      () => {
        this.metrics.proxyTraffic.inc({ registry, type: 'p2p' }, p.p2pBytes);
        this.metrics.proxyTraffic.inc({ registry, type: 'back_to_source' }, p.sourceBytes);
      },
      () => undefined,
    );
  }
}

function priorityOf(req: IncomingMessage): number | undefined {
  const v = optionalHeader(req, 'x-damselfly-priority');
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 6 ? n : undefined;
}
