import { type Client, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { SchedulerService } from './gen/damselfly/scheduler/v1/scheduler_pb.js';

export type SchedulerClient = Client<typeof SchedulerService>;

/** A gRPC client for the scheduler at "host:port" (one shared HTTP/2 session). */
export function createSchedulerClient(address: string): SchedulerClient {
  const transport = createGrpcTransport({
    baseUrl: `http://${address}`,
    pingIntervalMs: 10_000,
    idleConnectionTimeoutMs: 60_000,
  });
  return createClient(SchedulerService, transport);
}
