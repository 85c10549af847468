import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import type { Logger } from '../../observability/index.js';
import { type CertifiedKey, LeafIssuer } from '../../tls/index.js';

/** Minted certificates kept per host name; more distinct hosts than this evict the oldest. */
const MAX_CONTEXTS = 1000;

export type InterceptedRequestHandler = (req: IncomingMessage, res: ServerResponse, origin: string) => void;

/**
 * TLS interception for CONNECT: the proxy answers the tunnel itself, terminates TLS with a certificate
 * for the requested host signed by our CA (which the client must trust), and hands the decrypted HTTP/1.1
 * requests to the forward proxy as `https://host/...` requests — so HTTPS downloads can go P2P too.
 */
export class TlsInterceptor {
  private readonly issuer: LeafIssuer;
  private readonly contexts = new Map<string, SecureContext>();
  private readonly hosts: RegExp[];
  /** Never listens: it parses the decrypted connections handed to it. */
  private readonly server: Server;
  private readonly origins = new WeakMap<Socket, string>();

  constructor(
    ca: CertifiedKey,
    hosts: readonly string[],
    onRequest: InterceptedRequestHandler,
    private readonly logger: Logger,
  ) {
    this.issuer = new LeafIssuer(ca);
    this.hosts = hosts.map((h) => new RegExp(h));
    this.server = createServer((req, res) => {
      const origin = this.origins.get(req.socket);
      if (origin) onRequest(req, res, origin);
      else res.destroy();
    });
  }

  /** Whether a CONNECT to `host:port` is intercepted (else it is tunnelled untouched). */
  matches(authority: string): boolean {
    return this.hosts.some((re) => re.test(authority));
  }

  intercept(client: Socket, head: Buffer, host: string, port: number): void {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) client.unshift(head);
    const secure = new TLSSocket(client, {
      isServer: true,
      secureContext: this.contextFor(host),
      SNICallback: (name, done) => done(null, this.contextFor(name || host)),
      ALPNProtocols: ['http/1.1'],
    });
    secure.once('error', (err) => {
      // Typically a client that does not trust our CA: it aborts the handshake.
      this.logger.info({ target: `${host}:${port}`, err: err.message }, 'intercepted TLS connection failed');
      secure.destroy();
    });
    const hostPart = host.includes(':') ? `[${host}]` : host;
    this.origins.set(secure, port === 443 ? `https://${hostPart}` : `https://${hostPart}:${port}`);
    this.server.emit('connection', secure);
  }

  private contextFor(host: string): SecureContext {
    let context = this.contexts.get(host);
    if (!context) {
      context = createSecureContext({ cert: this.issuer.issue(host), key: this.issuer.leafKeyPem });
      if (this.contexts.size >= MAX_CONTEXTS) this.contexts.delete(this.contexts.keys().next().value!);
      this.contexts.set(host, context);
    }
    return context;
  }

  close(): void {
    this.server.closeAllConnections();
  }
}
