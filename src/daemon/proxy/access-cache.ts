import { createHash } from 'node:crypto';

/**
 * Remembers, for a short time, that the origin let a client (its credentials) read a URL, and how long
 * the content is. A lazy image mount reads one blob in hundreds of ranges; without this every range cost
 * the registry a round trip. Only "allowed" is remembered: a refusal is asked again next time. A token
 * revoked at the registry keeps working here for at most `ttlMs`.
 */
export class AccessCache {
  private readonly entries = new Map<string, { contentLength: number; expires: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Credentials are hashed into the key, never kept. */
  static key(url: string, headers: Record<string, string>): string {
    const identity = ['authorization', 'cookie'].map((h) => headers[h] ?? '').join('\0');
    return createHash('sha256').update(`${url}\0${identity}`).digest('hex');
  }

  /** The content length an earlier check allowed, or undefined. */
  get(key: string): number | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expires <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.contentLength;
  }

  allow(key: string, contentLength: number): void {
    if (this.ttlMs <= 0) return;
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { contentLength, expires: this.now() + this.ttlMs });
  }
}
