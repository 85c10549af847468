import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { CredentialsError } from './errors.js';
import { isDockerHub } from './reference.js';

/** A username + password (or personal access token), or an OAuth refresh token from `docker login`. */
export interface RegistryCredentials {
  username: string;
  password: string;
  /** Docker's `identitytoken`: exchanged at the token realm with grant_type=refresh_token. */
  identityToken?: string;
}

/** Looks up credentials by registry name as users write it (`docker.io`, `localhost:5000`). */
export interface CredentialStore {
  get(registry: string, signal?: AbortSignal): Promise<RegistryCredentials | undefined>;
}

/**
 * Reduces a config.json key to host[:port]: keys may be `https://index.docker.io/v1/`, `http://host`,
 * `host/v2/` or plain `host`. Docker Hub's several names all become `docker.io`.
 */
export function normalizeRegistryKey(key: string): string {
  const host = key
    .trim()
    .replace(/^[a-z]+:\/\//i, '')
    .split('/')[0]!
    .toLowerCase();
  return isDockerHub(host) ? 'docker.io' : host;
}

/** Credentials given explicitly (command-line flags, config files of our own). */
export class StaticCredentialStore implements CredentialStore {
  private readonly byRegistry = new Map<string, RegistryCredentials>();

  constructor(entries: Record<string, RegistryCredentials> = {}) {
    for (const [registry, credentials] of Object.entries(entries)) this.set(registry, credentials);
  }

  set(registry: string, credentials: RegistryCredentials): void {
    this.byRegistry.set(normalizeRegistryKey(registry), credentials);
  }

  async get(registry: string): Promise<RegistryCredentials | undefined> {
    return this.byRegistry.get(normalizeRegistryKey(registry));
  }
}

/** Asks each store in turn; the first answer wins (put explicit flags before config files). */
export class ChainedCredentialStore implements CredentialStore {
  constructor(private readonly stores: readonly CredentialStore[]) {}

  async get(registry: string, signal?: AbortSignal): Promise<RegistryCredentials | undefined> {
    for (const store of this.stores) {
      const found = await store.get(registry, signal);
      if (found) return found;
    }
    return undefined;
  }
}

const authEntrySchema = z.object({
  auth: z.string().optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  identitytoken: z.string().optional(),
});

const dockerConfigSchema = z.object({
  auths: z.record(z.string(), authEntrySchema).optional(),
  credsStore: z.string().optional(),
  credHelpers: z.record(z.string(), z.string()).optional(),
});

type DockerConfig = z.infer<typeof dockerConfigSchema>;
type AuthEntry = z.infer<typeof authEntrySchema>;

const helperOutputSchema = z.object({ Username: z.string(), Secret: z.string() });
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const HELPER_TIMEOUT_MS = 30_000;
/** What docker-credential helpers and config.json use as the username of an identity token. */
const IDENTITY_TOKEN_USER = '<token>';

/** The helper program is not on PATH (told apart so a missing default store can mean anonymous). */
class HelperMissingError extends CredentialsError {}

export interface DockerConfigOptions {
  /** The directory holding config.json; default `$DOCKER_CONFIG`, else `~/.docker`. */
  configDir?: string;
  /** Environment for finding the config and running credential helpers; default process.env. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Credentials the way `docker login` stores them in config.json: `auths[host].auth` (base64 of
 * `user:pass`), `username`/`password`, `identitytoken`, and credential helpers run as
 * `docker-credential-<name> get`: `credHelpers[host]` first, then the file's own entry, then `credsStore`.
 * The file is read once, on first use.
 */
export class DockerConfigCredentialStore implements CredentialStore {
  private readonly env: NodeJS.ProcessEnv;
  private readonly path: string;
  private config: Promise<DockerConfig> | undefined;

  constructor(options: DockerConfigOptions = {}) {
    this.env = options.env ?? process.env;
    const dir = options.configDir ?? this.env.DOCKER_CONFIG ?? join(this.env.HOME ?? homedir(), '.docker');
    this.path = join(dir, 'config.json');
  }

  async get(registry: string, signal?: AbortSignal): Promise<RegistryCredentials | undefined> {
    this.config ??= readDockerConfig(this.path);
    const config = await this.config;
    const host = normalizeRegistryKey(registry);
    const hostHelper = hostHelperFor(config, host);
    if (hostHelper) return runCredentialHelper(hostHelper, host, this.env, signal);
    const entry = findAuthEntry(config, host);
    const fromFile = entry ? decodeAuthEntry(entry, this.path, host) : undefined;
    if (fromFile || !config.credsStore) return fromFile;
    try {
      return await runCredentialHelper(config.credsStore, host, this.env, signal);
    } catch (err) {
      // A config.json copied from another machine often names a store this one lacks (`desktop`):
      // public images must still pull, so a missing default store means anonymous.
      if (err instanceof HelperMissingError) return undefined;
      throw err;
    }
  }
}

async function readDockerConfig(path: string): Promise<DockerConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CredentialsError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Never echo the parser's message: it may quote part of a secret.
    throw new CredentialsError(`${path} is not valid JSON`);
  }
  const result = dockerConfigSchema.safeParse(json);
  if (!result.success) {
    const where = result.error.issues[0]?.path.join('.') ?? '';
    throw new CredentialsError(`${path} has an unexpected shape at "${where}"`);
  }
  return result.data;
}

