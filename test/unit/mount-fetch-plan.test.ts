/**
 * Planning range requests over a blob's stored order (pure): merging wanted chunks, skipping what is
 * cached or in flight, amplifying small reads, and the invariants on random inputs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type FetchPlanOptions,
  type PlannedFetch,
  planFetches,
  type StoredExtent,
} from '../../src/mount/fetch-plan.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Back-to-back extents of these sizes (a compressed blob). */
function packed(sizes: number[]): StoredExtent[] {
  let offset = 0;
  return sizes.map((size) => {
    const extent = { compressedOffset: offset, compressedSize: size };
    offset += size;
    return extent;
  });
}

const noAmplify: FetchPlanOptions = { minFetchSize: 0, maxFetchSize: 8 * MiB, maxGap: 16 * KiB };
const nothingAvailable = () => false;

function positions(plans: PlannedFetch[]): number[][] {
  return plans.map((p) => p.positions);
}

describe('planFetches', () => {
  it('merges wanted chunks that are neighbours in the blob into one request', () => {
    const stored = packed([100, 200, 300, 400]);
    const plans = planFetches(stored, [2, 0, 1], nothingAvailable, noAmplify);
    assert.deepEqual(plans, [{ offset: 0, length: 600, positions: [0, 1, 2] }]);
  });

  it('brings missing chunks between wanted ones along, skips small runs of cached ones', () => {
    const stored = packed(Array(10).fill(4 * KiB));
    const cached = new Set([3, 4]);
    const plans = planFetches(stored, [1, 6], (p) => cached.has(p), noAmplify);
    assert.deepEqual(positions(plans), [[1, 2, 5, 6]]);
    assert.equal(plans[0]!.offset, 4 * KiB);
    assert.equal(plans[0]!.length, 24 * KiB, 'the cached chunks are re-read as gap bytes');
  });

  it('splits where the unneeded bytes between two chunks exceed maxGap', () => {
    const stored = packed([4 * KiB, 64 * KiB, 4 * KiB]);
    const plans = planFetches(stored, [0, 2], (p) => p === 1, noAmplify);
    assert.deepEqual(positions(plans), [[0], [2]]);
  });

  it('merges across alignment padding (compressor none)', () => {
    const stored = [
      { compressedOffset: 0, compressedSize: 100 },
      { compressedOffset: 4096, compressedSize: 5000 },
      { compressedOffset: 12288, compressedSize: 1 },
    ];
    assert.deepEqual(positions(planFetches(stored, [0, 2], nothingAvailable, noAmplify)), [[0, 1, 2]]);
  });

  it('never makes a request longer than maxFetchSize, but fetches an oversized chunk whole', () => {
    const stored = packed([3 * MiB, 3 * MiB, 3 * MiB, 20 * MiB]);
    const plans = planFetches(stored, [0, 1, 2, 3], nothingAvailable, {
      ...noAmplify,
      maxFetchSize: 8 * MiB,
    });
    assert.deepEqual(positions(plans), [[0, 1], [2], [3]]);
  });

  it('amplifies a small read forward to minFetchSize with missing neighbours', () => {
    const stored = packed(Array(100).fill(100 * KiB));
    const plans = planFetches(stored, [10], nothingAvailable, { ...noAmplify, minFetchSize: MiB });
    assert.deepEqual(positions(plans), [[10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]]);
    assert.ok(plans[0]!.length >= MiB);
  });

  it('stops amplifying at a cached or in-flight chunk, then grows backward', () => {
    const stored = packed(Array(100).fill(100 * KiB));
    const plans = planFetches(stored, [50], (p) => p === 53, { ...noAmplify, minFetchSize: 500 * KiB });
    assert.deepEqual(positions(plans), [[48, 49, 50, 51, 52]]);
  });

  it('grows backward at the end of the blob', () => {
    const stored = packed(Array(10).fill(100 * KiB));
    const plans = planFetches(stored, [9], nothingAvailable, { ...noAmplify, minFetchSize: 300 * KiB });
    assert.deepEqual(positions(plans), [[7, 8, 9]]);
  });

  it('amplified requests do not overlap each other', () => {
    const stored = packed(Array(20).fill(100 * KiB));
    const plans = planFetches(stored, [2, 5], nothingAvailable, {
      minFetchSize: 500 * KiB,
      maxFetchSize: 500 * KiB,
      maxGap: 0,
    });
    assert.deepEqual(positions(plans), [[2, 3, 4, 5, 6]]);
    const apart = planFetches(stored, [2, 12], nothingAvailable, {
      minFetchSize: 800 * KiB,
      maxFetchSize: 800 * KiB,
      maxGap: 0,
    });
    assert.deepEqual(positions(apart), [
      [2, 3, 4, 5, 6, 7, 8, 9],
      [12, 13, 14, 15, 16, 17, 18, 19],
    ]);
  });

  it('holds its invariants on random blobs', () => {
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let round = 0; round < 300; round++) {
      const count = 1 + random(60);
      let offset = 0;
      const stored = Array.from({ length: count }, () => {
        offset += random(3) === 0 ? random(5000) : 0;
        const extent = { compressedOffset: offset, compressedSize: 1 + random(300 * KiB) };
        offset += extent.compressedSize;
        return extent;
      });
      const available = new Set(Array.from({ length: random(count) }, () => random(count)));
      const wanted = Array.from({ length: 1 + random(5) }, () => random(count)).filter(
        (p) => !available.has(p),
      );
      const options = {
        minFetchSize: random(2 * MiB),
        maxFetchSize: 256 * KiB + random(4 * MiB),
        maxGap: random(64 * KiB),
      };
      const plans = planFetches(stored, wanted, (p) => available.has(p), options);
      const covered = plans.flatMap((p) => p.positions);
      assert.equal(new Set(covered).size, covered.length, 'no chunk in two requests');
      for (const p of wanted) assert.ok(covered.includes(p), `wanted ${p} is fetched`);
      for (const p of covered) assert.ok(!available.has(p), `available ${p} is not fetched again`);
      for (const plan of plans) {
        const first = stored[plan.positions[0]!]!;
        const last = stored[plan.positions.at(-1)!]!;
        assert.equal(plan.offset, first.compressedOffset);
        assert.equal(plan.length, last.compressedOffset + last.compressedSize - first.compressedOffset);
        assert.deepEqual(
          plan.positions,
          [...plan.positions].sort((a, b) => a - b),
        );
        assert.ok(
          plan.positions.length === 1 || plan.length <= Math.max(options.maxFetchSize, options.minFetchSize),
        );
      }
      for (let i = 1; i < plans.length; i++) {
        assert.ok(plans[i - 1]!.offset + plans[i - 1]!.length <= plans[i]!.offset, 'sorted, disjoint');
      }
    }
  });
});
