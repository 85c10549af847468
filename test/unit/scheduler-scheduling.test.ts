import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Dag, type PeerState } from '../../src/scheduler/resource/index.js';
import {
  CHILD_MAX_LAG_PIECES,
  type ChildView,
  filterReason,
  findCandidateParents,
  HashRing,
  type HostView,
  idcAffinityScore,
  isBadByPieceCosts,
  locationAffinityScore,
  type PeerView,
  rankParents,
  sample,
  score,
  TRANSIENT_REASONS,
} from '../../src/scheduler/scheduling/index.js';

function host(id: string, over: Partial<HostView> = {}): HostView {
  return {
    id,
    type: 'normal',
    idc: '',
    location: '',
    concurrentUploads: 0,
    concurrentUploadLimit: 0,
    uploadCount: 0,
    uploadFailedCount: 0,
    txBandwidth: 0,
    uploadRateLimit: 0,
    ...over,
  };
}

function peer(id: string, over: Partial<PeerView> & { state?: PeerState } = {}): PeerView {
  return {
    id,
    host: host(`h-${id}`),
    state: 'Running',
    finishedPieceCount: 1,
    parentCount: 0,
    depth: 1,
    downloadingChildren: [],
    pieceCosts: [],
    ...over,
  };
}

function child(over: Partial<ChildView> = {}): ChildView {
  return { id: 'child', host: host('h-child'), blockList: new Set(), ...over };
}

function dagWith(...ids: string[]): Dag {
  const dag = new Dag();
  for (const id of ['child', ...ids]) dag.addVertex(id);
  return dag;
}

describe('scheduler filters', () => {
  it('keeps a peer that holds pieces', () => {
    assert.equal(filterReason(child(), peer('p'), dagWith('p')), undefined);
  });

  it('drops the child itself', () => {
    assert.equal(filterReason(child(), peer('child'), dagWith()), 'self');
  });

  it('drops peers on the same host', () => {
    assert.equal(filterReason(child(), peer('p', { host: host('h-child') }), dagWith('p')), 'same-host');
  });

  it('drops blocked peers', () => {
    assert.equal(filterReason(child({ blockList: new Set(['p']) }), peer('p'), dagWith('p')), 'blocked');
  });

  it('drops Failed, Leave and Pending peers even with pieces', () => {
    for (const state of ['Failed', 'Leave', 'Pending'] as const) {
      assert.equal(
        filterReason(child(), peer('p', { state, finishedPieceCount: 5 }), dagWith('p')),
        'state',
        state,
      );
    }
  });

  it('drops peers with no data, but allows back-to-source and succeeded peers with none counted', () => {
    assert.equal(filterReason(child(), peer('p', { finishedPieceCount: 0 }), dagWith('p')), 'no-data');
    assert.equal(
      filterReason(child(), peer('p', { state: 'ReceivedNormal', finishedPieceCount: 0 }), dagWith('p')),
      'no-data',
    );
    assert.equal(
      filterReason(child(), peer('p', { state: 'BackToSource', finishedPieceCount: 0 }), dagWith('p')),
      undefined,
    );
    assert.equal(
      filterReason(child(), peer('p', { state: 'Succeeded', finishedPieceCount: 0 }), dagWith('p')),
      undefined,
    );
  });

  it('allows a running peer with no piece yet that downloads from parents (in-degree rule)', () => {
    assert.equal(
      filterReason(child(), peer('p', { finishedPieceCount: 0, parentCount: 1 }), dagWith('p')),
      undefined,
    );
    assert.equal(
      filterReason(
        child(),
        peer('p', { state: 'ReceivedNormal', finishedPieceCount: 0, parentCount: 1 }),
        dagWith('p'),
      ),
      'no-data',
    );
  });

  it('drops hosts without a free upload slot (only when a limit is set)', () => {
    const full = peer('p', { host: host('hp', { concurrentUploads: 4, concurrentUploadLimit: 4 }) });
    assert.equal(filterReason(child(), full, dagWith('p')), 'upload-full');
    const unlimited = peer('p', { host: host('hp', { concurrentUploads: 400, concurrentUploadLimit: 0 }) });
    assert.equal(filterReason(child(), unlimited, dagWith('p')), undefined);
    const free = peer('p', { host: host('hp', { concurrentUploads: 3, concurrentUploadLimit: 4 }) });
    assert.equal(filterReason(child(), free, dagWith('p')), undefined);
  });

  it('keeps a seed to seedChildLimit downloading children that keep up, not counting the asking child', () => {
    const seedHost = host('hs', { type: 'seed' });
    const limits = { seedChildLimit: 1, childLimit: 0, childLimitDepth: 0 };
    const seed = (children: [string, number][], finishedPieceCount = 40) =>
      peer('s', {
        host: seedHost,
        finishedPieceCount,
        downloadingChildren: children.map(([id, n]) => ({ id, finishedPieceCount: n })),
      });
    assert.equal(filterReason(child(), seed([]), dagWith('s'), limits), undefined);
    assert.equal(filterReason(child(), seed([['a', 30]]), dagWith('s'), limits), 'seed-busy');
    // Rescheduling a child the seed already feeds keeps the seed available to it.
    assert.equal(filterReason(child(), seed([['child', 30]]), dagWith('s'), limits), undefined);
    // A child that fell behind (a slow link) frees its place.
    const behind = 40 - CHILD_MAX_LAG_PIECES - 1;
    assert.equal(filterReason(child(), seed([['a', behind]]), dagWith('s'), limits), undefined);
    assert.equal(filterReason(child(), seed([['a', behind + 1]]), dagWith('s'), limits), 'seed-busy');
    // No limit by default; a normal host is never limited this way.
    assert.equal(
      filterReason(
        child(),
        seed([
          ['a', 40],
          ['b', 40],
        ]),
        dagWith('s'),
      ),
      undefined,
    );
    const normal = peer('n', { downloadingChildren: [{ id: 'a', finishedPieceCount: 1 }] });
    assert.equal(filterReason(child(), normal, dagWith('n'), limits), undefined);
    assert.ok(TRANSIENT_REASONS.has('seed-busy'));
  });

  it('keeps a normal peer above childLimitDepth to childLimit children that keep up', () => {
    const limits = { seedChildLimit: 0, childLimit: 2, childLimitDepth: 3 };
    const parent = (...counts: number[]) =>
      peer('p', {
        depth: 2,
        finishedPieceCount: 30,
        downloadingChildren: counts.map((n, i) => ({ id: `c${i}`, finishedPieceCount: n })),
      });
    assert.equal(filterReason(child(), parent(29), dagWith('p'), limits), undefined);
    assert.equal(filterReason(child(), parent(29, 25), dagWith('p'), limits), 'parent-busy');
    assert.equal(filterReason(child(), parent(29, 0), dagWith('p'), limits), undefined, 'c1 is far behind');
    assert.equal(filterReason(child(), parent(29, 25), dagWith('p')), undefined, 'no limit by default');
    const deep = { ...parent(29, 25), depth: 3 };
    assert.equal(
      filterReason(child(), deep, dagWith('p'), limits),
      undefined,
      'no limit from childLimitDepth on',
    );
    assert.ok(TRANSIENT_REASONS.has('parent-busy'));
  });

  it('drops parents whose last piece cost over 20x the mean', () => {
    assert.equal(
      filterReason(child(), peer('p', { pieceCosts: [10, 10, 10, 201] }), dagWith('p')),
      'bad-parent',
    );
    assert.equal(
      filterReason(child(), peer('p', { pieceCosts: [10, 10, 10, 199] }), dagWith('p')),
      undefined,
    );
  });

  it('drops edges that would make a cycle', () => {
    const dag = dagWith('p');
    dag.addEdge('child', 'p');
    assert.equal(filterReason(child(), peer('p'), dag), 'cycle');
  });
});

