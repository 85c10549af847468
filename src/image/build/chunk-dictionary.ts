/**
 * The image-wide chunk table while an image is being built: every unique chunk (by sha256 of its
 * uncompressed bytes) and the blobs they live in. A chunk seen again anywhere in the image — or
 * present in a `--chunk-dict` bootstrap — is referenced, not stored again.
 *
 * Indexes handed out while building are provisional: `compact()` drops what no file references
 * (unused dict chunks and blobs, blobs that got no chunk) and renumbers, remapping the tree.
 */
import type {
  BlobInfo,
  ChunkInfo,
  DirectoryNode,
  FileNode,
  ImageBootstrap,
  TreeNode,
} from '../format/index.js';
import { ImageBuildError } from './errors.js';

/** How the chunks of the files in an image were obtained. Bytes are uncompressed unless named so. */
export interface DedupFigures {
  /** Chunk slots of files pointing at a stored chunk (hard-linked files counted once). */
  referencedChunks: number;
  referencedBytes: number;
  /** All-zero chunk slots, stored as holes. */
  holeChunks: number;
  holeBytes: number;
  /** Chunks written to this build's blobs. */
  storedChunks: number;
  storedBytes: number;
  storedCompressedBytes: number;
  /** References to a chunk this build had already stored (same content elsewhere in the image). */
  reusedInImageChunks: number;
  reusedInImageBytes: number;
  /** References to a chunk of the chunk dictionary (its blob is referenced, not copied). */
  reusedFromDictChunks: number;
  reusedFromDictBytes: number;
}

export interface CompactedTables {
  blobs: BlobInfo[];
  chunks: ChunkInfo[];
  /** How many of `blobs` (and which, by new index) come from the chunk dictionary. */
  dictBlobIndexes: number[];
  droppedBlobs: number;
  droppedChunks: number;
}

/** A blob slot that a `BlobBuilder` is still writing. */
const PENDING = 'pending';
/** A blob slot whose builder stored nothing: no blob, dropped on compaction. */
const EMPTY = 'empty';
type BlobSlot = BlobInfo | typeof PENDING | typeof EMPTY;

const digestKey = (digest: Buffer) => digest.toString('hex');
const byNumber = (a: number, b: number) => a - b;

function emptyFigures(): DedupFigures {
  return {
    referencedChunks: 0,
    referencedBytes: 0,
    holeChunks: 0,
    holeBytes: 0,
    storedChunks: 0,
    storedBytes: 0,
    storedCompressedBytes: 0,
    reusedInImageChunks: 0,
    reusedInImageBytes: 0,
    reusedFromDictChunks: 0,
    reusedFromDictBytes: 0,
  };
}

export class ChunkDictionary {
  private chunkTable: ChunkInfo[] = [];
  private blobSlots: BlobSlot[] = [];
  private readonly byDigest = new Map<string, number>();
  /** Chunks [0, dictChunks) and blobs [0, dictBlobs) were seeded from a chunk dictionary. */
  private dictChunks = 0;
  private dictBlobs = 0;
  private compacted = false;
  private readonly counts = emptyFigures();

  /** A dictionary whose chunks (and so blobs) can be reused by the image being built. */
  static fromBootstrap(dict: Pick<ImageBootstrap, 'blobs' | 'chunks'>): ChunkDictionary {
    const dictionary = new ChunkDictionary();
    dictionary.seed(dict);
    return dictionary;
  }

  get chunks(): readonly ChunkInfo[] {
    return this.chunkTable;
  }

  /** Finished blobs by index; a slot still being written (or left empty) reads as undefined. */
  get blobs(): ReadonlyArray<BlobInfo | undefined> {
    return this.blobSlots.map((slot) => (typeof slot === 'string' ? undefined : slot));
  }

  get figures(): Readonly<DedupFigures> {
    return { ...this.counts };
  }

  private seed(dict: Pick<ImageBootstrap, 'blobs' | 'chunks'>): void {
    for (const [i, chunk] of dict.chunks.entries()) {
      if (!dict.blobs[chunk.blobIndex]) {
        throw new ImageBuildError(
          'ECHUNKDICT',
          `chunk dictionary: chunk ${i} names missing blob ${chunk.blobIndex}`,
        );
      }
      if (!this.byDigest.has(digestKey(chunk.digest))) this.byDigest.set(digestKey(chunk.digest), i);
    }
    this.blobSlots = [...dict.blobs];
    this.chunkTable = [...dict.chunks];
    this.dictBlobs = dict.blobs.length;
    this.dictChunks = dict.chunks.length;
  }

  /** The chunk with this sha256, if the image or the dictionary has one. */
  lookup(digest: Buffer): number | undefined {
    return this.byDigest.get(digestKey(digest));
  }

  /** Opens a slot for a blob being written; its chunks name this index. */
  reserveBlob(): number {
    this.checkOpen();
    this.blobSlots.push(PENDING);
    return this.blobSlots.length - 1;
  }

  /** Fills a reserved slot once the blob file is durable. */
  completeBlob(index: number, info: BlobInfo): void {
    this.checkPending(index);
    this.blobSlots[index] = info;
  }

  /** Marks a reserved slot as holding no blob (nothing new was stored, or the build failed). */
  discardBlob(index: number): void {
    this.checkPending(index);
    this.blobSlots[index] = EMPTY;
  }

  /** Adds a chunk just stored in a pending blob; counts it as stored. */
  addChunk(chunk: ChunkInfo): number {
    this.checkOpen();
    this.checkPending(chunk.blobIndex);
    const index = this.chunkTable.push(chunk) - 1;
    this.byDigest.set(digestKey(chunk.digest), index);
    this.counts.storedChunks++;
    this.counts.storedBytes += chunk.uncompressedSize;
    this.countReference(chunk.uncompressedSize);
    return index;
  }

