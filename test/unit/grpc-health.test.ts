import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { schedulerConfigSchema } from '../../src/config/index.js';
import { createLogger } from '../../src/observability/index.js';
import { Health, HealthCheckResponse_ServingStatus } from '../../src/rpc/index.js';
import { type RunningScheduler, startScheduler } from '../../src/scheduler/index.js';

describe('grpc.health.v1 on the scheduler', () => {
  let scheduler: RunningScheduler;

  before(async () => {
    scheduler = await startScheduler(
      schedulerConfigSchema.parse({ listen: '127.0.0.1:0' }),
      createLogger('health-test', 'silent'),
    );
  });

  after(async () => {
    await scheduler.close();
  });

  it('answers SERVING over the gRPC protocol', async () => {
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${scheduler.port}` });
    const health = createClient(Health, transport);
    const res = await health.check({ service: '' });
    assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
  });
});
