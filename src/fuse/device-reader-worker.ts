/**
 * One reader thread: blocking read(2) of /dev/fuse in a loop, each request copied into its own
 * ArrayBuffer and transferred to the main thread. Blocking here costs a thread of our own instead
 * of one of libuv's four shared threadpool threads (see docs/fuse.md, "Threading").
 *
 * Fast reads: a READ of a node the filesystem published a content map for (see content-map.ts) is
 * answered here — one pread of the local file into a reusable buffer, one write(2) of header + data
 * — without a trip through the main thread. Maps arrive as messages, polled with
 * receiveMessageOnPort (this thread's event loop never runs). Anything unexpected (no map yet, a
 * failed pread) goes to the main thread as before, which answers it the slow way.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { type ContentMap, type ContentMapMessage, validContentMap } from './content-map.js';
import type { ReaderEnd, ReaderWorkerData } from './device-reader.js';

/**
 * ENOENT: the request was interrupted and dropped between poll and copy; EINTR/EAGAIN: a signal or
 * a spurious wake-up. The kernel has simply nothing for us yet: read again (as libfuse does).
 */
const RETRY = new Set(['ENOENT', 'EINTR', 'EAGAIN']);

const OPCODE_READ = 15;
const IN_HEADER = 40;
const READ_IN = 40;
const OUT_HEADER = 16;
const TWO_32 = 2 ** 32;

interface OpenedMap {
  content: ContentMap;
  fds: number[];
}

class FastReads {
  private readonly maps = new Map<number, OpenedMap>();
  private readonly fds = new Map<string, number>();
  private readonly reply: Buffer;
  private readonly stats: Float64Array;

  constructor(
    private readonly port: NonNullable<typeof parentPort>,
    private readonly fd: number,
    data: ReaderWorkerData,
  ) {
    this.reply = Buffer.allocUnsafe(OUT_HEADER + data.maxRead);
    this.stats = new Float64Array(data.stats, data.slot * 2 * 8, 2);
  }

  /** True when the request was a READ this thread answered. */
  serve(request: Buffer, length: number): boolean {
    if (length < IN_HEADER + READ_IN || request.readUInt32LE(4) !== OPCODE_READ) return false;
    const high = request.readUInt32LE(20);
    if (high >= 2 ** 21) return false;
    const nodeid = high * TWO_32 + request.readUInt32LE(16);
    let map = this.maps.get(nodeid);
    if (map === undefined) {
      this.poll();
      map = this.maps.get(nodeid);
      if (map === undefined) return false;
    }
    const offsetHigh = request.readUInt32LE(IN_HEADER + 12);
    if (offsetHigh >= 2 ** 21) return false;
    const offset = offsetHigh * TWO_32 + request.readUInt32LE(IN_HEADER + 8);
    const size = request.readUInt32LE(IN_HEADER + 16);
    const end = Math.min(map.content.size, offset + size);
    const total = Math.max(0, end - offset);
    if (total > this.reply.length - OUT_HEADER) return false;
    try {
      this.fill(map, offset, end);
    } catch {
      return false; // the main thread answers it (and reports what is wrong)
    }
    const reply = this.reply;
    reply.writeUInt32LE(OUT_HEADER + total, 0);
    reply.writeInt32LE(0, 4);
    request.copy(reply, 8, 8, 16); // unique
    try {
      writeSync(this.fd, reply, 0, OUT_HEADER + total);
    } catch {
      // ENOENT: the caller was interrupted; ENODEV: the connection is over (the next read says so).
    }
    this.stats[0]! += 1;
    this.stats[1]! += total;
    return true;
  }

  close(): void {
    for (const fd of this.fds.values()) {
      try {
        closeSync(fd);
      } catch {}
    }
  }

  private fill({ content, fds }: OpenedMap, offset: number, end: number): void {
    const { extents } = content;
    let lo = 0;
    let hi = extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (extents[mid]!.offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    let out = OUT_HEADER;
    for (let at = offset, i = lo; at < end; i++) {
      const extent = extents[i]!;
      const within = at - extent.offset;
      const n = Math.min(extent.length - within, end - at);
      if (extent.file === undefined) this.reply.fill(0, out, out + n);
      else preadFully(fds[extent.file]!, this.reply, out, n, (extent.position as number) + within);
      at += n;
      out += n;
    }
  }

  private poll(): void {
    for (
      let received = receiveMessageOnPort(this.port);
      received;
      received = receiveMessageOnPort(this.port)
    ) {
      const message = received.message as ContentMapMessage;
      if (message?.map) this.add(message.map.nodeid, message.map.content);
    }
  }

  private add(nodeid: number, content: ContentMap): void {
    if (this.maps.has(nodeid) || !validContentMap(content)) return;
    const fds: number[] = [];
    for (const file of content.files) {
      const fd = this.open(file.path, file.dev, file.ino);
      if (fd === undefined) return;
      fds.push(fd);
    }
    this.maps.set(nodeid, { content, fds });
  }

  /** The file by path, only if it is still the inode the filesystem vouched for. */
  private open(path: string, dev: number, ino: number): number | undefined {
    const key = `${dev}:${ino}`;
    const known = this.fds.get(key);
    if (known !== undefined) return known;
    let fd: number | undefined;
    try {
      fd = openSync(path, 'r');
      const st = fstatSync(fd);
      if (st.dev !== dev || st.ino !== ino) throw new Error('replaced');
      this.fds.set(key, fd);
      return fd;
    } catch {
      if (fd !== undefined) closeSync(fd);
      return undefined;
    }
  }
}

function preadFully(fd: number, into: Buffer, at: number, length: number, position: number): void {
  for (let done = 0; done < length; ) {
    const n = readSync(fd, into, at + done, length - done, position + done);
    if (n === 0) throw new Error('short file');
    done += n;
  }
}

function readLoop(port: NonNullable<typeof parentPort>, data: ReaderWorkerData): void {
  const { fd, bufferSize } = data;
  const buffer = Buffer.allocUnsafe(bufferSize);
  const fast = new FastReads(port, fd, data);
  for (;;) {
    let length: number;
    try {
      length = readSync(fd, buffer, 0, bufferSize, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      if (RETRY.has(code)) continue;
      // ENODEV (unmounted or aborted) is the normal end; anything else is reported as it is.
      fast.close();
      port.postMessage({ end: code } satisfies ReaderEnd);
      return;
    }
    if (length === 0) {
      fast.close();
      port.postMessage({ end: 'EOF' } satisfies ReaderEnd);
      return;
    }
    if (fast.serve(buffer, length)) continue;
    const request = new Uint8Array(length);
    request.set(buffer.subarray(0, length));
    port.postMessage(request, [request.buffer]);
  }
}

if (parentPort) readLoop(parentPort, workerData as ReaderWorkerData);
