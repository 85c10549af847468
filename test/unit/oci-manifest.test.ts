import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  layerCompression,
  MAX_MANIFEST_BYTES,
  ManifestInvalidError,
  OCI_INDEX,
  OCI_MANIFEST,
  parseImageConfig,
  parseManifest,
  UnsupportedMediaTypeError,
} from '../../src/image/oci/index.js';

const DIGEST = `sha256:${'b'.repeat(64)}`;
const descriptor = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: DIGEST, size: 10 };
const manifest = (extra: object = {}) =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      config: { ...descriptor, mediaType: 'application/vnd.oci.image.config.v1+json' },
      layers: [descriptor],
      ...extra,
    }),
  );

describe('manifest parsing', () => {
  it('takes the media type from Content-Type, ignoring parameters', () => {
    const parsed = parseManifest(manifest(), `${OCI_MANIFEST}; charset=utf-8`);
    assert.equal(parsed.kind, 'manifest');
    assert.equal(parsed.mediaType, OCI_MANIFEST);
    assert.equal(
      parseManifest(manifest({ mediaType: DOCKER_MANIFEST }), DOCKER_MANIFEST).mediaType,
      DOCKER_MANIFEST,
    );
  });

  it('falls back to the document for generic or missing Content-Type', () => {
    assert.equal(
      parseManifest(manifest({ mediaType: DOCKER_MANIFEST }), 'application/json').mediaType,
      DOCKER_MANIFEST,
    );
    assert.equal(parseManifest(manifest(), undefined).mediaType, OCI_MANIFEST);
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
    assert.equal(parseManifest(index, 'text/plain').mediaType, OCI_INDEX);
    const list = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: DOCKER_MANIFEST_LIST, manifests: [] }),
    );
    assert.equal(parseManifest(list, undefined).kind, 'index');
  });

  it('names unsupported media types', () => {
    for (const type of [
      'application/vnd.docker.distribution.manifest.v1+prettyjws',
      'application/vnd.oci.artifact.manifest.v1+json',
    ]) {
      assert.throws(
        () => parseManifest(Buffer.from('{"schemaVersion":1}'), type),
        (err: unknown) => err instanceof UnsupportedMediaTypeError && err.mediaType === type,
      );
    }
  });

  it('rejects documents that break the spec, saying where', () => {
    const cases: Array<[Buffer, string | undefined, RegExp]> = [
      [Buffer.from('not json'), OCI_MANIFEST, /not JSON/],
      [manifest({ schemaVersion: 1 }), OCI_MANIFEST, /schemaVersion/],
      [manifest({ layers: [{ ...descriptor, digest: 'sha256:XYZ' }] }), OCI_MANIFEST, /layers\.0\.digest/],
      [manifest({ layers: [{ ...descriptor, size: -1 }] }), OCI_MANIFEST, /layers\.0\.size/],
      [
        manifest({ layers: [{ ...descriptor, mediaType: 'nonsense' }] }),
        OCI_MANIFEST,
        /layers\.0\.mediaType/,
      ],
      [manifest({ mediaType: OCI_INDEX }), OCI_MANIFEST, /declares media type/],
      [Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: 'x' })), OCI_INDEX, /manifests/],
      [Buffer.alloc(MAX_MANIFEST_BYTES + 1, 32), OCI_MANIFEST, /larger than/],
    ];
    for (const [bytes, type, message] of cases) {
      assert.throws(
        () => parseManifest(bytes, type),
        (err: unknown) => err instanceof ManifestInvalidError && message.test(err.message),
        String(message),
      );
    }
  });

  it('knows how layers are compressed', () => {
    assert.equal(layerCompression('application/vnd.oci.image.layer.v1.tar'), 'none');
    assert.equal(layerCompression('application/vnd.oci.image.layer.v1.tar+zstd'), 'zstd');
    assert.equal(layerCompression('application/vnd.docker.image.rootfs.diff.tar.gzip'), 'gzip');
    assert.throws(
      () => layerCompression('application/vnd.cncf.helm.chart.content.v1.tar+gzip'),
      UnsupportedMediaTypeError,
    );
  });

  it('validates image configs', () => {
    const config = {
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [DIGEST] },
      extra: 1,
    };
    assert.deepEqual(parseImageConfig(Buffer.from(JSON.stringify(config))).rootfs.diff_ids, [DIGEST]);
    assert.throws(
      () =>
        parseImageConfig(
          Buffer.from(JSON.stringify({ ...config, rootfs: { type: 'layers', diff_ids: ['x'] } })),
        ),
      ManifestInvalidError,
    );
  });
});
