import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { appendExtent, type ContentExtent, validContentMap } from '../../src/fuse/index.js';

const files = [{ path: '/cache/a', dev: 1, ino: 2 }];

describe('content maps', () => {
  it('merges an extent that continues the last one in the same file, and adjacent holes', () => {
    const extents: ContentExtent[] = [];
    appendExtent(extents, { offset: 0, length: 4096, file: 0, position: 8192 });
    appendExtent(extents, { offset: 4096, length: 100, file: 0, position: 12288 });
    appendExtent(extents, { offset: 4196, length: 10, file: 0, position: 20000 });
    appendExtent(extents, { offset: 4206, length: 5 });
    appendExtent(extents, { offset: 4211, length: 5 });
    assert.deepEqual(extents, [
      { offset: 0, length: 4196, file: 0, position: 8192 },
      { offset: 4196, length: 10, file: 0, position: 20000 },
      { offset: 4206, length: 10 },
    ]);
    assert.ok(validContentMap({ size: 4216, files, extents }));
  });

  it('refuses maps with gaps, overlaps, a wrong size or an unknown file', () => {
    const ok = { offset: 0, length: 10, file: 0, position: 0 };
    assert.ok(validContentMap({ size: 0, files, extents: [] }));
    assert.ok(!validContentMap({ size: 11, files, extents: [ok] }));
    assert.ok(!validContentMap({ size: 20, files, extents: [ok, { offset: 11, length: 9 }] }));
    assert.ok(!validContentMap({ size: 20, files, extents: [ok, { offset: 5, length: 15 }] }));
    assert.ok(!validContentMap({ size: 10, files, extents: [{ ...ok, file: 1 }] }));
    assert.ok(!validContentMap({ size: 10, files, extents: [{ ...ok, position: -1 }] }));
  });
});
