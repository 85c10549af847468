import type { Command } from 'commander';
import {
  defaultCredentialStore,
  parseReference,
  RegistryClient,
  type RegistryCredentials,
} from '../image/oci/index.js';
import type { Logger } from '../observability/index.js';
import { UserError } from './run.js';

/** `USER:PASSWORD` as skopeo takes it; the password may hold colons. */
export function parseCredentials(flag: string, value: string): RegistryCredentials {
  const colon = value.indexOf(':');
  if (colon <= 0) throw new UserError(`${flag} must be USER:PASSWORD`);
  return { username: value.slice(0, colon), password: value.slice(colon + 1) };
}

/** Adds `--plain-http` and `--creds` (or the flags named) to a command that talks to registries. */
export function withRegistryOptions(command: Command, credentialFlags: string[] = ['--creds']): Command {
  command.option(
    '--plain-http',
    'talk HTTP, not HTTPS, to the registry (default: only for localhost/127.0.0.1)',
  );
  for (const flag of credentialFlags)
    command.option(
      `${flag} <user:password>`,
      'registry credentials (default: ~/.docker/config.json or $DOCKER_CONFIG, else anonymous)',
    );
  return command;
}

/**
 * A registry client with credentials from the flags first, then the docker config. `credentials`
 * pairs an image reference (whose registry they are for) with a `USER:PASSWORD` flag value.
 */
export function registryClient(
  plainHttp: boolean | undefined,
  credentials: Array<{ flag: string; ref: string; value?: string }> = [],
  logger?: Logger,
  /** Pull through a Damselfly daemon's registry mirror at this origin. */
  mirror?: string,
): RegistryClient {
  const explicit: Record<string, RegistryCredentials> = {};
  for (const { flag, ref, value } of credentials) {
    if (value === undefined) continue;
    const registry = parseReference(ref).registry;
    const given = parseCredentials(flag, value);
    const earlier = explicit[registry];
    if (earlier && (earlier.username !== given.username || earlier.password !== given.password))
      throw new UserError(`different credentials given for the same registry ${registry}`);
    explicit[registry] = given;
  }
  return new RegistryClient({
    ...(plainHttp !== undefined ? { plainHttp } : {}),
    credentials: defaultCredentialStore(explicit),
    ...(logger ? { logger } : {}),
    ...(mirror ? { mirror } : {}),
  });
}
