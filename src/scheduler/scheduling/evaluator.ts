import type { HostView, PeerView } from './views.js';

/**
 * Feature weights (sum 1). Dragonfly's historical base evaluator (§4.4) plus the idle-bandwidth
 * feature of its current one, so a busy uplink is avoided even when its upload slots are free.
 */
export const WEIGHTS = {
  pieces: 0.2,
  uploadSuccess: 0.15,
  freeUploadSlots: 0.15,
  idleBandwidth: 0.15,
  idc: 0.15,
  location: 0.1,
  hostType: 0.1,
} as const;

export type Feature = keyof typeof WEIGHTS;
export type Features = Record<Feature, number>;

const MAX_LOCATION_ELEMENTS = 5;

const clamp01 = (x: number) => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0);

/** Share of the task the parent holds; 1 once it succeeded. */
export function piecesScore(p: PeerView, totalPieces: number): number {
  if (p.state === 'Succeeded') return 1;
  if (totalPieces <= 0) return 0;
  return clamp01(p.finishedPieceCount / totalPieces);
}

/** (uploads − failed) / uploads; 1 with no history. */
export function uploadSuccessScore(h: HostView): number {
  if (h.uploadCount <= 0) return 1;
  return clamp01((h.uploadCount - h.uploadFailedCount) / h.uploadCount);
}

/** (limit − in-flight) / limit; 1 when unlimited. */
export function freeUploadSlotsScore(h: HostView): number {
  if (h.concurrentUploadLimit <= 0) return 1;
  return clamp01((h.concurrentUploadLimit - h.concurrentUploads) / h.concurrentUploadLimit);
}

/** 1 − tx / upload rate limit; 0.5 when the limit is unknown (unlimited). */
export function idleBandwidthScore(h: HostView): number {
  if (h.uploadRateLimit <= 0) return 0.5;
  return clamp01(1 - h.txBandwidth / h.uploadRateLimit);
}

export function hostTypeScore(h: HostView): number {
  return h.type === 'seed' ? 1 : 0.5;
}

/** 1 when both IDCs are set and equal (case-insensitive). */
export function idcAffinityScore(parent: HostView, child: HostView): number {
  return parent.idc !== '' && child.idc !== '' && parent.idc.toLowerCase() === child.idc.toLowerCase()
    ? 1
    : 0;
}

/** `a|b|c|d|e` locations: 1 on a full match, else leading matching elements / 5. */
export function locationAffinityScore(parent: HostView, child: HostView): number {
  if (parent.location === '' || child.location === '') return 0;
  if (parent.location.toLowerCase() === child.location.toLowerCase()) return 1;
  const a = parent.location.toLowerCase().split('|');
  const b = child.location.toLowerCase().split('|');
  const n = Math.min(a.length, b.length, MAX_LOCATION_ELEMENTS);
  let matched = 0;
  while (matched < n && a[matched] === b[matched]) matched++;
  return matched / MAX_LOCATION_ELEMENTS;
}

export function features(parent: PeerView, childHost: HostView, totalPieces: number): Features {
  return {
    pieces: piecesScore(parent, totalPieces),
    uploadSuccess: uploadSuccessScore(parent.host),
    freeUploadSlots: freeUploadSlotsScore(parent.host),
    idleBandwidth: idleBandwidthScore(parent.host),
    idc: idcAffinityScore(parent.host, childHost),
    location: locationAffinityScore(parent.host, childHost),
    hostType: hostTypeScore(parent.host),
  };
}

export function score(parent: PeerView, childHost: HostView, totalPieces: number): number {
  const f = features(parent, childHost, totalPieces);
  let total = 0;
  for (const k of Object.keys(WEIGHTS) as Feature[]) total += WEIGHTS[k] * f[k];
  return total;
}

/** Best parent first; ties go to the peer with more pieces, then by id (deterministic). */
export function rankParents<P extends PeerView>(
  parents: readonly P[],
  childHost: HostView,
  totalPieces: number,
): P[] {
  const scored = parents.map((p) => ({ p, s: score(p, childHost, totalPieces) }));
  scored.sort(
    (x, y) =>
      y.s - x.s ||
      y.p.finishedPieceCount - x.p.finishedPieceCount ||
      (x.p.id < y.p.id ? -1 : x.p.id > y.p.id ? 1 : 0),
  );
  return scored.map((x) => x.p);
}
