import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  MiB,
  normalizeUrl,
  parseDigest,
  pieceCount,
  pieceDigest,
  pieceLengthFor,
  pieceRange,
  piecesCovering,
  taskId,
} from '../../src/task/index.js';

describe('task ids (Dragonfly v2 vectors)', () => {
  it('matches the published test vectors', () => {
    assert.equal(
      taskId({ url: 'https://example.com', tag: 'foo', application: 'bar' }),
      '06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca',
    );
    assert.equal(
      taskId({ url: 'https://example.com', pieceLength: 1024 }),
      '9f7c9aafbc6f30f8f41a96ca77eeae80c5b60964b3034b0ee43ccf7b2f9e52b8',
    );
    assert.equal(
      taskId({ url: 'https://example.com?foo=foo&bar=bar', filteredQueryParams: ['foo', 'bar'] }),
      '457b4328cde278e422c9e243f7bfd1e97f511fec43a80f535cf6b0ef6b086776',
    );
  });

  it('drops volatile query params and keeps the others in order', () => {
    assert.equal(
      normalizeUrl('HTTPS://Example.COM/a?b=2&X-Amz-Signature=zz&a=1&ns=docker.io'),
      'https://example.com/a?b=2&a=1',
    );
    assert.equal(taskId({ url: 'https://o/f?X-Amz-Date=1' }), taskId({ url: 'https://o/f?X-Amz-Date=2' }));
    assert.notEqual(taskId({ url: 'https://o/f', tag: 'a' }), taskId({ url: 'https://o/f', tag: 'b' }));
    // A bare "/" path is dropped, as the Rust client does.
    assert.equal(taskId({ url: 'https://example.com/' }), taskId({ url: 'https://example.com' }));
  });
});

describe('pieces', () => {
  it('picks 4 MiB up to ~2 GB, then powers of two, capped at 64 MiB', () => {
    assert.equal(pieceLengthFor(0), 4 * MiB);
    assert.equal(pieceLengthFor(256 * MiB), 4 * MiB);
    assert.equal(pieceLengthFor(2000 * MiB), 4 * MiB);
    assert.equal(pieceLengthFor(3000 * MiB), 8 * MiB);
    assert.equal(pieceLengthFor(100_000 * MiB), 64 * MiB);
  });

  it('computes counts and ranges, the last piece short', () => {
    assert.equal(pieceCount(10 * MiB + 1, 4 * MiB), 3);
    assert.equal(pieceCount(0, 4 * MiB), 0);
    assert.deepEqual(pieceRange(2, 10 * MiB + 1, 4 * MiB), {
      number: 2,
      offset: 8 * MiB,
      length: 2 * MiB + 1,
    });
    assert.throws(() => pieceRange(3, 10 * MiB + 1, 4 * MiB), RangeError);
    assert.deepEqual(piecesCovering(4 * MiB - 1, 2, 4 * MiB), [0, 1]);
  });
});

describe('digests', () => {
  it('parses and validates', () => {
    const hex = 'a'.repeat(64);
    assert.deepEqual(parseDigest(`sha256:${hex.toUpperCase()}`), { algorithm: 'sha256', hex });
    assert.throws(() => parseDigest('sha256:abc'), /64 hex/);
    assert.throws(() => parseDigest('md5:00'), /expected sha256/);
  });

  it('hashes pieces with sha256', () => {
    assert.equal(
      pieceDigest(Buffer.from('abc')),
      'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
