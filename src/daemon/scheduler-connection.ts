import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import type { Logger } from '../observability/index.js';
import {
  createSchedulerClient,
  type Download,
  type Host,
  HostSchema,
  HostType,
  type SchedulerClient,
} from '../rpc/index.js';

export interface HostIdentity {
  ip: string;
  hostname: string;
  seedPeer: boolean;
  uploadPort: number;
  proxyPort: number;
  idc: string;
  location: string;
  concurrentUploadLimit: number;
  uploadRateLimit: number;
}

export interface HostLoad {
  concurrentUploads: number;
  uploadCount: number;
  uploadFailedCount: number;
  txBandwidth: number;
}

/**
 * "{ip}-{hostname}-{uploadPort}" (+ "-seed"): Dragonfly's "{ip}-{hostname}" plus the upload port, so
 * several daemons on one machine (tests, benchmarks, a seed next to a peer) are distinct hosts.
 */
export function hostId(identity: Pick<HostIdentity, 'ip' | 'hostname' | 'seedPeer' | 'uploadPort'>): string {
  return `${identity.ip}-${identity.hostname}-${identity.uploadPort}${identity.seedPeer ? '-seed' : ''}`;
}

/**
 * The daemon's link to its schedulers: announces the host to every scheduler periodically, picks the
 * scheduler for a task by hashing its id (tasks are sharded across schedulers, as in Dragonfly), and
 * for seed peers keeps the SeedTasks stream open to receive back-to-source triggers.
 */
export class SchedulerConnection {
  private readonly clients: { address: string; client: SchedulerClient }[];
  private readonly abort = new AbortController();
  /** Schedulers that accepted our latest announce. */
  private readonly announced = new WeakSet<SchedulerClient>();
  private readonly unreachable = new WeakSet<SchedulerClient>();
  readonly hostId: string;

  constructor(
    addresses: string[],
    private readonly identity: HostIdentity,
    private readonly load: () => HostLoad,
    private readonly announceIntervalMs: number,
    private readonly logger: Logger,
  ) {
    this.clients = addresses.map((address) => ({ address, client: createSchedulerClient(address) }));
    this.hostId = hostId(identity);
  }

  get enabled(): boolean {
    return this.clients.length > 0;
  }

  host(): Host {
    const id = this.identity;
    return create(HostSchema, {
      id: this.hostId,
      type: id.seedPeer ? HostType.SEED : HostType.NORMAL,
      hostname: id.hostname,
      ip: id.ip,
      uploadPort: id.uploadPort,
      proxyPort: id.proxyPort,
      idc: id.idc,
      location: id.location,
      concurrentUploadLimit: id.concurrentUploadLimit,
      uploadRateLimit: id.uploadRateLimit,
      ...this.load(),
    });
  }

  /** The scheduler responsible for a task. */
  clientFor(taskId: string): SchedulerClient | null {
    if (this.clients.length === 0) return null;
    const h = createHash('sha256').update(taskId.slice(0, 5)).digest().readUInt32BE(0);
    return this.clients[h % this.clients.length]!.client;
  }

  /** Announces now and then every interval; for seeds, also listens for triggers. */
  start(onSeedTask: (taskId: string, download: Download) => void): void {
    for (const { address, client } of this.clients) {
      void this.announceLoop(address, client);
      if (this.identity.seedPeer) void this.seedTaskLoop(address, client, onSeedTask);
    }
  }

  /** Announces to `client` first if it has not accepted our host yet (startup races, restarts). */
  async ensureAnnounced(client: SchedulerClient): Promise<void> {
    if (this.announced.has(client)) return;
    const entry = this.clients.find((c) => c.client === client);
    if (entry) await this.announce(entry.address, entry.client);
  }

  markUnannounced(client: SchedulerClient): void {
    this.announced.delete(client);
  }

  private async announce(address: string, client: SchedulerClient): Promise<boolean> {
    try {
      await client.announceHost(
        { host: this.host(), intervalMs: this.announceIntervalMs },
        { signal: this.abort.signal, timeoutMs: 5000 },
      );
      if (!this.announced.has(client)) this.logger.info({ scheduler: address }, 'host announced');
      this.announced.add(client);
      this.unreachable.delete(client);
      return true;
    } catch (err) {
      // Warn on the transition to unreachable, not on every retry.
      if (!this.abort.signal.aborted && !this.unreachable.has(client)) {
        this.logger.warn(
          { scheduler: address, err: (err as Error).message },
          'announce host failed; will retry',
        );
      }
      this.unreachable.add(client);
      this.announced.delete(client);
      return false;
    }
  }

  private async announceLoop(address: string, client: SchedulerClient): Promise<void> {
    while (!this.abort.signal.aborted) {
      const ok = await this.announce(address, client);
      // Retry a failed announce sooner so a restarted scheduler learns about us quickly.
      const wait = ok ? this.announceIntervalMs : Math.min(this.announceIntervalMs, 2000);
      await sleep(wait, undefined, { signal: this.abort.signal }).catch(() => undefined);
    }
  }

  private async seedTaskLoop(
    address: string,
    client: SchedulerClient,
    onSeedTask: (taskId: string, download: Download) => void,
  ): Promise<void> {
    while (!this.abort.signal.aborted) {
      try {
        if (await this.announce(address, client)) {
          for await (const trigger of client.seedTasks(
            { hostId: this.hostId },
            { signal: this.abort.signal },
          )) {
            if (trigger.download) onSeedTask(trigger.taskId, trigger.download);
          }
        }
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.logger.warn({ scheduler: address, err: (err as Error).message }, 'seed task stream broke');
      }
      await sleep(1000, undefined, { signal: this.abort.signal }).catch(() => undefined);
    }
  }

  /**
   * Stops all loops and streams, then tells every scheduler this host is leaving. In that order: with the
   * seed's SeedTasks stream still open while LeaveHost went out to a scheduler stopping at the same
   * moment, the seed's main thread spun inside this close (thread state R, no timer fired, so SIGTERM
   * ended in SIGKILL) in 7 of 10 runs of `bench/p2p.ts --peers 5 --rate 50MiB`; with the streams
   * cancelled first, in none of 3. Where exactly in the gRPC client it spun was not found.
   */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.all(
      this.clients.map(({ client }) =>
        client.leaveHost({ hostId: this.hostId }, { timeoutMs: 2000 }).catch(() => undefined),
      ),
    );
  }
}
