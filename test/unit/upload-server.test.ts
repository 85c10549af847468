/**
 * The upload server's pooled piece buffer: it must not go back to the pool while the read of the piece
 * into it is still under way, even when the child hangs up first (as a child does when a hedged copy of
 * the piece arrived from another parent). Otherwise the next download takes the buffer, verifies a piece
 * in it, and the late read overwrites it before it is stored: a corrupt piece, served from then on.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { pieceBuffers } from '../../src/daemon/buffer-pool.js';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import { TokenBucket } from '../../src/daemon/rate-limiter.js';
import type { TaskStorage } from '../../src/daemon/storage/index.js';
import { UploadServer } from '../../src/daemon/upload/server.js';
import { createLogger } from '../../src/observability/index.js';

const TASK = 'a'.repeat(64);
const LENGTH = 4 * 1024 * 1024;

/** Storage holding one piece whose read waits until `finishRead` is called, then fills the buffer. */
function slowStorage() {
  let finish!: () => void;
  const readDone = new Promise<void>((r) => {
    finish = r;
  });
  let readInto: Buffer | undefined;
  const piece = { number: 0, offset: 0, length: LENGTH, digest: `sha256:${'0'.repeat(64)}` };
  const storage = Object.assign(new EventEmitter(), {
    getTask: () => ({
      id: TASK,
      state: 'succeeded',
      contentLength: LENGTH,
      pieceLength: LENGTH,
      pieceCount: 1,
    }),
    getPiece: () => piece,
    listPieces: () => [piece],
    acquire: () => () => undefined,
    touch: () => undefined,
    readPiece: async (_id: string, _n: number, into: Buffer) => {
      readInto = into;
      await readDone;
      into.fill(0xaa); // the late read lands
      return into;
    },
  });
  return {
    storage: storage as unknown as TaskStorage,
    finishRead: finish,
    readStarted: async () => {
      while (!readInto) await delay(5);
      return readInto;
    },
  };
}

describe('upload server piece buffers', () => {
  it('keeps the buffer out of the pool until the read into it has finished, even if the child hung up', async () => {
    const { storage, finishRead, readStarted } = slowStorage();
    const server = new UploadServer(
      storage,
      new TokenBucket(0),
      4,
      new DaemonMetrics(),
      createLogger('upload-test', 'silent'),
    );
    const port = await server.listen('127.0.0.1', 0);
    try {
      const req = request({ host: '127.0.0.1', port, path: `/tasks/${TASK}/pieces/0` });
      req.on('error', () => undefined);
      req.end();
      const uploadBuffer = await readStarted();
      req.destroy(); // the child hangs up while the parent is still reading the piece
      await delay(100); // the server sees the connection close

      // A download now takes a buffer of the same size and holds a verified piece in it.
      const download = pieceBuffers.take(LENGTH);
      download.fill(0x55);
      assert.notEqual(download.buffer, uploadBuffer.buffer, 'the upload buffer is still in use');
      finishRead();
      await delay(50);
      assert.equal(
        download.every((b) => b === 0x55),
        true,
        "the download's bytes were overwritten",
      );
      pieceBuffers.give(download);
    } finally {
      await server.close();
    }
  });
});
