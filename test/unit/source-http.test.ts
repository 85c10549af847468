/**
 * Ranges of plain-HTTP origins (source/http.ts): the piece client asks for them (exact wire format,
 * Content-Range checked), and whatever it does not speak — a redirect, a chunked answer — is left to
 * undici, so every origin still works.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { fetchRange, SourceError } from '../../src/source/index.js';

const content = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** An origin whose answer is chosen per test; it records each request's raw headers. */
async function origin(handler: Handler): Promise<{ url: string; seen: string[][]; server: Server }> {
  const seen: string[][] = [];
  const server = createServer((req, res) => {
    seen.push(req.rawHeaders);
    handler(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

function range(req: IncomingMessage): [number, number] {
  const [, a, b] = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '') ?? [];
  return [Number(a), Number(b)];
}

function partial(res: ServerResponse, start: number, end: number, claimed = `${start}-${end}`): void {
  res.writeHead(206, {
    'content-range': `bytes ${claimed}/${content.length}`,
    'content-length': end - start + 1,
  });
  res.end(content.subarray(start, end + 1));
}

describe('fetchRange from plain-HTTP origins', () => {
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });
  const start = async (handler: Handler) => {
    const o = await origin(handler);
    servers.push(o.server);
    return o;
  };

  it('asks with exactly Host, the caller headers and Range, and gets the bytes', async () => {
    const o = await start((req, res) => partial(res, ...range(req)));
    const into = Buffer.alloc(100);
    const got = await fetchRange(
      `${o.url}/blob?x=1`,
      { authorization: 'Bearer t' },
      1000,
      100,
      undefined,
      into,
    );
    assert.equal(got, into, 'filled the buffer given');
    assert.deepEqual(got, content.subarray(1000, 1100));
    const host = new URL(o.url).host;
    assert.deepEqual(o.seen[0], ['Host', host, 'authorization', 'Bearer t', 'range', 'bytes=1000-1099']);
  });

  it('refuses an answer for another range than the one asked', async () => {
    const o = await start((req, res) => {
      const [a, b] = range(req);
      partial(res, a, b, `${a + 1}-${b + 1}`);
    });
    await assert.rejects(fetchRange(`${o.url}/blob`, {}, 0, 10), (err: unknown) => {
      assert.ok(err instanceof SourceError);
      assert.match(err.message, /asked bytes 0-9, got bytes 1-10/);
      return true;
    });
  });

  it('follows a redirect (through undici) and keeps working', async () => {
    const o = await start((req, res) => {
      if (req.url === '/old') {
        res.writeHead(302, { location: '/new', 'content-length': 0 });
        res.end();
      } else partial(res, ...range(req));
    });
    assert.deepEqual(await fetchRange(`${o.url}/old`, {}, 10, 20), content.subarray(10, 30));
    assert.deepEqual(await fetchRange(`${o.url}/old`, {}, 30, 20), content.subarray(30, 50));
  });

  it('takes a chunked answer (through undici)', async () => {
    const o = await start((req, res) => {
      const [a, b] = range(req);
      res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${content.length}` }); // no length: chunked
      res.write(content.subarray(a, a + 1));
      res.end(content.subarray(a + 1, b + 1));
    });
    assert.deepEqual(await fetchRange(`${o.url}/blob`, {}, 5, 50), content.subarray(5, 55));
  });

  it('reports the status of a refusal, permanent for a 404', async () => {
    const o = await start((_req, res) => {
      res.writeHead(404, { 'content-length': 9 });
      res.end('not found');
    });
    await assert.rejects(fetchRange(`${o.url}/gone`, {}, 0, 10), (err: unknown) => {
      assert.ok(err instanceof SourceError);
      assert.equal(err.status, 404);
      assert.ok(err.permanent);
      return true;
    });
  });

  it('never sends a header that would break the request head', async () => {
    const o = await start((req, res) => partial(res, ...range(req)));
    await assert.rejects(fetchRange(`${o.url}/blob`, { 'x-a': 'b\r\nx-evil: 1' }, 0, 10), SourceError);
    assert.equal(o.seen.length, 0, 'nothing reached the origin');
  });
});
