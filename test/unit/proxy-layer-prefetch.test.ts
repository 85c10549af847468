import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DownloadRequest } from '../../src/daemon/download/peer-task.js';
import { LayerPrefetcher, manifestLayers } from '../../src/daemon/proxy/layer-prefetch.js';

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const [A, B, C, D] = ['a', 'b', 'c', 'd'].map(digest) as [string, string, string, string];
const REPO = 'http://registry:5000/v2/library/app';

function manifest(layers: unknown[], extra: Record<string, unknown> = {}): Buffer {
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest('f'), size: 2 };
  return Buffer.from(JSON.stringify({ schemaVersion: 2, config, layers, ...extra }));
}
const layer = (d: string, extra: Record<string, unknown> = {}) => ({ digest: d, size: 1, ...extra });

function recorder() {
  const started: DownloadRequest[] = [];
  return { started, prefetcher: new LayerPrefetcher((r) => started.push(r)) };
}

describe('manifestLayers', () => {
  it('lists the layers of an OCI or Docker image manifest in order', () => {
    assert.deepEqual(manifestLayers(manifest([layer(A), layer(B)])), [A, B]);
    const docker = manifest([layer(C)], {
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    });
    assert.deepEqual(manifestLayers(docker), [C]);
  });

  it('leaves out foreign layers and digests that are not sha256', () => {
    const body = manifest([layer(A, { urls: ['https://elsewhere/x'] }), layer('sha512:00'), layer(B)]);
    assert.deepEqual(manifestLayers(body), [B]);
  });

  it('gives null for indexes, schema 1 and bodies that are not JSON', () => {
    const index = { schemaVersion: 2, manifests: [{ digest: A, size: 1 }] };
    assert.equal(manifestLayers(Buffer.from(JSON.stringify(index))), null);
    assert.equal(manifestLayers(Buffer.from(JSON.stringify({ schemaVersion: 1, fsLayers: [] }))), null);
    assert.equal(manifestLayers(Buffer.from('<html>')), null);
    assert.equal(manifestLayers(Buffer.from('null')), null);
  });
});

describe('LayerPrefetcher', () => {
  const request = (url: string, extra: Partial<DownloadRequest> = {}): DownloadRequest => ({
    url,
    headers: { authorization: 'Bearer t' },
    tag: 'v',
    ...extra,
  });

  it('starts the layers after the one a client asked for, once each, with its credentials and tag', () => {
    const { started, prefetcher } = recorder();
    prefetcher.rememberManifest(REPO, manifest([layer(A), layer(B), layer(C), layer(D)]));
    assert.equal(prefetcher.followOn(REPO, B, request(`${REPO}/blobs/${B}`)), 2);
    assert.deepEqual(
      started.map((r) => r.url),
      [`${REPO}/blobs/${C}`, `${REPO}/blobs/${D}`],
    );
    assert.deepEqual(started[0]!.headers, { authorization: 'Bearer t' });
    assert.equal(started[0]!.tag, 'v');
    // The client's own request for C joins the download already started; nothing starts twice.
    assert.equal(prefetcher.followOn(REPO, C, request(`${REPO}/blobs/${C}`)), 0);
    // An earlier layer asked for later still starts nothing already started.
    assert.equal(prefetcher.followOn(REPO, A, request(`${REPO}/blobs/${A}`)), 0);
    assert.equal(started.length, 2);
  });

  it('starts nothing for ranged reads, unknown layers or repositories, or a one-layer image', () => {
    const { started, prefetcher } = recorder();
    prefetcher.rememberManifest(REPO, manifest([layer(A), layer(B)]));
    assert.equal(prefetcher.followOn(REPO, A, request('x', { range: { start: 0, length: 10 } })), 0);
    assert.equal(prefetcher.followOn(REPO, C, request('x')), 0);
    assert.equal(prefetcher.followOn('http://registry:5000/v2/other', A, request('x')), 0);
    prefetcher.rememberManifest(`${REPO}2`, manifest([layer(C)]));
    assert.equal(prefetcher.followOn(`${REPO}2`, C, request('x')), 0);
    assert.equal(started.length, 0);
  });

  it('starts again after the manifest is fetched again (a later pull), and forgets the oldest layers', () => {
    const { started, prefetcher } = recorder();
    const body = manifest([layer(A), layer(B)]);
    prefetcher.rememberManifest(REPO, body);
    prefetcher.followOn(REPO, A, request('x'));
    prefetcher.rememberManifest(REPO, body);
    assert.equal(prefetcher.followOn(REPO, A, request('x')), 1);
    assert.equal(started.length, 2);

    const small = new LayerPrefetcher(() => undefined, 2);
    small.rememberManifest(REPO, manifest([layer(A), layer(B)]));
    small.rememberManifest(`${REPO}2`, manifest([layer(C), layer(D)]));
    assert.equal(small.followOn(REPO, A, request('x')), 0, 'evicted');
    assert.equal(small.followOn(`${REPO}2`, C, request('x')), 1);
  });
});
