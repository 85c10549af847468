import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { registryOrigin } from '../../src/config/index.js';
import { parseByteRange } from '../../src/daemon/proxy/byte-range.js';
import {
  forwardRequestHeaders,
  forwardResponseHeaders,
  taskOriginHeaders,
} from '../../src/daemon/proxy/headers.js';
import { ProxyRules } from '../../src/daemon/proxy/rules.js';
import { pipeTaskRange, storedThrough, waitForByte } from '../../src/daemon/proxy/task-stream.js';
import { resolveUpstream } from '../../src/daemon/proxy/upstream.js';
import { TaskStorage } from '../../src/daemon/storage/index.js';
import { createLogger } from '../../src/observability/index.js';

describe('registry addresses and upstream resolution', () => {
  it('normalizes registries to origins and maps Docker Hub to its API host', () => {
    assert.equal(registryOrigin('registry.example.com'), 'https://registry.example.com');
    assert.equal(registryOrigin('http://127.0.0.1:5000'), 'http://127.0.0.1:5000');
    assert.equal(registryOrigin('HTTPS://Reg.Example.com:8443/'), 'https://reg.example.com:8443');
    assert.equal(registryOrigin('docker.io'), 'https://registry-1.docker.io');
    assert.equal(registryOrigin('[::1]:5000'), 'https://[::1]:5000');
    for (const bad of [
      'ftp://x',
      'https://u:p@x',
      'https://x/path',
      'https://x?q=1',
      '',
      'a b',
      'x:0',
      'http://docker.io',
    ]) {
      assert.throws(() => registryOrigin(bad), /invalid registry/, bad);
    }
  });

  it('takes the header first, then ns (https unless it is the default host), then the default', () => {
    const defaultOrigin = 'http://127.0.0.1:5000';
    assert.equal(
      resolveUpstream({ header: 'http://10.0.0.1:80', ns: 'ghcr.io', defaultOrigin }),
      'http://10.0.0.1',
    );
    assert.equal(resolveUpstream({ ns: 'ghcr.io', defaultOrigin }), 'https://ghcr.io');
    assert.equal(resolveUpstream({ ns: '127.0.0.1:5000', defaultOrigin }), 'http://127.0.0.1:5000');
    assert.equal(resolveUpstream({ ns: 'docker.io', defaultOrigin }), 'https://registry-1.docker.io');
    assert.equal(resolveUpstream({ defaultOrigin }), defaultOrigin);
    assert.throws(() => resolveUpstream({ ns: 'http://x', defaultOrigin }), /ns/);
    assert.throws(() => resolveUpstream({ header: 'ftp://x', defaultOrigin }), /x-damselfly-registry/);
  });
});

describe('proxy headers', () => {
  const request = {
    host: 'mirror:4001',
    connection: 'keep-alive, x-trace',
    'x-trace': '1',
    authorization: 'Bearer t',
    accept: 'application/json',
    'accept-encoding': 'gzip',
    range: 'bytes=0-9',
    'proxy-authorization': 'Basic secret',
    'x-damselfly-registry': 'http://r',
  };

  it('forwards end-to-end headers only, never the proxy credentials or our own', () => {
    assert.deepEqual(forwardRequestHeaders(request), {
      authorization: 'Bearer t',
      accept: 'application/json',
      'accept-encoding': 'gzip',
      range: 'bytes=0-9',
    });
  });

  it('gives a task the client identity but nothing that shapes one response', () => {
    assert.deepEqual(taskOriginHeaders(request), { authorization: 'Bearer t', accept: 'application/json' });
  });

  it('relays end-to-end response headers, including auth challenges', () => {
    assert.deepEqual(
      forwardResponseHeaders({
        'Transfer-Encoding': 'chunked',
        'WWW-Authenticate': 'Bearer realm="x"',
        'content-length': '3',
        connection: 'close',
      }),
      { 'www-authenticate': 'Bearer realm="x"', 'content-length': '3' },
    );
  });
});

