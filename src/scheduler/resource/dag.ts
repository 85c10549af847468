/** Thrown when an edge would make the task graph cyclic (a peer would end up feeding itself). */
export class DagCycleError extends Error {
  readonly code = 'EDAGCYCLE';
}

interface Vertex {
  readonly parents: Set<string>;
  readonly children: Set<string>;
}

/**
 * The per-task directed acyclic graph of peers: an edge parent→child means the scheduler offered
 * `parent` to `child` as a source of pieces. Acyclicity guarantees every piece can be traced back to a
 * peer that fetched it from the origin.
 */
export class Dag {
  private readonly vertices = new Map<string, Vertex>();

  get size(): number {
    return this.vertices.size;
  }

  has(id: string): boolean {
    return this.vertices.has(id);
  }

  addVertex(id: string): void {
    if (!this.vertices.has(id)) this.vertices.set(id, { parents: new Set(), children: new Set() });
  }

  /** Removes the vertex and every edge touching it. */
  deleteVertex(id: string): void {
    const v = this.vertices.get(id);
    if (!v) return;
    for (const p of v.parents) this.vertices.get(p)?.children.delete(id);
    for (const c of v.children) this.vertices.get(c)?.parents.delete(id);
    this.vertices.delete(id);
  }

  parents(id: string): string[] {
    return [...(this.vertices.get(id)?.parents ?? [])];
  }

  children(id: string): string[] {
    return [...(this.vertices.get(id)?.children ?? [])];
  }

  /** True when `to` can be reached from `from` by following parent→child edges. */
  reaches(from: string, to: string): boolean {
    if (from === to) return true;
    const seen = new Set<string>([from]);
    const stack = [from];
    while (stack.length > 0) {
      const v = this.vertices.get(stack.pop()!);
      if (!v) continue;
      for (const c of v.children) {
        if (c === to) return true;
        if (!seen.has(c)) {
          seen.add(c);
          stack.push(c);
        }
      }
    }
    return false;
  }

  /**
   * Whether parent→child may be added: both exist, they differ and child does not already reach
   * parent. The child's current in-edges never matter (they cannot start a path out of the child), so
   * this answer also holds when the child's parents are about to be replaced.
   */
  canAddEdge(parent: string, child: string): boolean {
    if (parent === child || !this.vertices.has(parent) || !this.vertices.has(child)) return false;
    return !this.reaches(child, parent);
  }

  addEdge(parent: string, child: string): void {
    if (!this.canAddEdge(parent, child)) throw new DagCycleError(`edge ${parent} -> ${child} is not allowed`);
    this.vertices.get(parent)!.children.add(child);
    this.vertices.get(child)!.parents.add(parent);
  }

  deleteInEdges(child: string): void {
    const v = this.vertices.get(child);
    if (!v) return;
    for (const p of v.parents) this.vertices.get(p)?.children.delete(child);
    v.parents.clear();
  }

  /** Atomically replaces the child's in-edges; nothing changes if any new edge is refused. */
  replaceParents(child: string, parents: readonly string[]): void {
    for (const p of parents) {
      if (!this.canAddEdge(p, child)) throw new DagCycleError(`edge ${p} -> ${child} is not allowed`);
    }
    this.deleteInEdges(child);
    for (const p of parents) this.addEdge(p, child);
  }
}
