import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Dag, DagCycleError } from '../../src/scheduler/resource/index.js';

function dagOf(...ids: string[]): Dag {
  const dag = new Dag();
  for (const id of ids) dag.addVertex(id);
  return dag;
}

describe('scheduler DAG', () => {
  it('adds edges and reports parents and children', () => {
    const dag = dagOf('a', 'b', 'c');
    dag.addEdge('a', 'b');
    dag.addEdge('a', 'c');
    assert.deepEqual(dag.parents('b'), ['a']);
    assert.deepEqual(dag.children('a').sort(), ['b', 'c']);
    assert.equal(dag.reaches('a', 'c'), true);
    assert.equal(dag.reaches('c', 'a'), false);
  });

  it('refuses self edges, edges to unknown vertices and edges that close a cycle', () => {
    const dag = dagOf('a', 'b', 'c');
    dag.addEdge('a', 'b');
    dag.addEdge('b', 'c');
    assert.equal(dag.canAddEdge('a', 'a'), false);
    assert.equal(dag.canAddEdge('a', 'zz'), false);
    assert.equal(dag.canAddEdge('c', 'a'), false, 'a -> b -> c -> a would be a cycle');
    assert.equal(dag.canAddEdge('b', 'a'), false);
    assert.throws(() => dag.addEdge('c', 'a'), DagCycleError);
    assert.deepEqual(dag.parents('a'), [], 'a refused edge leaves nothing behind');
    assert.equal(dag.canAddEdge('a', 'c'), true, 'a second path is not a cycle');
  });

  it('replaces the in-edges of a child', () => {
    const dag = dagOf('a', 'b', 'c', 'd');
    dag.replaceParents('d', ['a', 'b']);
    assert.deepEqual(dag.parents('d').sort(), ['a', 'b']);
    dag.replaceParents('d', ['c']);
    assert.deepEqual(dag.parents('d'), ['c']);
    assert.deepEqual(dag.children('a'), [], 'old parents lose the child');
    assert.deepEqual(dag.children('b'), []);
  });

  it('replaceParents is all-or-nothing when one edge would cycle', () => {
    const dag = dagOf('a', 'b', 'c');
    dag.addEdge('a', 'b');
    dag.addEdge('b', 'c');
    assert.throws(() => dag.replaceParents('b', ['c']), DagCycleError);
    assert.deepEqual(dag.parents('b'), ['a'], 'the old edges stay when the replacement is refused');
    assert.throws(() => dag.replaceParents('a', ['b', 'c']), DagCycleError);
  });

  it('deleting a vertex removes its edges', () => {
    const dag = dagOf('a', 'b', 'c');
    dag.addEdge('a', 'b');
    dag.addEdge('b', 'c');
    dag.deleteVertex('b');
    assert.equal(dag.has('b'), false);
    assert.deepEqual(dag.children('a'), []);
    assert.deepEqual(dag.parents('c'), []);
    assert.equal(dag.canAddEdge('c', 'a'), true, 'no path left from a to c');
  });
});
