/**
 * What one `damselfly mount` process is and has done, for its API socket: state, mode (and the
 * kernel mode's backing), source and mountpoint (`/api/v1/daemon`), the metrics (`/api/v1/metrics`, `/metrics`) and the access trace
 * (`/api/v1/trace`). It also hands the filesystem its observer (trace + read latency).
 */
import type { AccessTrace } from './access-trace.js';
import type { ApiRoutes } from './api-server.js';
import type { FilesystemObserver } from './image-filesystem.js';
import { type MetricSources, MountMetrics } from './mount-metrics.js';
import type { NodePaths } from './node-paths.js';

export type MountState = 'starting' | 'filling-cache' | 'mounted' | 'unmounting';

export class MountStatus {
  state: MountState = 'starting';
  mode: 'fuse' | 'kernel' | undefined;
  /** Kernel mode: how the EROFS mount reaches the cache files (`file` or `loop`). */
  kernelBacking: 'file' | 'loop' | undefined;
  readonly metrics: MountMetrics;
  private readonly startedAt = Date.now();
  private trace: AccessTrace | undefined;

  constructor(
    readonly source: string,
    readonly mountpoint: string,
    readonly backend: string,
  ) {
    this.metrics = new MountMetrics(this.startedAt);
  }

  attach(sources: MetricSources): void {
    if (sources.trace) this.trace = sources.trace;
    this.metrics.attach(sources);
  }

  observer(trace: AccessTrace, paths: NodePaths): FilesystemObserver {
    return {
      accessed: (node) => trace.record(node, (reached) => paths.pathOf(reached)),
      readDone: (seconds, bytes, ok) => this.metrics.readDone(seconds, bytes, ok),
    };
  }

  routes(): ApiRoutes {
    return {
      metrics: () => this.metrics.snapshot(),
      prometheus: () => this.metrics.prometheus(),
      trace: () => ({
        startedAt: new Date(this.startedAt).toISOString(),
        files: (this.trace?.entries ?? []).map((record) => ({
          path: record.path,
          afterMs: record.afterMs,
          at: new Date(this.startedAt + record.afterMs).toISOString(),
        })),
      }),
      daemon: () => ({
        state: this.state,
        mode: this.mode ?? null,
        kernelBacking: this.kernelBacking ?? null,
        source: this.source,
        mountpoint: this.mountpoint,
        backend: this.backend,
        pid: process.pid,
        startedAt: new Date(this.startedAt).toISOString(),
        uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      }),
    };
  }
}
