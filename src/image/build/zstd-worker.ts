/**
 * Worker thread of the zstd pool: compresses chunks as one zstd frame each (see compression.ts),
 * and sends back either the frame or — when it would not be smaller — the original bytes, so the
 * caller can move (not copy) a chunk here and still store it raw.
 */

import { parentPort } from 'node:worker_threads';
import { compress, init } from '@bokuweb/zstd-wasm';
import type { ZstdReply, ZstdRequest } from './zstd-worker-pool.js';

const port = parentPort;
if (!port) throw new Error('zstd-worker must run as a worker thread');
const ready = init();

port.on('message', async ({ id, data, level }: ZstdRequest) => {
  try {
    await ready;
    const frame = compress(data, level);
    const reply: ZstdReply =
      frame.byteLength < data.byteLength
        ? { id, bytes: frame, compressed: true }
        : { id, bytes: data, compressed: false };
    port.postMessage(reply, [reply.bytes.buffer as ArrayBuffer]);
  } catch (err) {
    port.postMessage({ id, error: String((err as Error)?.message ?? err) } satisfies ZstdReply);
  }
});
