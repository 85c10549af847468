import { z } from 'zod';
import type { CredentialStore, RegistryCredentials } from './credentials.js';
import { RegistryError } from './errors.js';
import { registryErrorFrom } from './registry-error-response.js';
import { discardBody } from './response-body.js';
import type { RetryingHttpClient } from './retrying-http-client.js';
import { type AuthChallenge, parseWwwAuthenticate } from './www-authenticate.js';

/** What a request needs to be allowed to do: `repository:<name>:<actions>` in token scopes. */
export interface AccessScope {
  repository: string;
  actions: ReadonlyArray<'pull' | 'push'>;
}

export function formatScope(scope: AccessScope): string {
  return `repository:${scope.repository}:${[...scope.actions].sort().join(',')}`;
}

/** Tokens without `expires_in` live 60 s (the token spec's default). */
const DEFAULT_TOKEN_LIFETIME_S = 60;
/** Past this many cached tokens, expired ones are dropped (a mirror sees many repositories). */
const PRUNE_ABOVE = 256;
/** Renew a little early so a token never expires between our check and the registry's. */
const EXPIRY_MARGIN_MS = 5_000;
/** Header values must be visible ASCII: a token with CR/LF in it would inject headers. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

const tokenResponseSchema = z
  .object({
    token: z.string().optional(),
    access_token: z.string().optional(),
    // A malformed lifetime is treated as absent (60 s) rather than failing the pull.
    expires_in: z.number().positive().optional().catch(undefined),
    issued_at: z.string().optional(),
  })
  .refine((r) => Boolean(r.token || r.access_token), 'no token in the answer');

interface CachedToken {
  token: string;
  expiresAt: number;
}

interface BearerChallenge {
  realm: URL;
  service?: string;
}

type RegistryChallenge = { scheme: 'basic' } | ({ scheme: 'bearer' } & BearerChallenge);

/**
 * Decides the Authorization header of registry requests. Requests go out anonymously until a
 * registry answers 401; its challenge is then remembered per registry so later requests are
 * authorized up front. Basic sends credentials as they are; Bearer gets a token for the needed
 * scopes from the challenge's realm (with basic credentials or an identity token when we have them)
 * and caches it per scope until it expires. Secrets are never logged or put into error messages.
 */
export class RegistryAuthenticator {
  private readonly challenges = new Map<string, RegistryChallenge>();
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  /** Expiry of each settled token, so a long-running process can drop the stale ones. */
  private readonly expiries = new Map<string, number>();

  constructor(
    private readonly http: RetryingHttpClient,
    private readonly credentials: CredentialStore | undefined,
  ) {}

  /** The header to send up front for `registry`, or undefined to go anonymously. */
  async authorize(
    registry: string,
    scopes: AccessScope[],
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const challenge = this.challenges.get(registry);
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') return basicHeader(await this.credentialsFor(registry, signal));
    return `Bearer ${await this.cachedToken(registry, challenge, mergeScopes([], scopes), signal)}`;
  }

  /**
   * Called with a 401's WWW-Authenticate: returns a fresh header to retry with, or undefined when
   * there is nothing new to try (no credentials, or the ones we sent were refused).
   */
  async renew(
    registry: string,
    wwwAuthenticate: string | string[] | undefined,
    scopes: AccessScope[],
    sent: string | undefined,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const picked = pickChallenge(parseWwwAuthenticate(wwwAuthenticate));
    if (!picked) return undefined;
    const { challenge, scopes: asked } = picked;
    this.challenges.set(registry, challenge);
    if (challenge.scheme === 'basic') {
      const header = basicHeader(await this.credentialsFor(registry, signal));
      return header !== sent ? header : undefined;
    }
    // The registry's challenge may name scopes we did not think of: ask for those too.
    const scopeList = mergeScopes(asked, scopes);
    const key = tokenKey(registry, challenge, scopeList);
    const cached = await this.tokens.get(key)?.catch(() => undefined);
    // Someone else may already have replaced the token that failed; only drop the one we sent.
    if (cached && sent !== `Bearer ${cached.token}` && cached.expiresAt > Date.now()) {
      return `Bearer ${cached.token}`;
    }
    this.forget(key);
    return `Bearer ${await this.cachedToken(registry, challenge, scopeList, signal)}`;
  }

