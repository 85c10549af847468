import type { Readable } from 'node:stream';

export class ShortBodyError extends Error {}

/**
 * Reads exactly `length` bytes of a response body into one buffer allocated up front (not zero-filled),
 * instead of collecting chunks and concatenating: one copy per byte and no extra 4 MiB allocations for
 * the garbage collector to chase. Fails if the body is shorter or longer. `into` (exactly `length` bytes,
 * e.g. a pooled buffer) is filled instead of a new allocation.
 */
export async function readExactly(body: Readable, length: number, into?: Buffer): Promise<Buffer> {
  if (into && into.length !== length)
    throw new RangeError(`readExactly: buffer of ${into.length} bytes for ${length}`);
  const out = into ?? Buffer.allocUnsafe(length);
  let at = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (at + chunk.length > length) {
      body.destroy();
      throw new ShortBodyError(`body is longer than the expected ${length} bytes`);
    }
    chunk.copy(out, at);
    at += chunk.length;
  }
  if (at !== length) throw new ShortBodyError(`body ended after ${at} of ${length} bytes`);
  return out;
}