  /** The compressed size is known only after the chunk was encoded, possibly later than `addChunk`. */
  countStoredCompressed(bytes: number): void {
    this.counts.storedCompressedBytes += bytes;
  }

  /** Records one more file slot pointing at an existing chunk. */
  reuse(index: number): void {
    const chunk = this.chunkTable[index];
    if (!chunk) throw new ImageBuildError('EMODEL', `no chunk ${index}`);
    if (index < this.dictChunks) {
      this.counts.reusedFromDictChunks++;
      this.counts.reusedFromDictBytes += chunk.uncompressedSize;
    } else {
      this.counts.reusedInImageChunks++;
      this.counts.reusedInImageBytes += chunk.uncompressedSize;
    }
    this.countReference(chunk.uncompressedSize);
  }

  /** Records an all-zero chunk slot (a hole). */
  hole(bytes: number): void {
    this.counts.holeChunks++;
    this.counts.holeBytes += bytes;
  }

  private countReference(bytes: number): void {
    this.counts.referencedChunks++;
    this.counts.referencedBytes += bytes;
  }

  /**
   * Keeps only the chunks the files under `roots` reference and the blobs those live in (in their
   * original order), renumbers both, and rewrites every file's chunk indexes in place. The
   * dictionary is finished afterwards. Every blob slot must be complete or discarded.
   */
  compact(roots: DirectoryNode[]): CompactedTables {
    this.checkOpen();
    const pending = this.blobSlots.indexOf(PENDING);
    if (pending >= 0) throw new ImageBuildError('EMODEL', `blob ${pending} is still being written`);
    const files = uniqueFiles(roots);
    const referenced = this.usedChunks(files);
    const usedBlobs = [...new Set([...referenced].map((i) => this.chunkTable[i]!.blobIndex))].sort(byNumber);
    const usedChunks = [...this.withWholeBuiltBlobs(referenced, new Set(usedBlobs))].sort(byNumber);
    const blobMap = new Map(usedBlobs.map((oldIndex, newIndex) => [oldIndex, newIndex]));
    const chunkMap = new Map(usedChunks.map((oldIndex, newIndex) => [oldIndex, newIndex]));
    const chunks = usedChunks.map((oldIndex) => {
      const chunk = this.chunkTable[oldIndex]!;
      return { ...chunk, blobIndex: blobMap.get(chunk.blobIndex)! };
    });
    // A blob's chunkCount is what the image's chunk table lists in it (a dict blob keeps only the used).
    const perBlob = new Array<number>(usedBlobs.length).fill(0);
    for (const chunk of chunks) perBlob[chunk.blobIndex]!++;
    const blobs = usedBlobs.map((oldIndex, i) => ({
      ...this.finishedBlob(oldIndex),
      chunkCount: perBlob[i]!,
    }));
    for (const file of files) file.chunks = file.chunks.map((i) => (i === null ? null : chunkMap.get(i)!));
    const finishedBlobs = this.blobSlots.filter((slot) => slot !== EMPTY).length;
    this.compacted = true;
    return {
      blobs,
      chunks,
      dictBlobIndexes: usedBlobs.flatMap((oldIndex, newIndex) =>
        oldIndex < this.dictBlobs ? [newIndex] : [],
      ),
      droppedBlobs: finishedBlobs - blobs.length,
      droppedChunks: this.chunkTable.length - chunks.length,
    };
  }

  /**
   * A blob built here is kept whole: chunks no file references any more (a later layer deleted the
   * file) still describe its bytes, so `image check` verifies them and a later `--chunk-dict` can reuse them.
   */
  private withWholeBuiltBlobs(referenced: Set<number>, usedBlobs: Set<number>): Set<number> {
    const kept = new Set(referenced);
    for (let i = this.dictChunks; i < this.chunkTable.length; i++) {
      if (usedBlobs.has(this.chunkTable[i]!.blobIndex)) kept.add(i);
    }
    return kept;
  }

  private usedChunks(files: FileNode[]): Set<number> {
    const used = new Set<number>();
    for (const file of files) {
      for (const index of file.chunks) {
        if (index === null) continue;
        if (!this.chunkTable[index]) {
          throw new ImageBuildError('EMODEL', `a file references chunk ${index}, which does not exist`);
        }
        used.add(index);
      }
    }
    return used;
  }

  private finishedBlob(index: number): BlobInfo {
    const slot = this.blobSlots[index];
    if (slot === undefined || typeof slot === 'string') {
      throw new ImageBuildError('EMODEL', `a chunk lives in blob ${index}, which holds no blob`);
    }
    return slot;
  }

  private checkOpen(): void {
    if (this.compacted) throw new ImageBuildError('ECLOSED', 'the chunk dictionary was already compacted');
  }

  private checkPending(index: number): void {
    if (this.blobSlots[index] !== PENDING) {
      throw new ImageBuildError('EMODEL', `blob ${index} is not a blob being written`);
    }
  }
}

/** Every file under the roots once, even when hard-linked under several names. */
function uniqueFiles(roots: DirectoryNode[]): FileNode[] {
  const seen = new Set<TreeNode>();
  const files: FileNode[] = [];
  const stack: TreeNode[] = [...roots];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (seen.has(node)) continue;
    seen.add(node);
    if (node.kind === 'file') files.push(node);
    else if (node.kind === 'directory') for (const child of node.children.values()) stack.push(child);
  }
  return files;
}
