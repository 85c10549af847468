import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import type { Logger } from '../../observability/index.js';
import { isTaskId } from '../../task/index.js';
import type { Downloads } from '../download/downloads.js';
import type { TaskStorage } from '../storage/index.js';
import { type DownloadEvent, downloadRequestSchema } from './protocol.js';

const MAX_BODY = 1024 * 1024;

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The local API on a unix socket (mode 0600: only the daemon's user may use it), used by `get`:
 * - POST /v1/downloads          start or join a download; streams NDJSON progress, then done/error
 * - GET  /v1/tasks/<id>         stat a local task
 * - GET  /v1/tasks/<id>/content the bytes of a finished task
 * - DELETE /v1/tasks/<id>       remove a local task
 */
export class ApiServer {
  private server: Server | null = null;

  constructor(
    private readonly downloads: Downloads,
    private readonly storage: TaskStorage,
    private readonly logger: Logger,
  ) {}

  async listen(socketPath: string): Promise<void> {
    mkdirSync(dirname(socketPath), { recursive: true });
    if (existsSync(socketPath)) unlinkSync(socketPath); // a stale socket from a crashed daemon
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        this.logger.warn({ err: err.message, url: req.url }, 'api request failed');
        if (!res.headersSent) json(res, 500, { error: err.message });
        else res.end();
      });
    });
    this.server = server;
    server.listen(socketPath);
    await once(server, 'listening');
    chmodSync(socketPath, 0o600);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'POST' && path === '/v1/downloads') return this.download(req, res);
    if (path === '/v1/healthy') return json(res, 200, { ok: true });
    const m = /^\/v1\/tasks\/([^/]+)(\/content)?$/.exec(path);
    if (!m) return json(res, 404, { error: `no such endpoint: ${req.method} ${path}` });
    const id = m[1]!;
    if (!isTaskId(id)) return json(res, 400, { error: 'task id must be 64 hex characters' });
    const task = this.storage.getTask(id);
    if (!task) return json(res, 404, { error: `task ${id} is not in this daemon` });
    if (req.method === 'GET' && !m[2]) {
      return json(res, 200, { ...task, piecesStored: this.storage.listPieces(id).length });
    }
    if (req.method === 'GET' && m[2]) return this.content(id, task.state, task.contentLength, res);
    if (req.method === 'DELETE' && !m[2]) {
      await this.storage.deleteTask(id);
      res.writeHead(204).end();
      return;
    }
    json(res, 405, { error: `${req.method} not allowed here` });
  }

  private async download(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: unknown;
    try {
      body = await readBody(req);
    } catch (err) {
      return json(res, 400, { error: `bad request body: ${(err as Error).message}` });
    }
    const parsed = downloadRequestSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return json(res, 400, { error: `${issue.path.join('.') || 'body'}: ${issue.message}` });
    }
    const request = parsed.data;
    let handle: ReturnType<Downloads['start']>;
    try {
      handle = this.downloads.start(request);
    } catch (err) {
      return json(res, 400, { error: (err as Error).message });
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const send = (e: DownloadEvent) => res.write(`${JSON.stringify(e)}\n`);
    send({ event: 'started', taskId: handle.taskId, peerId: handle.task.peerId });
    const p = handle.task.progress;
    const ticker = setInterval(() => send({ event: 'progress', ...p }), 200);
    try {
      await handle.done;
      const delivery = request.output
        ? await this.storage.exportTo(handle.taskId, request.output, request.outputMode)
        : undefined;
      send({
        event: 'done',
        taskId: handle.taskId,
        contentLength: p.contentLength,
        p2pBytes: p.p2pBytes,
        sourceBytes: p.sourceBytes,
        delivery,
      });
    } catch (err) {
      send({ event: 'error', message: (err as Error).message });
    } finally {
      clearInterval(ticker);
      res.end();
    }
  }

  private async content(
    id: string,
    state: string,
    contentLength: number,
    res: ServerResponse,
  ): Promise<void> {
    if (state !== 'succeeded') {
      json(res, 409, { error: `task ${id} is not complete` });
      return;
    }
    if (!(await this.storage.checkIntact(id))) {
      json(res, 410, { error: `task ${id} was modified after download and removed; download it again` });
      return;
    }
    const release = this.storage.acquire(id);
    this.storage.touch(id);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': contentLength });
    if (contentLength === 0) {
      release();
      res.end();
      return;
    }
    const stream = this.storage.createContentStream(id);
    stream.pipe(res);
    const done = () => release();
    res.once('close', done);
    stream.once('error', () => res.destroy());
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}
