import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { BufferPool } from '../../src/daemon/buffer-pool.js';
import { PieceHasher } from '../../src/daemon/piece-hasher.js';
import { pieceDigest } from '../../src/task/index.js';

describe('PieceHasher', () => {
  const hasher = new PieceHasher(2);
  const pool = new BufferPool(64 * 1024 * 1024);
  after(() => hasher.close());

  it('hashes pooled (shared) pieces in place, many at once, each to its own digest', async () => {
    const pieces = Array.from({ length: 12 }, (_, i) => {
      const piece = pool.take(4 * 1024 * 1024 - i * 1000);
      assert.ok(piece.buffer instanceof SharedArrayBuffer, 'pool memory is shared with the workers');
      return randomFillSync(piece);
    });
    const digests = await Promise.all(pieces.map((p) => hasher.digest(p)));
    assert.deepEqual(
      digests,
      pieces.map((p) => pieceDigest(p)),
    );
    assert.equal(new Set(digests).size, pieces.length);
    assert.equal(hasher.threads, 2, 'twelve pieces at once keep both workers busy');
    for (const p of pieces) pool.give(p);
  });

  it('hashes a view at an offset of shared memory, not the whole buffer', async () => {
    const memory = new SharedArrayBuffer(1024 * 1024);
    const whole = randomFillSync(Buffer.from(memory));
    const view = whole.subarray(4096, 4096 + 512 * 1024);
    assert.equal(await hasher.digest(view), pieceDigest(view));
  });

  it('hashes ordinary and small buffers inline, starting no thread', async () => {
    const inline = new PieceHasher(2);
    const plain = randomFillSync(Buffer.alloc(1024 * 1024));
    const small = randomFillSync(Buffer.from(new SharedArrayBuffer(1000)));
    assert.equal(await inline.digest(plain), pieceDigest(plain));
    assert.equal(await inline.digest(small), pieceDigest(small));
    assert.equal(inline.threads, 0);
    await inline.close();
  });
});
