import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InitError, parseProxy, parseRegistries, planDaemonJson } from '../../src/init/index.js';

const PATH = '/etc/docker/daemon.json';
const loopback = parseProxy('127.0.0.1:4001');
const remote = parseProxy('http://10.0.0.5:4001');
const hub = parseRegistries(['docker.io']);

describe('planDaemonJson', () => {
  it('creates daemon.json with the daemon as registry mirror (2-space JSON)', () => {
    const plan = planDaemonJson(undefined, hub, loopback, PATH);
    assert.equal(plan.applies, true);
    assert.deepEqual(plan.warnings, []);
    assert.equal(plan.content, '{\n  "registry-mirrors": [\n    "http://127.0.0.1:4001"\n  ]\n}\n');
  });

  it('merges: other keys and mirrors kept, the daemon first', () => {
    const current =
      '{"log-level":"warn","registry-mirrors":["https://mirror.gcr.io"],"features":{"buildkit":true}}';
    const plan = planDaemonJson(current, hub, loopback, PATH);
    assert.deepEqual(JSON.parse(plan.content!), {
      'log-level': 'warn',
      'registry-mirrors': ['http://127.0.0.1:4001', 'https://mirror.gcr.io'],
      features: { buildkit: true },
    });
    assert.equal(planDaemonJson(plan.content, hub, loopback, PATH).content, undefined);
  });

  it('counts a mirror spelled with a trailing slash as present, and moves it first', () => {
    const current = JSON.stringify({ 'registry-mirrors': ['https://m', 'http://127.0.0.1:4001/'] });
    const plan = planDaemonJson(current, hub, loopback, PATH);
    assert.deepEqual(JSON.parse(plan.content!)['registry-mirrors'], ['http://127.0.0.1:4001/', 'https://m']);
    const first = JSON.stringify({ 'registry-mirrors': ['http://127.0.0.1:4001/'] });
    assert.equal(planDaemonJson(first, hub, loopback, PATH).content, undefined);
  });

  it('lists a non-loopback proxy in insecure-registries as http://host:port, once', () => {
    const current = JSON.stringify({ 'insecure-registries': ['10.1.0.0/16'] });
    const plan = planDaemonJson(current, hub, remote, PATH);
    const doc = JSON.parse(plan.content!);
    assert.deepEqual(doc['insecure-registries'], ['10.1.0.0/16', 'http://10.0.0.5:4001']);
    assert.deepEqual(doc['registry-mirrors'], ['http://10.0.0.5:4001']);
    assert.equal(planDaemonJson(plan.content, hub, remote, PATH).content, undefined);
    assert.equal(
      JSON.parse(planDaemonJson(undefined, hub, loopback, PATH).content!)['insecure-registries'],
      undefined,
    );
  });

  it('warns that Docker mirrors Docker Hub only, and writes nothing when no registry is Docker Hub', () => {
    const mixed = planDaemonJson(
      undefined,
      parseRegistries(['docker.io,ghcr.io,127.0.0.1:5000']),
      loopback,
      PATH,
    );
    assert.ok(mixed.content);
    assert.equal(mixed.warnings.length, 1);
    assert.match(mixed.warnings[0]!, /Docker Hub only: pulls from ghcr\.io, 127\.0\.0\.1:5000 will not go/);
    const none = planDaemonJson('{}', parseRegistries(['ghcr.io']), loopback, PATH);
    assert.equal(none.applies, false);
    assert.equal(none.content, undefined);
    assert.equal(none.warnings.length, 1);
  });

  it('treats an empty file as {} and refuses what is not a JSON object, naming the file', () => {
    assert.ok(planDaemonJson('  \n', hub, loopback, PATH).content);
    assert.throws(() => planDaemonJson('{"a":', hub, loopback, PATH), /daemon\.json is not valid JSON/);
    assert.throws(() => planDaemonJson('[]', hub, loopback, PATH), /must hold a JSON object/);
    assert.throws(
      () => planDaemonJson('{"registry-mirrors":"http://x"}', hub, loopback, PATH),
      (err: unknown) =>
        err instanceof InitError && /"registry-mirrors" must be a list of strings/.test(err.message),
    );
  });
});
