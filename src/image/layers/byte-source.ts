import type { Readable } from 'node:stream';
import { LayerFormatError } from './errors.js';

/**
 * Pulls exact byte counts out of a stream, one source chunk at a time, so nothing is read ahead of
 * what the tar reader needs (the stream's own buffer is the only backlog: backpressure holds).
 */
export class ByteSource {
  /** Offset in the stream of the next byte handed out (for error messages). */
  position = 0;
  private readonly iterator: AsyncIterator<unknown>;
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;

  constructor(stream: Readable) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  /** Between 1 and `max` bytes (never copied), or null when the stream has ended. */
  async readSome(max: number): Promise<Buffer | null> {
    if (this.buffered === 0 && !(await this.pull())) return null;
    return this.take(Math.min(max, this.chunks[0]!.length));
  }

  /** Exactly `n` bytes; null if the stream ended before the first of them. */
  async readExact(n: number, what: string): Promise<Buffer | null> {
    while (this.buffered < n) {
      if (!(await this.pull())) {
        if (this.buffered === 0) return null;
        throw new LayerFormatError(
          'ETRUNCATED',
          `layer tar ends in the middle of ${what} at byte ${this.position + this.buffered}`,
        );
      }
    }
    if (this.chunks[0]!.length >= n) return this.take(n);
    const parts: Buffer[] = [];
    let missing = n;
    while (missing > 0) {
      const part = this.take(Math.min(missing, this.chunks[0]!.length));
      parts.push(part);
      missing -= part.length;
    }
    return Buffer.concat(parts, n);
  }

  /** Discards `n` bytes; returns how many were there (fewer only at the end of the stream). */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n) {
      const part = await this.readSome(n - skipped);
      if (part === null) break;
      skipped += part.length;
    }
    return skipped;
  }

  /** Reads to the end of the stream; returns the byte count. */
  async drain(): Promise<number> {
    return this.skip(Number.POSITIVE_INFINITY);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    const part = first.subarray(0, n);
    if (n === first.length) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    this.position += n;
    return part;
  }

  private async pull(): Promise<boolean> {
    while (!this.ended) {
      const { value, done } = await this.iterator.next();
      if (done) {
        this.ended = true;
        break;
      }
      if (!(value instanceof Uint8Array)) throw new TypeError('a layer stream must yield bytes');
      if (value.length === 0) continue;
      this.chunks.push(Buffer.from(value.buffer, value.byteOffset, value.length));
      this.buffered += value.length;
      return true;
    }
    return false;
  }
}