describe('scheduler bad-parent rule', () => {
  it('needs two samples', () => {
    assert.equal(isBadByPieceCosts([]), false);
    assert.equal(isBadByPieceCosts([1_000_000]), false);
  });

  it('uses mean + 3 sigma once the window is full', () => {
    const steady = Array.from({ length: 19 }, (_, i) => 10 + (i % 3));
    assert.equal(isBadByPieceCosts([...steady, 12], 20), false);
    assert.equal(isBadByPieceCosts([...steady, 100], 20), true);
    // 100 is under 20x the mean: the filling-window rule alone would keep it.
    assert.equal(isBadByPieceCosts([...steady, 100], 1000), false);
  });
});

describe('scheduler evaluator', () => {
  const total = 10;

  it('prefers the peer holding more pieces', () => {
    const ranked = rankParents(
      [peer('few', { finishedPieceCount: 2 }), peer('many', { finishedPieceCount: 9 })],
      host('h-child'),
      total,
    );
    assert.deepEqual(
      ranked.map((p) => p.id),
      ['many', 'few'],
    );
  });

  it('scores a succeeded peer as holding everything', () => {
    const done = peer('done', { state: 'Succeeded', finishedPieceCount: 0 });
    const half = peer('half', { finishedPieceCount: 5 });
    assert.ok(score(done, host('x'), total) > score(half, host('x'), total));
  });

  it('prefers a host with a better upload success rate', () => {
    const good = peer('good', { host: host('hg', { uploadCount: 100, uploadFailedCount: 0 }) });
    const bad = peer('bad', { host: host('hb', { uploadCount: 100, uploadFailedCount: 60 }) });
    assert.deepEqual(
      rankParents([bad, good], host('h-child'), total).map((p) => p.id),
      ['good', 'bad'],
    );
  });

  it('prefers free upload slots', () => {
    const idle = peer('idle', { host: host('hi', { concurrentUploads: 1, concurrentUploadLimit: 10 }) });
    const busy = peer('busy', { host: host('hb', { concurrentUploads: 9, concurrentUploadLimit: 10 }) });
    assert.deepEqual(
      rankParents([busy, idle], host('h-child'), total).map((p) => p.id),
      ['idle', 'busy'],
    );
  });

  it('prefers seed hosts over normal hosts', () => {
    const seed = peer('seed', { host: host('hs', { type: 'seed' }) });
    const normal = peer('normal');
    assert.deepEqual(
      rankParents([normal, seed], host('h-child'), total).map((p) => p.id),
      ['seed', 'normal'],
    );
  });

  it('prefers idle upload bandwidth, with unknown in the middle', () => {
    const idle = peer('idle', { host: host('hi', { txBandwidth: 10, uploadRateLimit: 1000 }) });
    const unknown = peer('unknown');
    const saturated = peer('saturated', { host: host('hs', { txBandwidth: 1000, uploadRateLimit: 1000 }) });
    assert.deepEqual(
      rankParents([saturated, unknown, idle], host('h-child'), total).map((p) => p.id),
      ['idle', 'unknown', 'saturated'],
    );
  });

  it('prefers the same IDC and a closer location', () => {
    const me = host('h-child', { idc: 'IDC-1', location: 'cn|zj|hz|z1|c1' });
    assert.equal(idcAffinityScore(host('a', { idc: 'idc-1' }), me), 1);
    assert.equal(idcAffinityScore(host('a', { idc: '' }), host('b', { idc: '' })), 0);
    assert.equal(locationAffinityScore(host('a', { location: 'cn|zj|hz|z1|c1' }), me), 1);
    assert.equal(locationAffinityScore(host('a', { location: 'cn|zj|sh' }), me), 0.4);
    assert.equal(locationAffinityScore(host('a', { location: 'us' }), me), 0);
    const sameIdc = peer('same', { host: host('hs', { idc: 'idc-1' }) });
    const near = peer('near', { host: host('hn', { location: 'cn|zj|hz' }) });
    const far = peer('far');
    assert.deepEqual(
      rankParents([far, near, sameIdc], me, total).map((p) => p.id),
      ['same', 'near', 'far'],
    );
  });

  it('breaks ties deterministically', () => {
    const a = rankParents([peer('b'), peer('a'), peer('c')], host('h'), total).map((p) => p.id);
    assert.deepEqual(a, ['a', 'b', 'c']);
  });
});

