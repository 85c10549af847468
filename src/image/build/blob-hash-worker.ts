/**
 * Worker thread: sha256 of a blob file, fed with its bytes in file order (moved here once written),
 * so the main thread — the build's bottleneck — does not hash every blob byte a second time. Each
 * buffer goes back once hashed, to be filled again: fresh 4 MiB buffers cost page faults and
 * zeroing in the kernel on every use.
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { BlobHashReply, BlobHashRequest } from './blob-hasher.js';

const port = parentPort;
if (!port) throw new Error('blob-hash-worker must run as a worker thread');
const hash = createHash('sha256');
const zeros = Buffer.alloc(64 * 1024);

port.on('message', (request: BlobHashRequest) => {
  if (request.type === 'bytes') {
    hash.update(request.bytes);
    const reply: BlobHashReply = { type: 'buffer', bytes: request.bytes };
    port.postMessage(reply, [request.bytes.buffer as ArrayBuffer]);
  } else if (request.type === 'zeros') {
    for (let left = request.length; left > 0; left -= zeros.length) {
      hash.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
    }
  } else port.postMessage({ type: 'digest', hex: hash.digest('hex') } satisfies BlobHashReply);
});
