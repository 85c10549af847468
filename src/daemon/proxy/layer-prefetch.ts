import type { DownloadRequest } from '../download/peer-task.js';

const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

/**
 * The layer digests of an image manifest (OCI, or Docker schema 2), in order; null for anything else
 * (an index or manifest list, schema 1, not JSON). Foreign layers (with `urls`) are left out: the
 * registry does not serve them.
 */
export function manifestLayers(body: Buffer): string[] | null {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof doc !== 'object' || doc === null) return null;
  const { config, layers } = doc as { config?: unknown; layers?: unknown };
  if (typeof config !== 'object' || config === null || !Array.isArray(layers)) return null;
  const digests: string[] = [];
  for (const layer of layers) {
    const { digest, urls } = (layer ?? {}) as { digest?: unknown; urls?: unknown };
    if (typeof digest === 'string' && SHA256_DIGEST.test(digest) && urls === undefined) digests.push(digest);
  }
  return digests;
}

/** One remembered manifest: its layers and which of them a follow-on prefetch has started. */
interface Manifest {
  layers: string[];
  started: Set<string>;
}

/**
 * Follow-on layer prefetch for the registry mirror. Pull clients fetch an image's manifest, then its
 * layers — skopeo and podman one at a time, containerd three at a time — so without help every node
 * works through the layers one after another, and each layer is a small swarm of its own. When a client
 * asks for a whole layer of a manifest seen here, the daemon also starts the P2P downloads of the layers
 * after it (with that request's credentials and task options), and the client's later requests join
 * them. Only later layers: a client that asks for layer k lacks the layers stacked on top of it, while
 * the ones below may be in its store already. Ranged reads (lazy mounts) never trigger it.
 */
export class LayerPrefetcher {
  /** "<repository URL> <layer digest>" → its manifest; oldest first, so eviction drops the oldest. */
  private readonly byLayer = new Map<string, Manifest>();

  constructor(
    private readonly startDownload: (request: DownloadRequest) => void,
    private readonly maxLayers = 4096,
  ) {}

  /** `repository` is the registry origin and `/v2/<name>`; `body` the manifest the registry sent. */
  rememberManifest(repository: string, body: Buffer): void {
    const layers = manifestLayers(body);
    if (!layers || layers.length < 2) return;
    const manifest: Manifest = { layers, started: new Set() };
    for (const digest of layers) {
      const key = `${repository} ${digest}`;
      this.byLayer.delete(key);
      this.byLayer.set(key, manifest);
    }
    while (this.byLayer.size > this.maxLayers) this.byLayer.delete(this.byLayer.keys().next().value!);
  }

  /**
   * A client got access to the whole blob `digest` of `repository` (`request` is its download): starts
   * the layers after it in the last manifest that listed it. Returns how many downloads were started.
   */
  followOn(repository: string, digest: string, request: DownloadRequest): number {
    if (request.range) return 0;
    const manifest = this.byLayer.get(`${repository} ${digest}`);
    if (!manifest) return 0;
    manifest.started.add(digest);
    let started = 0;
    for (const layer of manifest.layers.slice(manifest.layers.indexOf(digest) + 1)) {
      if (manifest.started.has(layer)) continue;
      manifest.started.add(layer);
      this.startDownload({ ...request, url: `${repository}/blobs/${layer}` });
      started++;
    }
    return started;
  }
}
