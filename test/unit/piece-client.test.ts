import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PieceClient, PieceClientError, parseHead } from '../../src/source/piece-client.js';

const body = (n: number, length: number) => Buffer.alloc(length, n % 251);

async function listen(server: Server | ReturnType<typeof createNetServer>): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

describe('PieceClient', () => {
  const client = new PieceClient();
  let server: Server;
  let port: number;
  let connections = 0;
  before(async () => {
    server = createHttpServer((req, res) => {
      const [, kind, n] = /^\/(\w+)\/(\d+)$/.exec(req.url ?? '') ?? [];
      const length = Number(n);
      if (kind === 'piece') res.writeHead(200, { 'content-length': length }).end(body(length, length));
      else if (kind === 'busy') res.writeHead(429, { 'content-length': 5 }).end('busy\n');
      else if (kind === 'chunked') res.writeHead(200).end(body(1, length));
      else if (kind === 'close')
        res.writeHead(200, { 'content-length': length, connection: 'close' }).end(body(length, length));
      else if (kind === 'slow')
        setTimeout(() => res.writeHead(200, { 'content-length': 1 }).end('x'), length);
      else res.writeHead(404, { 'content-length': 0 }).end();
    });
    server.on('connection', () => connections++);
    server.keepAliveTimeout = 60_000;
    port = await listen(server);
  });
  after(() => {
    client.close();
    server.close();
  });
  const get = (path: string, length: number, timeoutMs = 5000, signal?: AbortSignal) =>
    client.get({
      host: '127.0.0.1',
      port,
      path,
      timeoutMs,
      signal,
      accept: (status) => {
        if (status !== 200) throw new Error(`status ${status}`);
        return Buffer.alloc(length);
      },
    });

  it('reads each body into the buffer accept() gives, reusing one connection', async () => {
    const before = connections;
    for (const length of [1, 4 * 1024 * 1024, 100_000, 0]) {
      const got = await get(`/piece/${length}`, length);
      assert.equal(got.length, length);
      assert.ok(got.equals(body(length, length)), `body of ${length} bytes`);
    }
    assert.equal(connections - before, 1, 'one keep-alive connection for sequential pieces');
  });

  it('fills several pieces at once on separate connections', async () => {
    const lengths = [3_000_000, 2_500_000, 1_000_001, 4_194_304];
    const before = connections;
    const got = await Promise.all(lengths.map((l) => get(`/piece/${l}`, l)));
    // One request per connection at a time: at most one idle connection was there to reuse.
    assert.ok(connections - before >= lengths.length - 1, `${connections - before} new connections`);
    for (const [i, b] of got.entries()) assert.ok(b.equals(body(lengths[i]!, lengths[i]!)));
  });

  it('a refusal rejects with what accept() threw and keeps the connection', async () => {
    await get('/piece/10', 10);
    const before = connections;
    await assert.rejects(get('/busy/0', 10), /status 429/);
    await get('/piece/10', 10);
    assert.equal(connections, before, 'the refused answer was read to its end and the connection reused');
  });

  it('refuses answers it cannot frame: wrong length, chunked', async () => {
    await assert.rejects(get('/piece/10', 11), PieceClientError);
    await assert.rejects(get('/chunked/10', 10), /content-length|chunked/);
  });

  it('a parent that closes after answering, or closes an idle connection, costs nothing', async () => {
    assert.ok((await get('/close/7', 7)).equals(body(7, 7)));
    await get('/piece/5', 5);
    server.closeIdleConnections();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok((await get('/piece/5', 5)).equals(body(5, 5)), 'a new connection replaces the closed one');
  });

  it('times out, and stops when aborted', async () => {
    await assert.rejects(get('/slow/2000', 1, 100), /within 100 ms/);
    const abort = new AbortController();
    const pending = get('/slow/2000', 1, 5000, abort.signal);
    abort.abort(new Error('cancelled'));
    await assert.rejects(pending, /cancelled/);
  });
});

describe('PieceClient against a misbehaving parent', () => {
  const client = new PieceClient();
  let answer = '';
  let server: ReturnType<typeof createNetServer>;
  let port: number;
  before(async () => {
    server = createNetServer((socket: Socket) => {
      socket.on('error', () => undefined); // the client drops the connection on a bad answer
      socket.once('data', () => socket.end(answer));
    });
    port = await listen(server);
  });
  after(() => {
    client.close();
    server.close();
  });
  const get = () =>
    client.get({ host: '127.0.0.1', port, path: '/x', timeoutMs: 2000, accept: () => Buffer.alloc(4) });

  for (const [what, text, error] of [
    ['garbage', 'SSH-2.0-OpenSSH\r\n\r\n', /not an HTTP/],
    ['bytes past the body', 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcdEXTRA', /more than the body/],
    ['a head that never ends', `HTTP/1.1 200 OK\r\nx: ${'a'.repeat(20_000)}`, /head too large/],
    ['a short body', 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab', /closed/],
  ] as const) {
    it(`fails on ${what}`, async () => {
      answer = text;
      await assert.rejects(get(), error);
    });
  }

  it('parses heads', () => {
    const ok = parseHead('HTTP/1.1 429 Too Many\r\nContent-Length: 5\r\nX-A: b');
    assert.deepEqual(ok, { status: 429, headers: { 'content-length': '5', 'x-a': 'b' }, contentLength: 5 });
    assert.ok(parseHead('HTTP/1.1 200 OK') instanceof Error, 'no length');
    assert.ok(parseHead('HTTP/1.1 200 OK\r\ncontent-length: -1') instanceof Error);
    assert.ok(parseHead('HTTP/1.1 200 OK\r\nbad line\r\ncontent-length: 1') instanceof Error);
  });
});