  /** Whether any credentials are known for `registry` (for error messages). */
  async hasCredentials(registry: string): Promise<boolean> {
    return Boolean(await this.credentialsFor(registry).catch(() => undefined));
  }

  private async credentialsFor(
    registry: string,
    signal?: AbortSignal,
  ): Promise<RegistryCredentials | undefined> {
    return this.credentials?.get(registry, signal);
  }

  /** A live token for exactly these (merged, sorted) scopes; concurrent callers share one fetch. */
  private async cachedToken(
    registry: string,
    challenge: BearerChallenge,
    scopeList: string[],
    signal?: AbortSignal,
  ): Promise<string> {
    const key = tokenKey(registry, challenge, scopeList);
    for (;;) {
      let entry = this.tokens.get(key);
      const fetchedHere = entry === undefined;
      if (entry === undefined) {
        if (this.tokens.size >= PRUNE_ABOVE) this.pruneExpired();
        // Shared with concurrent callers, so it must not die with this caller's signal.
        const fetching = this.fetchToken(registry, challenge, scopeList);
        fetching.then(
          (t) => this.tokens.get(key) === fetching && this.expiries.set(key, t.expiresAt),
          () => this.tokens.get(key) === fetching && this.forget(key),
        );
        this.tokens.set(key, fetching);
        entry = fetching;
      }
      const cached = await untilAborted(entry, signal);
      // A token fetched just now is used even if its lifetime is absurdly short: no refetch loop.
      if (fetchedHere || cached.expiresAt > Date.now()) return cached.token;
      if (this.tokens.get(key) === entry) this.forget(key);
    }
  }

  private forget(key: string): void {
    this.tokens.delete(key);
    this.expiries.delete(key);
  }

  private pruneExpired(): void {
    const now = Date.now();
    for (const [key, expiresAt] of this.expiries) if (expiresAt <= now) this.forget(key);
  }

  private async fetchToken(
    registry: string,
    challenge: BearerChallenge,
    scopeList: string[],
  ): Promise<CachedToken> {
    const credentials = await this.credentialsFor(registry);
    const startedAt = Date.now();
    const res = credentials?.identityToken
      ? await this.http.send(refreshTokenRequest(challenge, scopeList, credentials.identityToken))
      : await this.http.send(tokenGetRequest(challenge, scopeList, credentials));
    const subject = `token for ${registry} from ${challenge.realm.origin}`;
    if (res.statusCode !== 200) {
      const error = await registryErrorFrom(res, subject);
      if (res.statusCode === 401 || res.statusCode === 403) {
        throw new RegistryError(
          `authentication failed for ${registry}: the token server refused ${credentials ? 'the credentials' : 'anonymous access'} (${error.message})`,
          'UNAUTHORIZED',
          res.statusCode,
        );
      }
      throw error;
    }
    return parseTokenResponse(await readJson(res.body, subject), startedAt, subject);
  }
}

function pickChallenge(
  challenges: AuthChallenge[],
): { challenge: RegistryChallenge; scopes: string[] } | undefined {
  const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
  if (bearer) {
    let realm: URL;
    try {
      realm = new URL(bearer.params.realm!);
    } catch {
      throw new RegistryError(`registry sent a bearer challenge with a bad realm`, 'UNAUTHORIZED', 401);
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw new RegistryError(`registry sent a bearer realm that is not http(s)`, 'UNAUTHORIZED', 401);
    }
    const scopes = (bearer.params.scope ?? '').split(' ').filter(Boolean);
    const service = bearer.params.service;
    return { challenge: { scheme: 'bearer', realm, ...(service ? { service } : {}) }, scopes };
  }
  return challenges.some((c) => c.scheme === 'basic')
    ? { challenge: { scheme: 'basic' }, scopes: [] }
    : undefined;
}

