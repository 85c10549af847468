import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LayerPrefetcher } from './layer-prefetch.js';
import type { P2PResponder } from './p2p-responder.js';
import { ProxyRequestError } from './proxy-error.js';
import { REGISTRY_HEADER, resolveUpstream, UpstreamError } from './upstream.js';

/** A blob by sha256 digest: content-addressed, so the same for every client allowed to read it. */
const BLOB = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/;
const MANIFEST = /^\/v2\/(.+)\/manifests\/[^/]+$/;
/** Registries refuse manifests above 4 MiB (OCI distribution spec); larger answers are not kept. */
const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

/**
 * The registry mirror (requests in origin form, `/v2/...`). Blob GETs by digest become P2P tasks; the
 * `/v2/` ping, manifests, tags, HEADs and everything else pass straight through with the client's
 * headers, so the registry's own answers (auth challenges included) reach the client unchanged.
 */
export class RegistryMirror {
  constructor(
    private readonly p2p: P2PResponder,
    private readonly defaultOrigin: string,
    /** Absent: no follow-on layer prefetch (`proxy.registryMirror.prefetchLayers: false`). */
    private readonly prefetcher?: LayerPrefetcher,
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mirror.invalid');
    if (url.pathname !== '/v2' && !url.pathname.startsWith('/v2/')) {
      throw new ProxyRequestError(404, 'NAME_UNKNOWN', `not a registry API path: ${url.pathname}`);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      throw new ProxyRequestError(
        405,
        'UNSUPPORTED',
        `the mirror is read-only: ${req.method} is not allowed`,
      );
    }
    let upstream: string;
    try {
      upstream = resolveUpstream({
        header: single(req.headers[REGISTRY_HEADER]),
        ns: url.searchParams.get('ns') ?? undefined,
        defaultOrigin: this.defaultOrigin,
      });
    } catch (err) {
      if (err instanceof UpstreamError) throw new ProxyRequestError(400, 'UNSUPPORTED', err.message);
      throw err;
    }
    url.searchParams.delete('ns');
    const registry = new URL(upstream).host;
    const blob = BLOB.exec(url.pathname);
    if (req.method === 'GET' && blob) {
      const name = blob[1]!;
      const digest = blob[2]!;
      const repository = `${upstream}/v2/${name}`;
      return this.p2p.serve(
        req,
        res,
        {
          url: upstream + url.pathname,
          registry,
          headers: { 'docker-content-digest': digest },
          onStarted: (request) => this.prefetcher?.followOn(repository, digest, request),
        },
        signal,
      );
    }
    const manifest = req.method === 'GET' && this.prefetcher ? MANIFEST.exec(url.pathname) : null;
    const tap = manifest
      ? {
          maxBytes: MANIFEST_MAX_BYTES,
          onBody: (body: Buffer) => this.prefetcher?.rememberManifest(`${upstream}/v2/${manifest[1]}`, body),
        }
      : undefined;
    const get = { url: upstream + url.pathname + url.search, registry };
    return this.p2p.passThrough(req, res, get, signal, tap);
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
