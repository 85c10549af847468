import { resolve } from 'node:path';
import { Command } from 'commander';
import {
  type ApplyOutcome,
  applyPlan,
  DEFAULT_CA_DIR,
  DEFAULT_CONFIG_PATHS,
  DEFAULT_PROXY,
  InitError,
  type InitPlan,
  initCa,
  parseProxy,
  parseRegistries,
  parseRuntime,
  planInit,
  readIfExists,
} from '../init/index.js';

interface InitFlags {
  registry?: string[];
  proxy: string;
  configPath?: string;
  dryRun?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function initCommand(): Command {
  return new Command('init')
    .summary('point containerd, Docker or Podman image pulls at the daemon (dfinit)')
    .description(
      "Writes the container runtime's config so that its image pulls go through the Damselfly daemon's " +
        'registry mirror (its proxy port, default 127.0.0.1:4001), merging with what is there. A changed ' +
        'file is first copied to <file>.bak (or <file>.bak.<n>: no backup is ever overwritten), then ' +
        'replaced atomically. TOML files are rewritten from their parsed content, so their comments and ' +
        'layout are lost: the backup keeps them. A second run changes nothing. ' +
        'See docs/runtime-integration.md.',
    )
    .argument('<runtime>', "containerd, docker or podman; or ca (a CA for the proxy's TLS interception)")
    .option(
      '--registry <host,...>',
      'registries to pull through the daemon: host[:port] (https) or http(s)://host[:port]; ' +
        'docker.io means Docker Hub (comma-separated, repeatable; required)',
      collect,
    )
    .option('--proxy <addr>', "the daemon's proxy address, host:port or http://host:port", DEFAULT_PROXY)
    .option(
      '--config-path <file>',
      `the runtime's config file (default: containerd ${DEFAULT_CONFIG_PATHS.containerd}, docker ` +
        `${DEFAULT_CONFIG_PATHS.docker}, podman ${DEFAULT_CONFIG_PATHS.podman}); for ca, the directory ` +
        `for ca.crt and ca.key (default ${DEFAULT_CA_DIR})`,
    )
    .option('--dry-run', 'write nothing; print each file as it would be written and what to restart')
    .addHelpText(
      'after',
      '\nWhat each runtime gets:\n' +
        '  containerd  config.toml: the CRI registry config_path (kept if already set; default\n' +
        '              <dir of config.toml>/certs.d); per registry <hosts dir>/<host>/hosts.toml with the\n' +
        '              daemon as first host and the registry as server (the fallback). Restart containerd\n' +
        '              when config.toml changed; hosts.toml changes apply on the next pull.\n' +
        '  docker      daemon.json: the daemon first in registry-mirrors (plus insecure-registries when\n' +
        '              the proxy is not on loopback). Docker mirrors Docker Hub only. Restart dockerd.\n' +
        '  podman      registries.conf (also read by skopeo, buildah, CRI-O): per registry a [[registry]]\n' +
        '              whose first [[registry.mirror]] is the daemon. The daemon must have that registry\n' +
        '              as proxy.registryMirror.addr (podman names no upstream). No restart.\n' +
        '  ca          <dir>/ca.crt and <dir>/ca.key (0600): a new CA for proxy.interception, so HTTPS\n' +
        '              downloads through the proxy can go P2P; never replaces an existing CA. Clients\n' +
        '              must trust ca.crt. Restart the daemon.\n' +
        '\nExamples:\n' +
        '  damselfly init containerd --registry docker.io,ghcr.io\n' +
        '  damselfly init containerd --registry http://127.0.0.1:5000 --proxy 10.0.0.5:4001\n' +
        '  damselfly init docker --registry docker.io\n' +
        '  damselfly init podman --registry registry.example.com --dry-run\n' +
        '  damselfly init containerd --registry docker.io --config-path /tmp/k/config.toml --dry-run\n' +
        '  damselfly init ca --config-path /etc/damselfly\n',
    )
    .action(async (runtimeName: string, flags: InitFlags) => {
      if (runtimeName === 'ca') {
        const dir = resolve(flags.configPath?.trim() || DEFAULT_CA_DIR);
        process.stdout.write(await initCa(dir, { dryRun: Boolean(flags.dryRun) }));
        return;
      }
      const runtime = parseRuntime(runtimeName);
      if (!flags.registry?.length) {
        throw new InitError('--registry is required: name the registries to pull through the daemon');
      }
      const registries = parseRegistries(flags.registry);
      const proxy = parseProxy(flags.proxy);
      if (flags.configPath !== undefined && flags.configPath.trim() === '') {
        throw new InitError('--config-path must not be empty');
      }
      const configPath = resolve(flags.configPath ?? DEFAULT_CONFIG_PATHS[runtime]);
      const plan = await planInit({ runtime, registries, proxy, configPath }, readIfExists);
      for (const warning of plan.warnings) process.stderr.write(`damselfly: warning: ${warning}\n`);
      const dryRun = Boolean(flags.dryRun);
      const outcomes = await applyPlan(plan, { dryRun });
      process.stdout.write(report(plan, outcomes, dryRun));
    });
}

/** One line per file (with a dry run, the full new content too), notes, then what to restart. */
export function report(plan: InitPlan, outcomes: readonly ApplyOutcome[], dryRun: boolean): string {
  const lines: string[] = [];
  for (const [i, outcome] of outcomes.entries()) {
    const file = plan.files[i]!;
    const lost = file.rewritesToml ? '; comments and layout of the old file are not kept' : '';
    const backup = outcome.backup ? ` (backup: ${outcome.backup}${lost})` : '';
    if (outcome.action === 'unchanged') lines.push(`unchanged ${outcome.path}`);
    else if (!dryRun) lines.push(`${outcome.action} ${outcome.path}${backup}`);
    else {
      const verb = outcome.action === 'created' ? 'create' : 'update';
      lines.push(`would ${verb} ${outcome.path}${backup}:`, file.after.trimEnd(), '');
    }
  }
  if (plan.files.length > 0 && outcomes.every((o) => o.action === 'unchanged')) {
    lines.push('already configured: nothing written');
  }
  for (const note of plan.notes) lines.push(`note: ${note}`);
  lines.push(dryRun ? `dry run, nothing written; after a real run: ${plan.restart}` : plan.restart);
  return `${lines.join('\n')}\n`;
}
