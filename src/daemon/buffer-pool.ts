/**
 * Reusable piece buffers. A daemon moves every byte through a piece-sized buffer (received from a parent
 * or the origin, hashed, written; or read from storage and uploaded); allocating a fresh 4 MiB buffer per
 * piece made the garbage collector and the kernel (fresh pages are faulted in and zeroed) the largest CPU
 * cost per byte. Buffers come in power-of-two capacities; `take` returns a view of exactly the length asked.
 *
 * The memory is shared (SharedArrayBuffer) so that a worker thread can hash a piece in place
 * (piece-hasher.ts).
 *
 * Lifetime rule: `give` a buffer back only when nothing reads or writes it any more (its file write and
 * socket write have completed, and no caller keeps a reference). A buffer given back twice is ignored.
 */
export class BufferPool {
  private readonly free = new Map<number, SharedArrayBuffer[]>();
  /** Buffers this pool made and that are out (taken): only these are accepted back. */
  private readonly out = new WeakSet<SharedArrayBuffer>();
  private freeBytes = 0;

  constructor(
    /** Bytes kept in free buffers at most; what is given back beyond that is left to the GC. */
    private readonly maxFreeBytes: number,
    private readonly minCapacity = 64 * 1024,
  ) {}

  take(length: number): Buffer {
    const capacity = this.capacityFor(length);
    const list = this.free.get(capacity);
    let ab = list?.pop();
    if (ab) this.freeBytes -= capacity;
    else ab = new SharedArrayBuffer(capacity);
    this.out.add(ab);
    return Buffer.from(ab, 0, length);
  }

  give(buf: Uint8Array | null | undefined): void {
    if (!buf) return;
    const ab = buf.buffer;
    if (!(ab instanceof SharedArrayBuffer) || !this.out.has(ab)) return;
    this.out.delete(ab);
    if (this.freeBytes + ab.byteLength > this.maxFreeBytes) return;
    const list = this.free.get(ab.byteLength) ?? [];
    list.push(ab);
    this.free.set(ab.byteLength, list);
    this.freeBytes += ab.byteLength;
  }

  private capacityFor(length: number): number {
    let c = this.minCapacity;
    while (c < length) c *= 2;
    return c;
  }
}

/**
 * The daemon's pool for piece bodies. 96 MiB of free buffers covers the pieces in flight of a few
 * concurrent downloads and uploads at the usual 4–16 MiB piece lengths.
 */
export const pieceBuffers = new BufferPool(96 * 1024 * 1024);
