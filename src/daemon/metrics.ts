import { Counter, Gauge, Registry } from 'prom-client';

export type TrafficType = 'p2p' | 'back_to_source';

/** Every byte the daemon moves is counted here (DESIGN.md: metrics for every byte). */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly downloadTraffic = new Counter({
    name: 'damselfly_download_traffic_bytes_total',
    help: 'Bytes downloaded, by where they came from',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly downloadPieces = new Counter({
    name: 'damselfly_download_pieces_total',
    help: 'Pieces downloaded and stored, by where they came from',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly uploadTraffic = new Counter({
    name: 'damselfly_upload_traffic_bytes_total',
    help: 'Piece bytes served to other peers',
    registers: [this.registry],
  });
  readonly uploadPieces = new Counter({
    name: 'damselfly_upload_pieces_total',
    help: 'Pieces served to other peers',
    registers: [this.registry],
  });
  readonly uploadRejected = new Counter({
    name: 'damselfly_upload_rejected_total',
    help: 'Piece requests refused because the concurrent-upload limit was reached',
    registers: [this.registry],
  });
  readonly uploadDeferred = new Counter({
    name: 'damselfly_upload_deferred_total',
    help: 'Piece requests a seed peer sent elsewhere because it had just uploaded that piece (super-seeding)',
    registers: [this.registry],
  });
  readonly pieceHedges = new Counter({
    name: 'damselfly_piece_hedges_total',
    help: 'Pieces also requested from a second parent because the first was slow (the first copy wins)',
    registers: [this.registry],
  });
  readonly concurrentUploads = new Gauge({
    name: 'damselfly_concurrent_uploads',
    help: 'Pieces being served right now',
    registers: [this.registry],
  });
  readonly pieceVerifyFailures = new Counter({
    name: 'damselfly_piece_verify_failures_total',
    help: 'Pieces from peers rejected because their digest did not match the source digest',
    registers: [this.registry],
  });
  readonly pieceFailures = new Counter({
    name: 'damselfly_piece_download_failures_total',
    help: 'Piece downloads that failed (network, timeout, refused)',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly tasks = new Counter({
    name: 'damselfly_download_tasks_total',
    help: 'Downloads requested through the daemon, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly proxyRequests = new Counter({
    name: 'damselfly_proxy_requests_total',
    help: 'Requests the mirror/proxy answered, by how: p2p, direct (passed through), refused (by the origin), tunnel and intercepted (CONNECT), error (refused by the proxy or upstream unreachable)',
    labelNames: ['via'] as const,
    registers: [this.registry],
  });
  readonly proxyServed = new Counter({
    name: 'damselfly_proxy_served_bytes_total',
    help: 'Body bytes the mirror/proxy sent to clients, by registry (the origin host for forward-proxy requests)',
    labelNames: ['registry'] as const,
    registers: [this.registry],
  });
  readonly proxyTraffic = new Counter({
    name: 'damselfly_proxy_traffic_bytes_total',
    help: 'Bytes this daemon downloaded to answer mirror/proxy requests, by registry and where they came from',
    labelNames: ['registry', 'type'] as const,
    registers: [this.registry],
  });
  readonly proxyLayerPrefetches = new Counter({
    name: 'damselfly_proxy_layer_prefetches_total',
    help: 'Layer downloads the registry mirror started ahead of the client: the later layers of a manifest whose layer a client asked for',
    registers: [this.registry],
  });
  readonly storageUsed = new Gauge({
    name: 'damselfly_storage_used_bytes',
    help: 'Bytes of task content stored',
    registers: [this.registry],
  });
}
