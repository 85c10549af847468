import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ResourceStore } from './resource/index.js';

export type ScheduleResult = 'normal' | 'back_to_source' | 'failed';

/** The scheduler's Prometheus metrics, in their own registry (several components may share a process). */
export class SchedulerMetrics {
  readonly registry = new Registry();
  readonly announceHostTotal: Counter;
  readonly leaveHostTotal: Counter;
  readonly announcePeerTotal: Counter;
  readonly registerPeerTotal: Counter;
  readonly scheduleTotal: Counter<'result'>;
  readonly scheduleDuration: Histogram;
  readonly peerFinishedTotal: Counter<'type'>;
  readonly peerFailedTotal: Counter<'type'>;
  readonly seedTriggerTotal: Counter;
  readonly seedTriggerFailedTotal: Counter;
  readonly pieceFinishedTotal: Counter<'type'>;
  readonly pieceFailedTotal: Counter<'temporary'>;
  readonly gcRemovedTotal: Counter<'kind'>;

  constructor(store: ResourceStore) {
    const registers = [this.registry];
    this.announceHostTotal = new Counter({
      name: 'damselfly_scheduler_announce_host_total',
      help: 'AnnounceHost requests handled.',
      registers,
    });
    this.leaveHostTotal = new Counter({
      name: 'damselfly_scheduler_leave_host_total',
      help: 'LeaveHost requests handled.',
      registers,
    });
    this.announcePeerTotal = new Counter({
      name: 'damselfly_scheduler_announce_peer_total',
      help: 'AnnouncePeer streams opened.',
      registers,
    });
    this.registerPeerTotal = new Counter({
      name: 'damselfly_scheduler_register_peer_total',
      help: 'Peers registered.',
      registers,
    });
    this.scheduleTotal = new Counter({
      name: 'damselfly_scheduler_schedule_total',
      help: 'Scheduling outcomes: parents sent (normal), told to go to the source, or failed.',
      labelNames: ['result'],
      registers,
    });
    this.scheduleDuration = new Histogram({
      name: 'damselfly_scheduler_schedule_duration_seconds',
      help: 'Time from the start of a schedule loop (register or reschedule) to its outcome, waits included.',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.peerFinishedTotal = new Counter({
      name: 'damselfly_scheduler_peer_finished_total',
      help: 'Peers that finished their download, by where the data came from.',
      labelNames: ['type'],
      registers,
    });
    this.peerFailedTotal = new Counter({
      name: 'damselfly_scheduler_peer_failed_total',
      help: 'Peers whose download failed (reported by the peer or decided by the scheduler).',
      labelNames: ['type'],
      registers,
    });
    this.seedTriggerTotal = new Counter({
      name: 'damselfly_scheduler_seed_trigger_total',
      help: 'Downloads pushed to seed peers over SeedTasks.',
      registers,
    });
    this.seedTriggerFailedTotal = new Counter({
      name: 'damselfly_scheduler_seed_trigger_failed_total',
      help: 'Seed downloads that failed or whose seed vanished before finishing.',
      registers,
    });
    this.pieceFinishedTotal = new Counter({
      name: 'damselfly_scheduler_piece_finished_total',
      help: 'Pieces reported downloaded, by source.',
      labelNames: ['type'],
      registers,
    });
    this.pieceFailedTotal = new Counter({
      name: 'damselfly_scheduler_piece_failed_total',
      help: 'Piece downloads from a parent reported failed (temporary="false": corrupt data).',
      labelNames: ['temporary'],
      registers,
    });
    this.gcRemovedTotal = new Counter({
      name: 'damselfly_scheduler_gc_removed_total',
      help: 'Hosts, peers and tasks reclaimed by GC.',
      labelNames: ['kind'],
      registers,
    });
    new Gauge({
      name: 'damselfly_scheduler_hosts',
      help: 'Announced hosts, by type.',
      labelNames: ['type'],
      registers,
      collect() {
        let seed = 0;
        for (const h of store.hosts.values()) if (h.type === 'seed') seed++;
        this.set({ type: 'seed' }, seed);
        this.set({ type: 'normal' }, store.hosts.size - seed);
      },
    });
    new Gauge({
      name: 'damselfly_scheduler_tasks',
      help: 'Tasks in memory.',
      registers,
      collect() {
        this.set(store.tasks.size);
      },
    });
    new Gauge({
      name: 'damselfly_scheduler_peers',
      help: 'Peers in memory, by state.',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>();
        for (const t of store.tasks.values()) {
          for (const p of t.peers.values()) counts.set(p.state, (counts.get(p.state) ?? 0) + 1);
        }
        this.reset();
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
  }
}
