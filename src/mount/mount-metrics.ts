/**
 * What a mount reports, as JSON (`/api/v1/metrics`) and Prometheus text (`/metrics`, names
 * `damselfly_mount_*`). Read latency is observed live; everything else is read at scrape time from
 * the components that count it (fetcher, reader, prefetcher, trace), so the hot paths only bump
 * plain numbers.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AccessTrace } from './access-trace.js';
import type { FetchStats } from './chunk-fetcher.js';
import type { ChunkReadStats } from './chunk-reader.js';
import type { PrefetchProgress } from './prefetcher.js';

/** Seconds; FUSE reads from the page cache never get here, so the low end is a cache-file pread. */
const READ_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];

export interface MetricSources {
  fetch?: FetchStats;
  read?: ChunkReadStats;
  prefetch?: () => PrefetchProgress | undefined;
  trace?: AccessTrace;
  /** READs the FUSE reader threads answered straight from the cache files (fully cached files). */
  fastReads?: () => { reads: number; bytes: number };
}

export interface MountMetricsSnapshot {
  backend: { requests: number; bytes: number; prefetchRequests: number; prefetchBytes: number };
  chunks: { verified: number; verifyFailures: number; fetchFailures: number; cacheWriteFailures: number };
  cache: { hits: number; misses: number; hitRatio: number | null };
  reads: {
    /** All reads: `fast` ones (answered by the FUSE reader threads) included. */
    count: number;
    /** Reads of fully cached files answered by the FUSE reader threads: not in `latencySeconds`. */
    fast: number;
    errors: number;
    bytes: number;
    latencySeconds: { sum: number; buckets: Array<{ le: number | '+Inf'; count: number }> };
  };
  prefetch: PrefetchProgress | null;
  trace: { files: number };
}

export class MountMetrics {
  readonly registry = new Registry();
  private sources: MetricSources = {};
  private reads = 0;
  private readErrors = 0;
  private readBytes = 0;
  private readonly readDuration = new Histogram({
    name: 'damselfly_mount_read_duration_seconds',
    help: 'Time to answer a FUSE read (cache file or fetch)',
    buckets: READ_BUCKETS,
    registers: [this.registry],
  });

  constructor(private readonly startedAt = Date.now()) {
    this.mirrorCounters();
    this.mirrorGauges();
  }

  /** The components to read counts from (set once they exist). */
  attach(sources: MetricSources): void {
    this.sources = { ...this.sources, ...sources };
  }

  readDone(seconds: number, bytes: number, ok: boolean): void {
    this.reads++;
    this.readBytes += bytes;
    if (!ok) this.readErrors++;
    this.readDuration.observe(seconds);
  }

  async snapshot(): Promise<MountMetricsSnapshot> {
    const fetch = this.sources.fetch;
    const read = this.sources.read;
    const histogram = await this.readDuration.get();
    const buckets = histogram.values
      .filter((v) => v.metricName === 'damselfly_mount_read_duration_seconds_bucket')
      .map((v) => ({ le: v.labels.le as number | '+Inf', count: v.value }));
    const sum = histogram.values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
    return {
      backend: {
        requests: fetch?.requests ?? 0,
        bytes: fetch?.bytes ?? 0,
        prefetchRequests: fetch?.backgroundRequests ?? 0,
        prefetchBytes: fetch?.backgroundBytes ?? 0,
      },
      chunks: {
        verified: fetch?.chunks ?? 0,
        verifyFailures: fetch?.verifyFailures ?? 0,
        fetchFailures: fetch?.fetchFailures ?? 0,
        cacheWriteFailures: fetch?.cacheWriteFailures ?? 0,
      },
      cache: { hits: this.cacheHits(), misses: read?.cacheMisses ?? 0, hitRatio: this.hitRatio() },
      reads: {
        count: this.reads + this.fast().reads,
        fast: this.fast().reads,
        errors: this.readErrors,
        bytes: this.readBytes + this.fast().bytes,
        latencySeconds: { sum, buckets },
      },
      prefetch: this.sources.prefetch?.() ?? null,
      trace: { files: this.sources.trace?.entries.length ?? 0 },
    };
  }