function basicHeader(credentials: RegistryCredentials | undefined): string | undefined {
  if (!credentials || credentials.identityToken) return undefined;
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

/** Ours plus the registry's, deduplicated; actions on the same repository are unioned. */
function mergeScopes(fromChallenge: string[], ours: AccessScope[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const scope of [...fromChallenge, ...ours.map(formatScope)]) {
    const cut = scope.lastIndexOf(':');
    if (cut <= 0) continue;
    const resource = scope.slice(0, cut);
    const actions = byResource.get(resource) ?? new Set<string>();
    for (const action of scope.slice(cut + 1).split(',')) if (action) actions.add(action);
    byResource.set(resource, actions);
  }
  return [...byResource].map(([resource, actions]) => `${resource}:${[...actions].sort().join(',')}`).sort();
}

/** Per registry too: two registries may share a token server but not credentials. */
function tokenKey(registry: string, challenge: BearerChallenge, scopeList: string[]): string {
  return `${registry} ${challenge.realm.href} ${challenge.service ?? ''} ${scopeList.join(' ')}`;
}

function tokenGetRequest(
  challenge: BearerChallenge,
  scopes: string[],
  credentials: RegistryCredentials | undefined,
) {
  const url = new URL(challenge.realm);
  if (challenge.service) url.searchParams.set('service', challenge.service);
  for (const scope of scopes) url.searchParams.append('scope', scope);
  const authorization = basicHeader(credentials);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (authorization) headers.authorization = authorization;
  return { method: 'GET' as const, url, headers };
}

/** The OAuth2 refresh-token grant Docker uses for identity tokens. */
function refreshTokenRequest(challenge: BearerChallenge, scopes: string[], identityToken: string) {
  const form = new URLSearchParams({
    grant_type: 'refresh_token',
    refresh_token: identityToken,
    client_id: 'damselfly',
    scope: scopes.join(' '),
  });
  if (challenge.service) form.set('service', challenge.service);
  return {
    method: 'POST' as const,
    url: challenge.realm,
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form.toString(),
  };
}

const MAX_TOKEN_RESPONSE = 1024 * 1024;

async function readJson(
  body: AsyncIterable<Buffer> & { destroy(): void },
  subject: string,
): Promise<unknown> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > MAX_TOKEN_RESPONSE) {
      discardBody(body);
      throw new RegistryError(
        `${subject}: answer larger than ${MAX_TOKEN_RESPONSE} bytes`,
        'UNAUTHORIZED',
        200,
      );
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new RegistryError(`${subject}: answer is not JSON`, 'UNAUTHORIZED', 200);
  }
}

function parseTokenResponse(json: unknown, startedAt: number, subject: string): CachedToken {
  const result = tokenResponseSchema.safeParse(json);
  if (!result.success) throw new RegistryError(`${subject}: unexpected answer`, 'UNAUTHORIZED', 200);
  const token = (result.data.token || result.data.access_token)!;
  if (!HEADER_SAFE.test(token))
    throw new RegistryError(`${subject}: token has invalid characters`, 'UNAUTHORIZED', 200);
  const issuedAt = result.data.issued_at ? Date.parse(result.data.issued_at) : Number.NaN;
  // Trust our own clock over the server's: only use issued_at when it is not in our future.
  const from = Number.isNaN(issuedAt) || issuedAt > Date.now() ? startedAt : issuedAt;
  const lifetimeMs = (result.data.expires_in ?? DEFAULT_TOKEN_LIFETIME_S) * 1000;
  return { token, expiresAt: from + Math.max(lifetimeMs - EXPIRY_MARGIN_MS, lifetimeMs / 2) };
}

/** `promise`, or the signal's reason as soon as it is aborted (the promise itself carries on). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
