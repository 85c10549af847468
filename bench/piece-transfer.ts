/**
 * Piece transfer on loopback: the daemon's HTTP upload path (UploadServer + Parent.fetchPiece, whose
 * client reads bodies straight into pooled buffers) against the same server read through undici, and a
 * minimal length-prefixed TCP protocol serving the same pieces from the same storage — the measurements
 * behind choosing HTTP for piece transfer and our own piece client (docs/architecture.md, "Protocol
 * choices"). Throughput and CPU-seconds of this process (server and client are both in it) per round.
 *
 *   node --import tsx bench/piece-transfer.ts [--pieces 256] [--concurrency 8] [--rounds 3]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { create } from '@bufbuild/protobuf';
import { Agent } from 'undici';
import { pieceBuffers } from '../src/daemon/buffer-pool.js';
import { Parent } from '../src/daemon/download/parent.js';
import { DaemonMetrics } from '../src/daemon/metrics.js';
import { TokenBucket } from '../src/daemon/rate-limiter.js';
import { TaskStorage } from '../src/daemon/storage/index.js';
import { UploadServer } from '../src/daemon/upload/server.js';
import { createLogger } from '../src/observability/index.js';
import { HostSchema, PeerSchema } from '../src/rpc/index.js';
import { getIntoBuffer } from '../src/source/index.js';
import { MiB, pieceDigest } from '../src/task/index.js';

const { values } = parseArgs({
  options: {
    pieces: { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
  },
});
const PIECES = Number(values.pieces);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const PIECE = 4 * MiB;
const TASK = 'a'.repeat(64);

interface Round {
  mibps: number;
  cpuS: number;
}

async function run(fetchPiece: (n: number) => Promise<Buffer>): Promise<Round> {
  let next = 0;
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let n = next++; n < PIECES; n = next++) {
        const data = await fetchPiece(n);
        if (data.length !== PIECE) throw new Error(`piece ${n}: ${data.length} bytes`);
        pieceBuffers.give(data);
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return {
    mibps: (PIECES * PIECE) / MiB / ((performance.now() - started) / 1000),
    cpuS: (used.user + used.system) / 1e6,
  };
}

/** The framed alternative: request = 64-byte task id + u32 piece; response = u32 length + bytes. */
function startFramedServer(storage: TaskStorage): Promise<{ port: number; close(): void }> {
  const server = createServer((socket) => {
    let pending = Buffer.alloc(0);
    socket.on('data', async (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 68) {
        const id = pending.subarray(0, 64).toString('ascii');
        const n = pending.readUInt32BE(64);
        pending = pending.subarray(68);
        const data = await storage.readPiece(id, n);
        const header = Buffer.alloc(4);
        header.writeUInt32BE(data.length);
        socket.write(header);
        socket.write(data);
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : 0,
        close: () => server.close(),
      });
    }),
  );
}

/** One framed connection per worker, requests in sequence (like a keep-alive HTTP connection). */
function framedClient(port: number) {
  const pool: Socket[] = [];
  return async (n: number): Promise<Buffer> => {
    const socket = pool.pop() ?? createConnection({ port, host: '127.0.0.1', noDelay: true });
    const request = Buffer.alloc(68);
    request.write(TASK, 'ascii');
    request.writeUInt32BE(n, 64);
    socket.write(request);
    const data = await new Promise<Buffer>((resolve, reject) => {
      const parts: Buffer[] = [];
      let have = 0;
      let want = -1;
      const onData = (chunk: Buffer) => {
        parts.push(chunk);
        have += chunk.length;
        if (want < 0 && have >= 4) want = Buffer.concat(parts).readUInt32BE(0) + 4;
        if (want >= 0 && have >= want) {
          socket.off('data', onData);
          resolve(Buffer.concat(parts).subarray(4, want));
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
    });
    pool.push(socket);
    return data;
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'damselfly-bench-pieces-'));
  const logger = createLogger('bench', 'warn');
  const storage = TaskStorage.open({
    dataDir: dir,
    taskTtl: 0,
    capacity: 0,
    highWatermarkPercent: 100,
    lowWatermarkPercent: 90,
    logger,
  });
  try {
    storage.putTask(TASK, { url: 'http://bench/file', contentLength: PIECES * PIECE, pieceLength: PIECE });
    const piece = randomBytes(PIECE);
    for (let n = 0; n < PIECES; n++) {
      await storage.writePiece(
        TASK,
        { number: n, offset: n * PIECE, length: PIECE, digest: pieceDigest(piece) },
        piece,
      );
    }
    const upload = new UploadServer(storage, new TokenBucket(0), 1000, new DaemonMetrics(), logger);
    const httpPort = await upload.listen('127.0.0.1', 0);
    const parent = new Parent(
      create(PeerSchema, {
        id: 'bench',
        host: create(HostSchema, { ip: '127.0.0.1', uploadPort: httpPort }),
      }),
    );
    const framed = await startFramedServer(storage);
    const fetchFramed = framedClient(framed.port);
    const signal = new AbortController().signal;
    const agent = new Agent({ connections: 16, pipelining: 0 });
    const viaUndici = (n: number) =>
      getIntoBuffer(agent, `http://127.0.0.1:${httpPort}/tasks/${TASK}/pieces/${n}`, {
        accept: (_status, headers) => pieceBuffers.take(Number(headers['content-length'])),
      });
    const variants = {
      http: (n: number) => parent.fetchPiece(TASK, n, 30_000, signal),
      undici: viaUndici,
      framed: fetchFramed,
    };
    const results: Record<keyof typeof variants, Round[]> = { http: [], undici: [], framed: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, fetchPiece] of Object.entries(variants)) {
        results[name as keyof typeof variants].push(await run(fetchPiece));
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const summary = Object.fromEntries(
      Object.entries(results).map(([name, rounds]) => [
        name,
        { mibps: median(rounds.map((r) => r.mibps)), cpuS: median(rounds.map((r) => r.cpuS)) },
      ]),
    ) as Record<keyof typeof variants, Round>;
    console.log(
      JSON.stringify({
        pieces: PIECES,
        pieceMiB: 4,
        concurrency: CONCURRENCY,
        rounds: results,
        median: summary,
      }),
    );
    const line = (name: keyof typeof variants) =>
      `${name} ${summary[name].mibps.toFixed(0)} MiB/s ${summary[name].cpuS.toFixed(2)} CPU-s`;
    console.log(
      `${line('http')}; ${line('undici')}; ${line('framed')}; HTTP/TCP = ` +
        `${(summary.http.mibps / summary.framed.mibps).toFixed(2)}, CPU undici/ours = ` +
        `${(summary.undici.cpuS / summary.http.cpuS).toFixed(2)}`,
    );
    await agent.close();
    parent.close();
    framed.close();
    await upload.close();
  } finally {
    storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

await main();
