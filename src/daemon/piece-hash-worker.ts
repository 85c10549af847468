/**
 * Worker thread of piece-hasher.ts: the sha256 of a piece that lives in shared memory. Nothing is
 * copied or moved: the main thread keeps the buffer and does not touch it until the digest comes back.
 */
import { parentPort } from 'node:worker_threads';
import { pieceDigest } from '../task/index.js';
import type { PieceHashReply, PieceHashRequest } from './piece-hasher.js';

const port = parentPort;
if (!port) throw new Error('piece-hash-worker must run as a worker thread');

port.on('message', ({ id, memory, offset, length }: PieceHashRequest) => {
  const digest = pieceDigest(new Uint8Array(memory, offset, length));
  port.postMessage({ id, digest } satisfies PieceHashReply);
});
