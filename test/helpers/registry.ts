/**
 * A real registry for tests: Debian's `docker-registry` (distribution 2.8) on a free loopback port with a
 * temp root dir, optionally behind htpasswd basic auth or bearer-token auth (with a token server of our
 * own, below). Killed by PID on stop().
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  createPrivateKey,
  type KeyObject,
  randomBytes,
  randomUUID,
  sign,
  X509Certificate,
} from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { freePort } from './cluster.js';

const run = promisify(execFile);

export interface TestUser {
  username: string;
  password: string;
}

export const TEST_USER: TestUser = { username: 'tester', password: 'correct horse battery staple' };

export interface RegistryOptions {
  auth?: 'basic' | 'token';
  /** Accounts for basic auth or the token server (default: TEST_USER). */
  users?: TestUser[];
  /** Token auth: give anonymous callers pull access (default false: anonymous get no access). */
  anonymousPull?: boolean;
  /** Token auth: token lifetime in seconds (default 300). */
  tokenLifetime?: number;
}

export interface TestRegistry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`: the registry part of image references. */
  host: string;
  /** The storage root (`<dataDir>/docker/registry/v2/...`). */
  dataDir: string;
  /** Present with auth 'token'. */
  tokenServer?: TestTokenServer;
  /** Where a blob's bytes live on disk (to corrupt them). */
  blobPath(digest: string): string;
  logs(): Promise<string>;
  stop(): Promise<void>;
}

/** bcrypt through the C library's crypt(3) (libxcrypt does `$2b$`), reached from perl-base, which every Debian has. */
async function bcrypt(password: string): Promise<string> {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const salt = [...randomBytes(21)].map((b) => alphabet[b % 64]).join('');
  // The 22nd salt character carries only 2 significant bits: '.' keeps them zero.
  const setting = `$2b$05$${salt}.`;
  const { stdout } = await run('perl', ['-e', 'print crypt($ARGV[0], $ARGV[1])', password, setting]);
  if (!stdout.startsWith('$2b$05$')) throw new Error('crypt(3) on this machine cannot make bcrypt hashes');
  return stdout;
}

async function writeHtpasswd(dir: string, users: TestUser[]): Promise<string> {
  const path = join(dir, 'htpasswd');
  const lines = await Promise.all(users.map(async (u) => `${u.username}:${await bcrypt(u.password)}`));
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

async function waitUntilServing(url: string, child: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      const res = await fetch(`${url}/v2/`);
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const log = await readFile(logPath, 'utf8').catch(() => '');
  throw new Error(`docker-registry did not start (exit ${child.exitCode}):\n${log.slice(-2000)}`);
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  process.kill(child.pid!, 'SIGTERM');
  const timer = setTimeout(
    () => child.pid && child.exitCode === null && process.kill(child.pid, 'SIGKILL'),
    5000,
  );
  await exited;
  clearTimeout(timer);
}

export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-registry-'));
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const users = options.users ?? [TEST_USER];
  let tokenServer: TestTokenServer | undefined;
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: 'info', formatter: 'text' },
    storage: {
      filesystem: { rootdirectory: dataDir },
      delete: { enabled: true },
      cache: { blobdescriptor: 'inmemory' },
    },
    http: { addr: host, secret: randomUUID(), headers: { 'X-Content-Type-Options': ['nosniff'] } },
    health: { storagedriver: { enabled: false } },
  };
  if (options.auth === 'basic') {
    config.auth = { htpasswd: { realm: 'damselfly-test', path: await writeHtpasswd(dir, users) } };
  } else if (options.auth === 'token') {
    tokenServer = await TestTokenServer.start(dir, {
      users,
      anonymousPull: options.anonymousPull ?? false,
      lifetime: options.tokenLifetime ?? 300,
    });
    config.auth = {
      token: {
        realm: `${tokenServer.url}/token`,
        service: TestTokenServer.SERVICE,
        issuer: TestTokenServer.ISSUER,
        rootcertbundle: tokenServer.certPath,
      },
    };
  }
  const configPath = join(dir, 'config.yml');
  await writeFile(configPath, stringify(config));
  const logPath = join(dir, 'registry.log');
  const log = await open(logPath, 'w');
  const child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', log.fd, log.fd] });
  await log.close();
  const url = `http://${host}`;
  try {
    await waitUntilServing(url, child, logPath);
  } catch (err) {
    await stopProcess(child);
    await tokenServer?.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    host,
    dataDir,
    ...(tokenServer ? { tokenServer } : {}),
    blobPath: (digest) => {
      const [algorithm, hex] = digest.split(':') as [string, string];
      return join(dataDir, 'docker/registry/v2/blobs', algorithm, hex.slice(0, 2), hex, 'data');
    },
    logs: () => readFile(logPath, 'utf8'),
    stop: async () => {
      await stopProcess(child);
      await tokenServer?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TokenRequestRecord {
  method: string;
  /** Who asked: a username, `refresh-token`, or `anonymous`. */
  account: string;
  service: string | null;
  scopes: string[];
  status: number;
}

interface TokenServerOptions {
  users: TestUser[];
  anonymousPull: boolean;
  lifetime: number;
}

/**
 * The token half of the Docker token auth spec: GET /token with basic credentials (or POST with an
 * OAuth refresh token) gives a JWT that docker-registry verifies against our self-signed cert (ES256,
 * the cert in the `x5c` header and in the registry's rootcertbundle).
 */
export class TestTokenServer {
  static readonly SERVICE = 'damselfly-test-registry';
  static readonly ISSUER = 'damselfly-test-issuer';
  /** The identity token the server accepts for the refresh-token grant (as TEST_USER). */
  static readonly REFRESH_TOKEN = 'test-refresh-token';

  readonly requests: TokenRequestRecord[] = [];
  /** Tokens to spoil (wrong audience, so the registry refuses them) before issuing good ones again. */
  spoilNext = 0;
  /** Seconds each new token lives (`expires_in` and the JWT's `exp`). */
  lifetime: number;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly certPath: string,
    private readonly key: KeyObject,
    private readonly certDer: Buffer,
    private readonly options: TokenServerOptions,
  ) {
    this.lifetime = options.lifetime;
  }

  static async start(dir: string, options: TokenServerOptions): Promise<TestTokenServer> {
    const keyPath = join(dir, 'token.key');
    const certPath = join(dir, 'token.crt');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '2',
      '-subj',
      '/CN=damselfly-test-token-issuer',
    ]);
    const key = createPrivateKey(await readFile(keyPath));
    const certDer = new X509Certificate(await readFile(certPath)).raw;
    let self: TestTokenServer | undefined;
    const server = createServer((req, res) => {
      void self!.handle(req, res).catch(() => {
        res.statusCode = 500;
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    self = new TestTokenServer(server, `http://127.0.0.1:${port}`, certPath, key, certDer, options);
    return self;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const body = await readBody(req);
    const form = new URLSearchParams(req.method === 'POST' ? body : '');
    const scopes =
      req.method === 'POST'
        ? (form.get('scope') ?? '').split(' ').filter(Boolean)
        : url.searchParams.getAll('scope');
    const service = req.method === 'POST' ? form.get('service') : url.searchParams.get('service');
    const account = this.authenticate(req, form);
    const record: TokenRequestRecord = {
      method: req.method ?? '',
      account: account ?? 'refused',
      service,
      scopes,
      status: 200,
    };
    this.requests.push(record);
    if (url.pathname !== '/token' || account === undefined) {
      record.status = url.pathname !== '/token' ? 404 : 401;
      res.writeHead(record.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    const token = this.issue(account, scopes);
    res.writeHead(200, { 'content-type': 'application/json' });
    const answer = { token, expires_in: this.lifetime, issued_at: new Date().toISOString() };
    // OAuth clients (the refresh-token grant) read access_token.
    res.end(
      JSON.stringify(req.method === 'POST' ? { access_token: token, ...answer, token: undefined } : answer),
    );
  }

  /** The account name, `anonymous`, or undefined for wrong credentials. */
  private authenticate(req: IncomingMessage, form: URLSearchParams): string | undefined {
    if (req.method === 'POST') {
      return form.get('grant_type') === 'refresh_token' &&
        form.get('refresh_token') === TestTokenServer.REFRESH_TOKEN
        ? 'refresh-token'
        : undefined;
    }
    const header = req.headers.authorization;
    if (!header) return 'anonymous';
    const m = /^Basic (.+)$/i.exec(header);
    if (!m) return undefined;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const user = this.options.users.find(
      (u) => u.username === decoded.slice(0, colon) && u.password === decoded.slice(colon + 1),
    );
    return user?.username;
  }

  private issue(account: string, scopes: string[]): string {
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = splitScope(scope);
      if (!type || !name) return [];
      const wanted = (actions ?? '').split(',').filter(Boolean);
      const granted = account === 'anonymous' ? (this.options.anonymousPull ? ['pull'] : []) : wanted;
      return [{ type, name, actions: wanted.filter((a) => granted.includes(a)) }];
    });
    const now = Math.floor(Date.now() / 1000);
    const spoil = this.spoilNext > 0;
    if (spoil) this.spoilNext--;
    const claims = {
      iss: TestTokenServer.ISSUER,
      sub: account,
      aud: spoil ? 'some-other-service' : TestTokenServer.SERVICE,
      exp: now + this.lifetime,
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const header = { typ: 'JWT', alg: 'ES256', x5c: [this.certDer.toString('base64')] };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), { key: this.key, dsaEncoding: 'ieee-p1363' });
    return `${signingInput}.${base64url(signature)}`;
  }
}

/** `repository:name/with/slashes:pull,push` → [type, name, actions]; names may hold `:` (registry ports). */
function splitScope(scope: string): [string?, string?, string?] {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return [];
  return [scope.slice(0, first), scope.slice(first + 1, last), scope.slice(last + 1)];
}

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
