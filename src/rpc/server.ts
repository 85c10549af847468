import { createServer, type Http2Server, type ServerHttp2Session } from 'node:http2';
import { create } from '@bufbuild/protobuf';
import type { ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import {
  Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from './gen/grpc/health/v1/health_pb.js';

export interface GrpcServer {
  /** The port actually bound (useful with port 0). */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves Connect routes over cleartext HTTP/2 with the gRPC protocol (so grpcurl and other gRPC
 * clients work) plus the standard grpc.health.v1 service.
 */
export async function createGrpcServer(
  routes: (router: ConnectRouter) => void,
  host: string,
  port: number,
): Promise<GrpcServer> {
  const serving = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
  const handler = connectNodeAdapter({
    grpc: true,
    grpcWeb: false,
    connect: true,
    routes: (router) => {
      routes(router);
      router.service(Health, {
        check: () => serving,
        async *watch() {
          yield serving;
        },
      });
    },
  });
  const server: Http2Server = createServer(handler);
  // server.close() leaves open sessions alone; track them so close() can end them (GOAWAY).
  const sessions = new Set<ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Graceful: in-flight calls finish, then each session closes.
        for (const session of sessions) session.close();
        // Long-lived streams (AnnouncePeer, SeedTasks) would hold close() open forever.
        setTimeout(() => {
          for (const session of sessions) session.destroy();
          resolve();
        }, 1000).unref();
      }),
  };
}
