import { Readable } from 'node:stream';
import type { ByteSource } from './byte-source.js';
import { LayerFormatError } from './errors.js';
import type { LayerLimits } from './limits.js';
import { parsePaxRecords } from './pax-records.js';
import { buildTarEntry, type PendingExtensions, type TarEntry } from './tar-entry.js';
import { decodeHeaderBlock, isZeroBlock, TAR_BLOCK_SIZE, type TarHeaderBlock } from './tar-header.js';

/**
 * Reads a tar archive one entry at a time. The data of the current entry is available as a stream
 * (`content()`); whatever the caller leaves unread is skipped by the next `next()`.
 *
 * Policies (see the module README in index.ts):
 * - the archive must end with the end-of-archive marker (one or two zero blocks): a stream that
 *   stops at an entry boundary without it is truncated;
 * - bytes after the marker are read to the end (so a compressed stream's trailer is checked) and
 *   ignored, as containerd does; `trailingBytes` counts them;
 * - PAX global headers are skipped (containerd ignores them too);
 * - PAX and GNU long-name headers larger than `maxMetaHeaderBytes` are refused before buffering.
 */
export class TarReader {
  trailingBytes = 0;
  /** Data bytes of the current entry not yet read, and the padding after them. */
  private remaining = 0;
  private padding = 0;
  private ended = false;

  constructor(
    private readonly source: ByteSource,
    private readonly limits: LayerLimits,
  ) {}

  /** The next entry, or null after the end-of-archive marker. */
  async next(): Promise<TarEntry | null> {
    if (this.ended) return null;
    await this.skipCurrent();
    const extensions: PendingExtensions = { pax: null, longName: null, longLinkName: null };
    let pendingMeta = false;
    for (;;) {
      const offset = this.source.position;
      const block = await this.source.readExact(TAR_BLOCK_SIZE, 'a header');
      if (block === null) throw this.missingEndMarker(offset, pendingMeta);
      if (isZeroBlock(block)) {
        if (pendingMeta) {
          throw new LayerFormatError(
            'EHEADER',
            `layer tar: an extended header ends the archive at byte ${offset}`,
          );
        }
        await this.finish(offset);
        return null;
      }
      const header = decodeHeaderBlock(block, offset);
      const meta = await this.readMeta(header, offset, extensions);
      if (meta === null) {
        const entry = buildTarEntry(header, extensions, offset);
        this.startData(entry.dataSize);
        return entry;
      }
      // A global header stands alone; the others describe the entry that must follow.
      if (meta !== 'PAX global') pendingMeta = true;
    }
  }

  /** The data of the entry `next()` returned last, as a stream that pulls from the archive on demand. */
  content(): Readable {
    return new EntryContent(this);
  }

  /** Up to one source chunk of the current entry's data; null once it is all read. */
  async readData(): Promise<Buffer | null> {
    if (this.remaining === 0) return null;
    const chunk = await this.source.readSome(this.remaining);
    if (chunk === null) throw this.truncatedData();
    this.remaining -= chunk.length;
    return chunk;
  }

  private startData(size: number): void {
    this.remaining = size;
    this.padding = (TAR_BLOCK_SIZE - (size % TAR_BLOCK_SIZE)) % TAR_BLOCK_SIZE;
  }

  private async skipCurrent(): Promise<void> {
    const wanted = this.remaining + this.padding;
    if ((await this.source.skip(wanted)) < wanted) throw this.truncatedData();
    this.remaining = 0;
    this.padding = 0;
  }

  /** Consumes a meta entry into `extensions` and says which it was; null for a real entry. */
  private async readMeta(
    header: TarHeaderBlock,
    offset: number,
    extensions: PendingExtensions,
  ): Promise<MetaKind | null> {
    const kind = META_KINDS[header.typeflag];
    if (kind === undefined) return null;
    if (header.size > this.limits.maxMetaHeaderBytes) {
      throw new LayerFormatError(
        'EHEADER_TOO_LARGE',
        `layer tar: ${kind} header at byte ${offset} is ${header.size} bytes (limit ${this.limits.maxMetaHeaderBytes})`,
      );
    }
    const body =
      header.size === 0
        ? Buffer.alloc(0)
        : await this.source.readExact(header.size, `the ${kind} header at byte ${offset}`);
    if (body === null) throw this.truncatedData();
    this.startData(header.size);
    this.remaining = 0;
    await this.skipCurrent();
    if (kind === 'PAX') extensions.pax = parsePaxRecords(body, offset);
    else if (kind === 'GNU long name') extensions.longName = nulTerminated(body);
    else if (kind === 'GNU long link name') extensions.longLinkName = nulTerminated(body);
    return kind;
  }

  private async finish(offset: number): Promise<void> {
    this.ended = true;
    // Go accepts one zero block followed by the end of the stream; a second one is the norm.
    const second = await this.source.readExact(TAR_BLOCK_SIZE, 'the end-of-archive marker');
    if (second !== null && !isZeroBlock(second)) {
      throw new LayerFormatError('EHEADER', `layer tar: a zero block at byte ${offset} is followed by data`);
    }
    this.trailingBytes = await this.source.drain();
  }

  private missingEndMarker(offset: number, afterMeta: boolean): LayerFormatError {
    const what = afterMeta ? 'an extended header with no entry after it' : 'no end-of-archive marker';
    return new LayerFormatError('ETRUNCATED', `layer tar is truncated at byte ${offset}: ${what}`);
  }

  private truncatedData(): LayerFormatError {
    return new LayerFormatError(
      'ETRUNCATED',
      `layer tar is truncated at byte ${this.source.position}: an entry's data is incomplete`,
    );
  }
}

type MetaKind = 'PAX' | 'PAX global' | 'GNU long name' | 'GNU long link name';

const META_KINDS: Record<number, MetaKind> = {
  120: 'PAX', // 'x'
  103: 'PAX global', // 'g': skipped, as containerd skips it
  76: 'GNU long name', // 'L'
  75: 'GNU long link name', // 'K'
};

function nulTerminated(data: Buffer): Buffer {
  const end = data.indexOf(0);
  return end === -1 ? data : data.subarray(0, end);
}

/** Pulls the current entry's data from the archive as the consumer reads: backpressure end to end. */
class EntryContent extends Readable {
  constructor(private readonly reader: TarReader) {
    super();
  }

  override _read(): void {
    this.reader.readData().then(
      (chunk) => this.push(chunk),
      (err: unknown) => this.destroy(err as Error),
    );
  }
}