describe('byte ranges', () => {
  it('parses single ranges, clips to the body, ignores what it cannot honour', () => {
    assert.deepEqual(parseByteRange(undefined, 100), { kind: 'whole' });
    assert.deepEqual(parseByteRange('bytes=10-19', 100), { kind: 'partial', start: 10, end: 19 });
    assert.deepEqual(parseByteRange('bytes=90-', 100), { kind: 'partial', start: 90, end: 99 });
    assert.deepEqual(parseByteRange('bytes=90-500', 100), { kind: 'partial', start: 90, end: 99 });
    assert.deepEqual(parseByteRange('bytes=-10', 100), { kind: 'partial', start: 90, end: 99 });
    assert.deepEqual(parseByteRange('bytes=-500', 100), { kind: 'partial', start: 0, end: 99 });
    assert.deepEqual(parseByteRange('bytes=100-', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseByteRange('bytes=-0', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseByteRange('bytes=0-1,5-6', 100), { kind: 'whole' });
    assert.deepEqual(parseByteRange('items=0-1', 100), { kind: 'whole' });
    assert.deepEqual(parseByteRange('bytes=20-10', 100), { kind: 'whole' });
  });
});

describe('forward-proxy rules', () => {
  it('lets the first match decide, ignores the query, and honours the force header', () => {
    const rules = new ProxyRules([
      { regex: 'private/', direct: true },
      { regex: 'blobs/sha256.*', direct: false },
    ]);
    assert.equal(rules.useP2P('http://r/v2/a/blobs/sha256:ab'), true);
    assert.equal(rules.useP2P('http://r/private/blobs/sha256:ab'), false);
    assert.equal(rules.useP2P('http://r/file?x=blobs/sha256:ab'), false);
    assert.equal(rules.useP2P('http://r/file', 'true'), true);
  });
});

describe('streaming a task as its pieces land', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  function storage(): TaskStorage {
    const dataDir = mkdtempSync(join(tmpdir(), 'damselfly-proxy-'));
    dirs.push(dataDir);
    return TaskStorage.open({
      dataDir,
      taskTtl: 0,
      capacity: 0,
      highWatermarkPercent: 80,
      lowWatermarkPercent: 60,
      logger: createLogger('proxy-test', 'silent'),
    });
  }

  const PIECE = 64 * 1024;
  const bytes = randomBytes(4 * PIECE + 100);
  const id = createHash('sha256').update('proxy-stream').digest('hex');

  function piece(n: number) {
    const data = bytes.subarray(n * PIECE, Math.min((n + 1) * PIECE, bytes.length));
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    return { record: { number: n, offset: n * PIECE, length: data.length, digest }, data };
  }

  it('writes bytes in order while pieces arrive out of order, and only stored ones', {
    timeout: 10_000,
  }, async () => {
    const s = storage();
    s.putTask(id, { url: 'https://example.com/x', contentLength: bytes.length, pieceLength: PIECE });
    let finish!: () => void;
    const done = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const out = new PassThrough();
    const received: Buffer[] = [];
    out.on('data', (c: Buffer) => received.push(c));
    const range = { start: PIECE - 10, end: 3 * PIECE + 9 };
    const piping = pipeTaskRange(s, id, range, done, out, new AbortController().signal);

    for (const n of [2, 0]) await s.writePiece(id, piece(n).record, piece(n).data);
    const received0 = () => Buffer.concat(received).length;
    while (received0() < 10) await sleep(5);
    await sleep(50); // room for a wrong write past piece 0 to show
    assert.deepEqual(
      Buffer.concat(received),
      bytes.subarray(range.start, PIECE),
      'only piece 0 is contiguous',
    );
    assert.equal(storedThrough(s, id, PIECE, bytes.length - 1), PIECE - 1);
    for (const n of [3, 1]) await s.writePiece(id, piece(n).record, piece(n).data);
    assert.equal(await piping, range.end - range.start + 1);
    assert.deepEqual(Buffer.concat(received), bytes.subarray(range.start, range.end + 1));
    finish();
    s.close();
  });

  it('fails a waiting reader when the download fails, and when the client goes away', async () => {
    const s = storage();
    s.putTask(id, { url: 'https://example.com/x', contentLength: bytes.length, pieceLength: PIECE });
    let fail!: (err: Error) => void;
    const done = new Promise<void>((_, reject) => {
      fail = reject;
    });
    const waiting = waitForByte(s, id, 0, done, new AbortController().signal);
    fail(new Error('all parents failed'));
    await assert.rejects(waiting, /all parents failed/);

    const gone = new AbortController();
    const pending = pipeTaskRange(
      s,
      id,
      { start: 0, end: 9 },
      new Promise(() => {}),
      new PassThrough(),
      gone.signal,
    );
    gone.abort();
    await assert.rejects(pending, /client went away/);
    s.close();
  });
});
