import type { Readable } from 'node:stream';
import type { InodeAttributes } from '../format/index.js';
import { ByteSource } from './byte-source.js';
import { checkNoWhiteoutParent, normalizeEntryPath, shown, whiteoutMarkerOf } from './entry-path.js';
import { LayerFormatError, LayerSinkError } from './errors.js';
import {
  type LayerDirectory,
  type LayerStats,
  type LayerTree,
  LayerTreeBuilder,
  type LeafNode,
} from './layer-tree.js';
import { DEFAULT_LAYER_LIMITS, type LayerLimits, MAX_SYMLINK_TARGET_BYTES } from './limits.js';
import type { TarEntry } from './tar-entry.js';
import { TarReader } from './tar-reader.js';

/**
 * Receives the content of every regular file, once, in archive order, and returns the file's chunk
 * indexes (`FileNode.chunks`). It must read `content` to its end before resolving (or reject).
 */
export type FileContentSink = (content: Readable, size: number) => Promise<Array<number | null>>;

export interface ReadLayerOptions {
  signal?: AbortSignal;
  limits?: Partial<LayerLimits>;
}

/**
 * Parses one uncompressed layer tar (see `openLayerStream`) into a LayerTree, one entry at a time,
 * handing each regular file's content to `sink` as a stream. Resolves with the complete tree or
 * rejects (then `tar` is destroyed and whatever the sink produced must be discarded): the first
 * LayerFormatError, the sink's own error, or the signal's reason.
 */
export async function readLayer(
  tar: Readable,
  sink: FileContentSink,
  options: ReadLayerOptions = {},
): Promise<LayerTree> {
  const { signal } = options;
  signal?.throwIfAborted();
  const limits: LayerLimits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
  const reading = new LayerReading(new TarReader(new ByteSource(tar), limits), sink, limits);
  const onAbort = () => {
    tar.destroy(signal?.reason);
    reading.abort(signal?.reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await reading.run(signal);
  } catch (err) {
    tar.destroy();
    throw signal?.aborted ? signal.reason : err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The state of one readLayer call. */
class LayerReading {
  private readonly builder = new LayerTreeBuilder();
  private readonly stats: LayerStats = {
    entries: 0,
    regularFiles: 0,
    contentBytes: 0,
    hardLinks: 0,
    whiteouts: 0,
    opaqueMarkers: 0,
    skipped: {},
    trailingBytes: 0,
  };

  /** The content stream the sink is reading, if any. */
  private content: Readable | null = null;

  constructor(
    private readonly reader: TarReader,
    private readonly sink: FileContentSink,
    private readonly limits: LayerLimits,
  ) {}

  /** A sink busy with something else than reading still learns about the abort. */
  abort(reason: unknown): void {
    this.content?.destroy(reason as Error);
  }

  async run(signal: AbortSignal | undefined): Promise<LayerTree> {
    for (let entry = await this.reader.next(); entry !== null; entry = await this.reader.next()) {
      signal?.throwIfAborted();
      if (++this.stats.entries > this.limits.maxEntries) {
        throw new LayerFormatError('ELIMIT', `layer has more than ${this.limits.maxEntries} entries`);
      }
      await this.add(entry);
    }
    this.stats.trailingBytes = this.reader.trailingBytes;
    return { root: this.builder.root, lowerLinks: this.builder.lowerLinks, stats: this.stats };
  }

  private async add(entry: TarEntry): Promise<void> {
    if (entry.type === 'unknown') return this.skip(`typeflag ${entry.typeflag}`);
    const components = normalizeEntryPath(entry.path, 'entry');
    const name = components.at(-1);
    if (name === undefined) return this.skip('root'); // containerd ignores entries naming the root too
    const parentPath = components.slice(0, -1);
    checkNoWhiteoutParent(parentPath, entry.path);
    const marker = whiteoutMarkerOf(name, entry.path);
    const parent = this.builder.parentOf(parentPath, entry.path, marker !== null);
    if (marker?.kind === 'opaque') {
      parent.opaque = true;
      this.stats.opaqueMarkers++;
    } else if (marker?.kind === 'whiteout') {
      parent.whiteouts.add(marker.name);
      this.stats.whiteouts++;
    } else {
      await this.addInode(entry, parent, name);
    }
  }

  private async addInode(entry: TarEntry, parent: LayerDirectory, name: string): Promise<void> {
    const attributes = attributesOf(entry);
    switch (entry.type) {
      case 'directory':
        return this.builder.putDirectory(parent, name, attributes);
      case 'link':
        this.stats.hardLinks++;
        return this.builder.putHardLink(parent, name, linkTargetOf(entry), attributes, entry.path);
      case 'file':
        return this.builder.putNode(parent, name, await this.readFile(entry, attributes));
      default:
        return this.builder.putNode(parent, name, specialNodeOf(entry, attributes));
    }
  }

  private async readFile(entry: TarEntry, attributes: InodeAttributes): Promise<LeafNode> {
    const content = this.reader.content();
    this.content = content;
    // Keeps the archive's own error (truncation, abort) when the sink reports it wrapped or not at all.
    let contentError: unknown;
    content.on('error', (err) => {
      contentError ??= err;
    });
    let chunks: Array<number | null>;
    try {
      chunks = await this.sink(content, entry.dataSize);
    } catch (err) {
      throw contentError ?? err;
    } finally {
      this.content = null;
    }
    if (contentError !== undefined) throw contentError;
    if (entry.dataSize > 0 && !content.readableEnded) {
      content.destroy();
      throw new LayerSinkError(
        `the file content sink resolved before reading "${shown(entry.path)}" to its end`,
      );
    }
    this.stats.regularFiles++;
    this.stats.contentBytes += entry.dataSize;
    return { kind: 'file', size: entry.dataSize, chunks, ...attributes };
  }

  private skip(reason: string): void {
    this.stats.skipped[reason] = (this.stats.skipped[reason] ?? 0) + 1;
  }
}

function attributesOf(entry: TarEntry): InodeAttributes {
  return {
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    mtimeSec: entry.mtimeSec,
    mtimeNsec: entry.mtimeNsec,
    xattrs: entry.xattrs,
  };
}

function linkTargetOf(entry: TarEntry): string[] {
  if (entry.linkPath === '') {
    throw new LayerFormatError('ELINK', `layer hard link "${shown(entry.path)}" has no target`);
  }
  return normalizeEntryPath(entry.linkPath, `hard link target (of "${shown(entry.path)}")`);
}

function specialNodeOf(entry: TarEntry, attributes: InodeAttributes): LeafNode {
  switch (entry.type) {
    case 'symlink':
      return { kind: 'symlink', target: symlinkTargetOf(entry), ...attributes };
    case 'char':
    case 'block':
      return { kind: entry.type, rdevMajor: entry.devMajor, rdevMinor: entry.devMinor, ...attributes };
    case 'fifo':
      return { kind: 'fifo', ...attributes };
    default:
      throw new Error(`unreachable entry type ${entry.type}`);
  }
}

/** Any text is a valid target (it is never followed here); Linux refuses empty and over-long ones. */
function symlinkTargetOf(entry: TarEntry): string {
  const target = entry.linkPath;
  if (target === '')
    throw new LayerFormatError('EATTRIBUTE', `layer symlink "${shown(entry.path)}" has an empty target`);
  if (Buffer.byteLength(target) > MAX_SYMLINK_TARGET_BYTES) {
    throw new LayerFormatError(
      'ENAME_TOO_LONG',
      `layer symlink "${shown(entry.path)}" has a target longer than ${MAX_SYMLINK_TARGET_BYTES} bytes`,
    );
  }
  return target;
}
