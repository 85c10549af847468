export { createSchedulerClient, type SchedulerClient } from './client.js';
export * from './gen/damselfly/scheduler/v1/scheduler_pb.js';
export { Health, HealthCheckResponse_ServingStatus } from './gen/grpc/health/v1/health_pb.js';
export { createGrpcServer, type GrpcServer } from './server.js';