  async prometheus(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private fast(): { reads: number; bytes: number } {
    return this.sources.fastReads?.() ?? { reads: 0, bytes: 0 };
  }

  /** Chunk pieces read from the cache file; a fast read (all cached) counts as one. */
  private cacheHits(): number {
    return (this.sources.read?.cacheHits ?? 0) + this.fast().reads;
  }

  /** Chunk pieces served from the cache file over all pieces read (null before any read). */
  private hitRatio(): number | null {
    const hits = this.cacheHits();
    const all = hits + (this.sources.read?.cacheMisses ?? 0);
    return all === 0 ? null : hits / all;
  }

  private mirrorCounters(): void {
    const counter = (name: string, help: string, value: () => number) =>
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    const fetch = () => this.sources.fetch;
    new Counter({
      name: 'damselfly_mount_backend_bytes_total',
      help: 'Stored blob bytes fetched from the backend, by purpose',
      labelNames: ['purpose'] as const,
      registers: [this.registry],
      collect() {
        const stats = fetch();
        this.reset();
        this.labels('read').inc((stats?.bytes ?? 0) - (stats?.backgroundBytes ?? 0));
        this.labels('prefetch').inc(stats?.backgroundBytes ?? 0);
      },
    });
    new Counter({
      name: 'damselfly_mount_backend_requests_total',
      help: 'Range requests sent to the backend, by purpose',
      labelNames: ['purpose'] as const,
      registers: [this.registry],
      collect() {
        const stats = fetch();
        this.reset();
        this.labels('read').inc((stats?.requests ?? 0) - (stats?.backgroundRequests ?? 0));
        this.labels('prefetch').inc(stats?.backgroundRequests ?? 0);
      },
    });
    counter(
      'damselfly_mount_chunks_verified_total',
      'Chunks fetched and verified',
      () => fetch()?.chunks ?? 0,
    );
    counter(
      'damselfly_mount_chunk_verify_failures_total',
      'Fetched chunks whose digest did not match (never served)',
      () => fetch()?.verifyFailures ?? 0,
    );
    counter(
      'damselfly_mount_chunk_fetch_failures_total',
      'Failed range requests',
      () => fetch()?.fetchFailures ?? 0,
    );
    counter(
      'damselfly_mount_cache_hits_total',
      'Chunk pieces read from the cache file (a fast read counts as one)',
      () => this.cacheHits(),
    );
    counter(
      'damselfly_mount_cache_misses_total',
      'Chunk pieces that needed a fetch',
      () => this.sources.read?.cacheMisses ?? 0,
    );
    counter(
      'damselfly_mount_read_bytes_total',
      'Bytes answered to FUSE reads',
      () => this.readBytes + this.fast().bytes,
    );
    counter(
      'damselfly_mount_fast_reads_total',
      'FUSE reads of fully cached files answered by the reader threads (not in the duration histogram)',
      () => this.fast().reads,
    );
    counter('damselfly_mount_read_errors_total', 'FUSE reads answered with an error', () => this.readErrors);
  }

  private mirrorGauges(): void {
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(value());
        },
      });
    gauge('damselfly_mount_cache_hit_ratio', 'Cache hits over chunk pieces read', () => this.hitRatio() ?? 0);
    gauge(
      'damselfly_mount_traced_files',
      'Files accessed so far',
      () => this.sources.trace?.entries.length ?? 0,
    );
    gauge(
      'damselfly_mount_uptime_seconds',
      'Seconds since the mount started',
      () => (Date.now() - this.startedAt) / 1000,
    );
    const progress = () => this.sources.prefetch?.();
    new Gauge({
      name: 'damselfly_mount_prefetch_bytes',
      help: 'Uncompressed bytes of the prefetch plan, total and done',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      collect() {
        this.labels('total').set(progress()?.bytesTotal ?? 0);
        this.labels('done').set(progress()?.bytesDone ?? 0);
      },
    });
    new Gauge({
      name: 'damselfly_mount_prefetch_state',
      help: 'Prefetch state (1 for the current one)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const current = progress()?.state ?? 'idle';
        for (const state of ['idle', 'running', 'done', 'failed', 'cancelled']) {
          this.labels(state).set(state === current ? 1 : 0);
        }
      },
    });
  }
}
