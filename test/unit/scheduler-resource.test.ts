import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { DownloadSchema, HostSchema, HostType, PieceSchema } from '../../src/rpc/index.js';
import { type Peer, type RemovalReason, ResourceStore } from '../../src/scheduler/resource/index.js';

const download = create(DownloadSchema, { url: 'http://origin/f' });

function setup() {
  const removed: [string, RemovalReason][] = [];
  const store = new ResourceStore({ peerRemoved: (p, reason) => removed.push([p.id, reason]) });
  const announce = (id: string, now: number, intervalMs = 1000) =>
    store.announceHost(create(HostSchema, { id, ip: '10.0.0.1', type: HostType.NORMAL }), intervalMs, now);
  return { store, removed, announce };
}

describe('scheduler resources and GC', () => {
  it('a host is dead after two missed announce intervals, and its peers go with it', () => {
    const { store, removed, announce } = setup();
    const h = announce('h1', 0, 1000);
    const task = store.getOrCreateTask('t1', download, 0);
    store.addPeer(task, h, 'p1', download, 0);
    assert.deepEqual(store.gc(2000, { peerTtl: 1e9, taskTtl: 1e9 }).hosts, []);
    const r = store.gc(2001, { peerTtl: 1e9, taskTtl: 1e9 });
    assert.deepEqual(r.hosts, ['h1']);
    assert.equal(store.hosts.size, 0);
    assert.equal(task.peers.size, 0);
    assert.equal(task.dag.has('p1'), false);
    assert.deepEqual(removed, [['p1', 'host-gone']]);
  });

  it('a re-announce keeps the host alive and updates its load', () => {
    const { store, announce } = setup();
    announce('h1', 0, 1000);
    store.announceHost(
      create(HostSchema, { id: 'h1', ip: '10.0.0.1', type: HostType.SEED, concurrentUploads: 7 }),
      1000,
      1900,
    );
    assert.deepEqual(store.gc(3000, { peerTtl: 1e9, taskTtl: 1e9 }).hosts, []);
    assert.equal(store.hosts.get('h1')?.type, 'seed');
    assert.equal(store.hosts.get('h1')?.concurrentUploads, 7);
  });

  it('removes Failed peers, idle peers past peerTtl, then tasks without peers past taskTtl', () => {
    const { store, announce } = setup();
    const h = announce('h1', 0, 1e9);
    const task = store.getOrCreateTask('t1', download, 0);
    const failed: Peer = store.addPeer(task, h, 'failed', download, 0);
    failed.state = 'Failed';
    const idle = store.addPeer(task, h, 'idle', download, 0);
    idle.state = 'Succeeded';
    const busy = store.addPeer(task, h, 'busy', download, 0);
    busy.state = 'Running';
    busy.updatedAt = 900;
    const limits = { peerTtl: 500, taskTtl: 1000 };
    const r = store.gc(1000, limits);
    assert.equal(r.peers, 2);
    assert.deepEqual([...task.peers.keys()], ['busy']);
    assert.equal(idle.state, 'Leave');
    assert.equal(store.gc(1500, limits).peers, 1, 'busy idles out too');
    assert.equal(task.emptySince, 1500);
    assert.equal(store.gc(2400, limits).tasks, 0, 'the task is kept for taskTtl');
    assert.equal(store.gc(2501, limits).tasks, 1);
    assert.equal(store.tasks.size, 0);
  });

  it('a re-register with the same peer id replaces the old peer', () => {
    const { store, removed, announce } = setup();
    const h = announce('h1', 0);
    const task = store.getOrCreateTask('t1', download, 0);
    const first = store.addPeer(task, h, 'p', download, 0);
    const second = store.addPeer(task, h, 'p', download, 1);
    assert.notEqual(first, second);
    assert.equal(task.peers.get('p'), second);
    assert.equal(first.state, 'Leave');
    assert.deepEqual(removed, [['p', 'replaced']]);
    assert.equal(h.peers.size, 1);
  });

  it('task info counts pieces from the lengths and lists recorded digests in order', () => {
    const { store } = setup();
    const task = store.getOrCreateTask('t1', download, 0);
    assert.equal(task.toInfo().contentLength, -1);
    task.contentLength = 10;
    task.pieceLength = 4;
    assert.equal(task.pieceCount, 3);
    assert.equal(task.recordPiece(create(PieceSchema, { number: 2, digest: 'sha256:b' })), true);
    assert.equal(task.recordPiece(create(PieceSchema, { number: 0, digest: 'sha256:a' })), true);
    assert.equal(
      task.recordPiece(create(PieceSchema, { number: 0, digest: 'sha256:other' })),
      false,
      'first wins',
    );
    assert.deepEqual(
      task.toInfo().pieces.map((p) => [p.number, p.digest]),
      [
        [0, 'sha256:a'],
        [2, 'sha256:b'],
      ],
    );
  });
});
