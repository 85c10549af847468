export * from './gen/damselfly/scheduler/v1/scheduler_pb.js';
export { HealthCheckResponse_ServingStatus, Health } from './gen/grpc/health/v1/health_pb.js';
export { createGrpcServer, type GrpcServer } from './server.js';
export { createSchedulerClient, type SchedulerClient } from './client.js';
