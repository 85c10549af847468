/**
 * The mount's API on a unix socket (mode 0600: root's business), plain JSON over HTTP:
 * `GET /api/v1/metrics`, `GET /api/v1/trace`, `GET /api/v1/daemon`, and Prometheus text at
 * `GET /metrics`. A stale socket file left by a killed mount is replaced; the socket is removed on close.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface ApiRoutes {
  metrics(): Promise<unknown>;
  trace(): unknown;
  daemon(): unknown;
  prometheus(): Promise<{ contentType: string; body: string }>;
}

export class MountApiServer {
  private constructor(
    readonly path: string,
    private readonly server: Server,
  ) {}

  static async listen(path: string, routes: ApiRoutes): Promise<MountApiServer> {
    await removeStaleSocket(path);
    const server = createServer((req, res) => {
      void answer(req, res, routes);
    });
    // The socket is created with the umask's mode: tighten it first so it is never world-connectable.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
    } finally {
      process.umask(umask);
    }
    await chmod(path, 0o600);
    return new MountApiServer(path, server);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await unlink(this.path).catch(() => undefined);
  }
}

async function answer(req: IncomingMessage, res: ServerResponse, routes: ApiRoutes): Promise<void> {
  try {
    if (req.method !== 'GET') return send(res, 405, { error: 'only GET' });
    const url = new URL(req.url ?? '/', 'http://mount');
    switch (url.pathname) {
      case '/api/v1/metrics':
        return send(res, 200, await routes.metrics());
      case '/api/v1/trace':
        return send(res, 200, routes.trace());
      case '/api/v1/daemon':
        return send(res, 200, routes.daemon());
      case '/metrics': {
        const { contentType, body } = await routes.prometheus();
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
        return;
      }
      default:
        return send(res, 404, { error: `no route ${url.pathname}` });
    }
  } catch (err) {
    send(res, 500, { error: (err as Error).message });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
}

/** Only a socket is removed: a typo'd --api-sock must not delete someone's file. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st?.isSocket()) await unlink(path);
}
