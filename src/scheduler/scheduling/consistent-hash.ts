import { createHash } from 'node:crypto';

const VIRTUAL_NODES = 64;

function hash32(s: string): number {
  return createHash('sha256').update(s).digest().readUInt32BE(0);
}

/**
 * A consistent-hash ring: the same key picks the same node while the node set is stable, and only
 * about 1/n of the keys move when a node joins or leaves (so a task keeps going to the same seed).
 */
export class HashRing {
  private readonly ring: { point: number; node: string }[];

  constructor(nodes: Iterable<string>, virtualNodes = VIRTUAL_NODES) {
    this.ring = [];
    for (const node of new Set(nodes)) {
      for (let i = 0; i < virtualNodes; i++) this.ring.push({ point: hash32(`${node}#${i}`), node });
    }
    this.ring.sort((a, b) => a.point - b.point || (a.node < b.node ? -1 : 1));
  }

  pick(key: string): string | undefined {
    if (this.ring.length === 0) return undefined;
    const h = hash32(key);
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ring[mid]!.point < h) lo = mid + 1;
      else hi = mid;
    }
    return this.ring[lo % this.ring.length]!.node;
  }
}