function hostHelperFor(config: DockerConfig, host: string): string | undefined {
  for (const [key, helper] of Object.entries(config.credHelpers ?? {})) {
    if (normalizeRegistryKey(key) === host) return helper;
  }
  return undefined;
}

function findAuthEntry(config: DockerConfig, host: string): AuthEntry | undefined {
  const auths = config.auths ?? {};
  for (const [key, entry] of Object.entries(auths)) {
    if (normalizeRegistryKey(key) === host) return entry;
  }
  return undefined;
}

function decodeAuthEntry(entry: AuthEntry, path: string, host: string): RegistryCredentials | undefined {
  let { username, password } = entry;
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0)
      throw new CredentialsError(`${path}: auths entry for ${host} is not base64 of user:password`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (entry.identitytoken) {
    return {
      username: username ?? IDENTITY_TOKEN_USER,
      password: password ?? '',
      identityToken: entry.identitytoken,
    };
  }
  if (username === undefined || password === undefined) return undefined;
  return { username, password };
}

/** Runs `docker-credential-<helper> get` with the server name on stdin (the helper protocol). */
async function runCredentialHelper(
  helper: string,
  host: string,
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<RegistryCredentials | undefined> {
  if (!HELPER_NAME.test(helper)) throw new CredentialsError(`bad credential helper name "${helper}"`);
  const program = `docker-credential-${helper}`;
  // Docker Hub is stored under its legacy URL by every helper.
  const serverUrl = host === 'docker.io' ? 'https://index.docker.io/v1/' : host;
  const { code, stdout } = await runWithInput(program, serverUrl, env, signal);
  if (code !== 0) {
    if (/credentials not found/i.test(stdout)) return undefined;
    throw new CredentialsError(`${program} get failed for ${host} (exit ${code})`);
  }
  const parsed = helperOutputSchema.safeParse(safeJson(stdout));
  if (!parsed.success) throw new CredentialsError(`${program} printed something other than credentials`);
  const { Username, Secret } = parsed.data;
  if (Username === IDENTITY_TOKEN_USER) return { username: Username, password: '', identityToken: Secret };
  return { username: Username, password: Secret };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function runWithInput(
  program: string,
  input: string,
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, ['get'], {
      env,
      stdio: ['pipe', 'pipe', 'ignore'],
      timeout: HELPER_TIMEOUT_MS,
      ...(signal ? { signal } : {}),
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.on('error', (err) =>
      reject(
        (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? new HelperMissingError(`credential helper ${program} is not installed`)
          : err,
      ),
    );
    child.on('close', (code) => resolve({ code: code ?? -1, stdout }));
    child.stdin.on('error', () => {}); // a helper that exits early closes its stdin
    child.stdin.end(input);
  });
}

/**
 * The usual lookup order: explicit credentials (flags) first, then Docker's config.json.
 */
export function defaultCredentialStore(
  explicit: Record<string, RegistryCredentials> = {},
  options: DockerConfigOptions = {},
): CredentialStore {
  return new ChainedCredentialStore([
    new StaticCredentialStore(explicit),
    new DockerConfigCredentialStore(options),
  ]);
}
