import { create } from '@bufbuild/protobuf';
import { type Host as HostMessage, HostSchema, HostType } from '../../rpc/index.js';
import type { Peer } from './peer.js';

/** Used when a daemon announces without an interval (Dragonfly's default announce interval). */
export const DEFAULT_ANNOUNCE_INTERVAL_MS = 300_000;

export type HostKind = 'normal' | 'seed';

/** A daemon as last announced, plus the upload counters the scheduler keeps between announces. */
export class Host {
  type: HostKind = 'normal';
  hostname = '';
  ip = '';
  uploadPort = 0;
  proxyPort = 0;
  concurrentUploadLimit = 0;
  uploadRateLimit = 0;
  idc = '';
  location = '';
  concurrentUploads = 0;
  uploadCount = 0;
  uploadFailedCount = 0;
  txBandwidth = 0;
  announceIntervalMs = DEFAULT_ANNOUNCE_INTERVAL_MS;
  lastAnnounceAt = 0;
  /** Peers (of any task) living on this host. */
  readonly peers = new Set<Peer>();

  constructor(readonly id: string) {}

  /** Applies an announce: every field is replaced by what the daemon reports. */
  update(msg: HostMessage, intervalMs: number, now: number): void {
    this.type = msg.type === HostType.SEED ? 'seed' : 'normal';
    this.hostname = msg.hostname;
    this.ip = msg.ip;
    this.uploadPort = msg.uploadPort;
    this.proxyPort = msg.proxyPort;
    this.concurrentUploadLimit = msg.concurrentUploadLimit;
    this.uploadRateLimit = msg.uploadRateLimit;
    this.idc = msg.idc;
    this.location = msg.location;
    this.concurrentUploads = msg.concurrentUploads;
    this.uploadCount = msg.uploadCount;
    this.uploadFailedCount = msg.uploadFailedCount;
    this.txBandwidth = msg.txBandwidth;
    this.announceIntervalMs = intervalMs > 0 ? intervalMs : DEFAULT_ANNOUNCE_INTERVAL_MS;
    this.lastAnnounceAt = now;
  }

  /** Dead after two missed announces. */
  isDead(now: number): boolean {
    return now - this.lastAnnounceAt > 2 * this.announceIntervalMs;
  }

  toProto(): HostMessage {
    return create(HostSchema, {
      id: this.id,
      type: this.type === 'seed' ? HostType.SEED : HostType.NORMAL,
      hostname: this.hostname,
      ip: this.ip,
      uploadPort: this.uploadPort,
      proxyPort: this.proxyPort,
      concurrentUploadLimit: this.concurrentUploadLimit,
      uploadRateLimit: this.uploadRateLimit,
      idc: this.idc,
      location: this.location,
      concurrentUploads: this.concurrentUploads,
      uploadCount: this.uploadCount,
      uploadFailedCount: this.uploadFailedCount,
      txBandwidth: this.txBandwidth,
    });
  }
}
