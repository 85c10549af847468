/**
 * Blob ranges from the image's registry: one HTTP Range request per fetch through our RegistryClient
 * (auth from the docker config, token caching, retries, plain http as configured). The p2p backend is the
 * same code with a client that talks to the local daemon's registry mirror, which serves the ranges from
 * the P2P network after checking the client's access with the registry.
 */
import type { BlobInfo } from '../image/format/index.js';
import { formatReference, type ImageReference, type RegistryClient } from '../image/oci/index.js';
import type { ChunkBackend } from './chunk-backend.js';
import { ChunkFetchError } from './errors.js';

export class RegistryBackend implements ChunkBackend {
  readonly name: string;

  constructor(
    private readonly client: RegistryClient,
    /** The image's repository: blobs are fetched from `<registry>/<repository>`. */
    private readonly ref: ImageReference,
    kind: 'registry' | 'p2p' = 'registry',
  ) {
    this.name = `${kind} ${formatReference(ref)}`;
  }

  async readRange(blob: BlobInfo, offset: number, length: number, signal: AbortSignal): Promise<Buffer> {
    try {
      return await this.client.readBlobRange(this.ref, blob.digest, offset, length, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      throw new ChunkFetchError(
        `${this.name}: blob ${blob.digest} bytes ${offset}+${length}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
}
