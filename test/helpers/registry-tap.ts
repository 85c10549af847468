/**
 * A counting reverse proxy in front of a registry (or any origin): every answer's body bytes are counted,
 * by kind of path, so tests can say how much a registry really served. It relays requests unchanged.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';

export interface TapRecord {
  method: string;
  path: string;
  status: number;
  bytes: number;
  range?: string;
  authorization: boolean;
}

export interface RegistryTap {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  records: TapRecord[];
  /** Body bytes of blob GETs (paths containing /blobs/). */
  blobBytes(): number;
  /** Makes the tap answer every request with this status (0 = relay again). */
  failWith(status: number): void;
  close(): Promise<void>;
}

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'upgrade', 'te', 'trailer']);

export async function startRegistryTap(target: string): Promise<RegistryTap> {
  const records: TapRecord[] = [];
  let failure = 0;
  const server: Server = createServer((req, res) => {
    const record: TapRecord = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      status: 0,
      bytes: 0,
      range: typeof req.headers.range === 'string' ? req.headers.range : undefined,
      authorization: req.headers.authorization !== undefined,
    };
    records.push(record);
    if (failure) {
      record.status = failure;
      res.writeHead(failure, { 'content-length': 0 }).end();
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (!HOP.has(k) && v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    const method = record.method as 'GET';
    request(`${target}${req.url}`, {
      method,
      headers,
      body: method === 'GET' || method === 'HEAD' ? undefined : req,
    })
      .then(async (answer) => {
        record.status = answer.statusCode;
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(answer.headers)) if (!HOP.has(k) && v !== undefined) out[k] = v;
        res.writeHead(answer.statusCode, out);
        answer.body.on('data', (chunk: Buffer) => {
          record.bytes += chunk.length;
        });
        await pipeline(answer.body, res);
      })
      .catch(() => res.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    records,
    blobBytes: () => records.filter((r) => r.path.includes('/blobs/')).reduce((n, r) => n + r.bytes, 0),
    failWith(status: number) {
      failure = status;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
