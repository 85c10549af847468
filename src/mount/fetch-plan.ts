/**
 * Which range requests fetch a set of missing chunks of one blob. Pure. Chunks are addressed by
 * their position in the blob's *stored* order (compressedOffset ascending), where neighbours are
 * neighbours in the blob file:
 *
 * 1. Merge: wanted chunks close together in the blob file share one request when the bytes between
 *    them that nobody needs (chunks already cached or in flight, alignment padding) are at most
 *    `maxGap` and the request stays within `maxFetchSize`. Missing chunks in between come along.
 * 2. Amplify: a request shorter than `minFetchSize` grows by neighbouring missing chunks, forward
 *    first (files are mostly read front to back and stored in file order), then backward — so a
 *    4 KiB read pulls in about a megabyte of the files next to it, as Nydus's `amplify_io` does.
 *
 * Requests never overlap and never include a chunk `available` says is cached or being fetched.
 */

export interface StoredExtent {
  compressedOffset: number;
  compressedSize: number;
}

export interface FetchPlanOptions {
  /** Requests shorter than this grow by neighbouring missing chunks (0 = no amplification). */
  minFetchSize: number;
  /** Requests never grow past this (a single chunk larger than it is still fetched whole). */
  maxFetchSize: number;
  /** Unneeded bytes a merge may fetch between two chunks. */
  maxGap: number;
}

export interface PlannedFetch {
  /** Byte range of the blob file. */
  offset: number;
  length: number;
  /** Positions (in stored order, ascending) of every chunk the range delivers. */
  positions: number[];
}

export function planFetches(
  stored: readonly StoredExtent[],
  wanted: Iterable<number>,
  available: (position: number) => boolean,
  options: FetchPlanOptions,
): PlannedFetch[] {
  const sorted = [...new Set(wanted)].sort((a, b) => a - b);
  const runs = mergeWanted(stored, sorted, available, options);
  for (let i = 0; i < runs.length; i++) {
    const run = runs[i]!;
    extendForward(stored, run, runs[i + 1]?.[0] ?? stored.length, available, options);
  }
  for (let i = 0; i < runs.length; i++) {
    const run = runs[i]!;
    extendBackward(stored, run, runs[i - 1]?.at(-1) ?? -1, available, options);
  }
  return runs.map((positions) => {
    const offset = stored[positions[0]!]!.compressedOffset;
    return { offset, length: endOf(stored[positions.at(-1)!]!) - offset, positions };
  });
}

function endOf(extent: StoredExtent): number {
  return extent.compressedOffset + extent.compressedSize;
}

function spanOf(stored: readonly StoredExtent[], first: number, last: number): number {
  return endOf(stored[last]!) - stored[first]!.compressedOffset;
}

/** Runs of positions, each one future request: wanted chunks plus the missing ones between them. */
function mergeWanted(
  stored: readonly StoredExtent[],
  sorted: readonly number[],
  available: (position: number) => boolean,
  options: FetchPlanOptions,
): number[][] {
  const runs: number[][] = [];
  for (const position of sorted) {
    const run = runs.at(-1);
    const between = run ? missingBetween(stored, run, position, available, options) : undefined;
    if (run && between) run.push(...between, position);
    else runs.push([position]);
  }
  return runs;
}

/** The missing positions between a run and `next` if the run may reach `next`, else undefined. */
function missingBetween(
  stored: readonly StoredExtent[],
  run: readonly number[],
  next: number,
  available: (position: number) => boolean,
  options: FetchPlanOptions,
): number[] | undefined {
  const last = run.at(-1)!;
  if (spanOf(stored, run[0]!, next) > options.maxFetchSize) return undefined;
  const missing: number[] = [];
  let wasted = stored[next]!.compressedOffset - endOf(stored[last]!);
  for (let p = last + 1; p < next; p++) {
    if (available(p)) continue;
    missing.push(p);
    wasted -= stored[p]!.compressedSize;
  }
  return wasted <= options.maxGap ? missing : undefined;
}

function extendForward(
  stored: readonly StoredExtent[],
  run: number[],
  limit: number,
  available: (position: number) => boolean,
  options: FetchPlanOptions,
): void {
  for (let p = run.at(-1)! + 1; p < limit; p++) {
    if (spanOf(stored, run[0]!, run.at(-1)!) >= options.minFetchSize) return;
    if (!fitsAfter(stored, run, p, available, options)) return;
    run.push(p);
  }
}

function fitsAfter(
  stored: readonly StoredExtent[],
  run: readonly number[],
  p: number,
  available: (position: number) => boolean,
  options: FetchPlanOptions,
): boolean {
  const gap = stored[p]!.compressedOffset - endOf(stored[run.at(-1)!]!);
  return !available(p) && gap <= options.maxGap && spanOf(stored, run[0]!, p) <= options.maxFetchSize;
}

function extendBackward(
  stored: readonly StoredExtent[],
  run: number[],
  limit: number,
  available: (position: number) => boolean,
  options: FetchPlanOptions,
): void {
  const last = run.at(-1)!;
  let first = run[0]!;
  const before: number[] = [];
  for (let p = first - 1; p > limit; p--) {
    if (spanOf(stored, first, last) >= options.minFetchSize) break;
    const gap = stored[first]!.compressedOffset - endOf(stored[p]!);
    if (available(p) || gap > options.maxGap || spanOf(stored, p, last) > options.maxFetchSize) break;
    before.push(p);
    first = p;
  }
  run.unshift(...before.reverse());
}