describe('scheduler candidate search', () => {
  it('filters, ranks and keeps the best candidateParentLimit', () => {
    const peers = [
      peer('child', { host: host('h-child') }),
      peer('p1', { finishedPieceCount: 1 }),
      peer('p2', { finishedPieceCount: 8 }),
      peer('p3', { finishedPieceCount: 4 }),
      peer('empty', { finishedPieceCount: 0 }),
      peer('failed', { state: 'Failed', finishedPieceCount: 10 }),
    ];
    const dag = dagWith(...peers.map((p) => p.id).filter((id) => id !== 'child'));
    const found = findCandidateParents(child(), peers, dag, {
      filterParentLimit: 100,
      candidateParentLimit: 2,
      totalPieces: 10,
    });
    assert.deepEqual(
      found.map((p) => p.id),
      ['p2', 'p3'],
    );
  });

  it('looks at no more than filterParentLimit peers', () => {
    const peers = Array.from({ length: 50 }, (_, i) => peer(`p${i}`));
    const dag = dagWith(...peers.map((p) => p.id));
    const found = findCandidateParents(child(), peers, dag, {
      filterParentLimit: 3,
      candidateParentLimit: 20,
      totalPieces: 10,
    });
    assert.equal(found.length, 3);
  });

  it('samples without replacement', () => {
    const picked = sample(
      Array.from({ length: 20 }, (_, i) => i),
      10,
    );
    assert.equal(new Set(picked).size, 10);
  });
});

describe('scheduler seed hash ring', () => {
  it('maps a key to the same node and moves few keys when a node joins', () => {
    const ring3 = new HashRing(['s1', 's2', 's3']);
    const ring4 = new HashRing(['s1', 's2', 's3', 's4']);
    let moved = 0;
    const keys = Array.from({ length: 400 }, (_, i) => `task-${i}`);
    const used = new Set<string>();
    for (const k of keys) {
      const a = ring3.pick(k)!;
      assert.equal(a, new HashRing(['s3', 's1', 's2']).pick(k), 'order of nodes does not matter');
      used.add(a);
      if (ring4.pick(k) !== a) moved++;
    }
    assert.equal(used.size, 3, 'every node gets keys');
    assert.ok(moved < keys.length / 2, `only a share of keys moved (${moved})`);
    assert.equal(new HashRing([]).pick('x'), undefined);
  });
});
