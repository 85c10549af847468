/** File ranges → chunk slots (pure): holes, the last partial chunk, reads across chunks, EOF. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planFileRead } from '../../src/mount/read-plan.js';

const C = 4096;
// 2.5 chunks: chunk 7, a hole, then half of chunk 9.
const file = { size: 2 * C + C / 2, chunks: [7, null, 9] };

describe('planFileRead', () => {
  it('maps a read inside one chunk to one piece', () => {
    assert.deepEqual(planFileRead(file, C, 100, 200), [{ chunk: 7, offset: 100, length: 200 }]);
  });

  it('splits a read spanning chunks, holes included', () => {
    assert.deepEqual(planFileRead(file, C, C - 10, C + 20), [
      { chunk: 7, offset: C - 10, length: 10 },
      { chunk: null, offset: 0, length: C },
      { chunk: 9, offset: 0, length: 10 },
    ]);
  });

  it('clamps at end of file: the last chunk is partial, and only that read is short', () => {
    assert.deepEqual(planFileRead(file, C, 2 * C + 100, C), [{ chunk: 9, offset: 100, length: C / 2 - 100 }]);
    assert.deepEqual(
      planFileRead(file, C, 0, 10 * C).map((p) => p.length),
      [C, C, C / 2],
    );
    assert.deepEqual(planFileRead(file, C, file.size, 10), []);
    assert.deepEqual(planFileRead(file, C, file.size + 5000, 10), []);
  });

  it('reads a file that is all holes as zero pieces', () => {
    assert.deepEqual(planFileRead({ size: 3 * C, chunks: [null, null, null] }, C, C / 2, 2 * C), [
      { chunk: null, offset: C / 2, length: C / 2 },
      { chunk: null, offset: 0, length: C },
      { chunk: null, offset: 0, length: C / 2 },
    ]);
  });

  it('refuses a file whose chunk list is shorter than its size', () => {
    assert.throws(() => planFileRead({ size: 2 * C, chunks: [1] }, C, C, 10), RangeError);
  });
});
