import { hostsTomlPath, planContainerdConfig, planHostsToml } from './containerd.js';
import { planDaemonJson } from './docker.js';
import { InitError } from './errors.js';
import { planRegistriesConf } from './podman.js';
import type { ProxyAddress, Registry } from './registry-host.js';

export const RUNTIMES = ['containerd', 'docker', 'podman'] as const;
export type Runtime = (typeof RUNTIMES)[number];

export const DEFAULT_CONFIG_PATHS: Record<Runtime, string> = {
  containerd: '/etc/containerd/config.toml',
  docker: '/etc/docker/daemon.json',
  podman: '/etc/containers/registries.conf',
};

export function parseRuntime(value: string): Runtime {
  if ((RUNTIMES as readonly string[]).includes(value)) return value as Runtime;
  throw new InitError(`unknown container runtime "${value}": expected one of ${RUNTIMES.join(', ')}`);
}

export interface InitRequest {
  runtime: Runtime;
  registries: readonly Registry[];
  proxy: ProxyAddress;
  /** The runtime's config file, absolute. */
  configPath: string;
}

export interface PlannedFile {
  path: string;
  /** The current content; undefined when the file does not exist. */
  before: string | undefined;
  /** The content it should have (equal to `before` when unchanged). */
  after: string;
  changed: boolean;
  /** Rewritten from a parsed TOML tree: the old file's comments and layout are lost (the backup keeps them). */
  rewritesToml: boolean;
}

export interface InitPlan {
  runtime: Runtime;
  /** In the order they should be written: containerd's hosts.toml files before the config that uses them. */
  files: PlannedFile[];
  warnings: string[];
  /** What the user must restart (or that nothing needs a restart). */
  restart: string;
  /** Further things to know, one line each. */
  notes: string[];
}

/** Reads a file, undefined when it does not exist. */
export type ReadFile = (path: string) => Promise<string | undefined>;

function planned(path: string, before: string | undefined, next: string | undefined, toml: boolean) {
  const after = next ?? before ?? '';
  const changed = next !== undefined;
  return { path, before, after, changed, rewritesToml: toml && changed && before !== undefined };
}

/** Works out every file `damselfly init` would write; reads through `read`, writes nothing. */
export async function planInit(req: InitRequest, read: ReadFile): Promise<InitPlan> {
  switch (req.runtime) {
    case 'containerd':
      return planContainerd(req, read);
    case 'docker':
      return planDocker(req, read);
    case 'podman':
      return planPodman(req, read);
  }
}

async function planContainerd(req: InitRequest, read: ReadFile): Promise<InitPlan> {
  const configBefore = await read(req.configPath);
  const config = planContainerdConfig(configBefore, req.configPath);
  const files: PlannedFile[] = [];
  for (const registry of req.registries) {
    const path = hostsTomlPath(config.hostsDir, registry);
    const before = await read(path);
    files.push(planned(path, before, planHostsToml(before, registry, req.proxy, path), true));
  }
  const configFile = planned(req.configPath, configBefore, config.content, true);
  files.push(configFile);
  const hostsChanged = files.some((f) => f.changed && f !== configFile);
  const restart = configFile.changed
    ? `restart containerd to load ${req.configPath} (systemctl restart containerd); ` +
      'the hosts.toml files need no restart'
    : hostsChanged
      ? 'no restart needed: containerd reads hosts.toml on every pull'
      : 'nothing to restart';
  return {
    runtime: 'containerd',
    files,
    warnings: [],
    restart,
    notes: [
      `CRI pulls (kubelet, crictl) use ${config.configPathKey}; ` +
        `for ctr pass --hosts-dir ${config.hostsDir}`,
    ],
  };
}

async function planDocker(req: InitRequest, read: ReadFile): Promise<InitPlan> {
  const before = await read(req.configPath);
  const plan = planDaemonJson(before, req.registries, req.proxy, req.configPath);
  if (!plan.applies) {
    return {
      runtime: 'docker',
      files: [],
      warnings: plan.warnings,
      restart: 'nothing to restart',
      notes: [`${req.configPath} left as it is: none of the registries is Docker Hub`],
    };
  }
  const file = planned(req.configPath, before, plan.content, false);
  return {
    runtime: 'docker',
    files: [file],
    warnings: plan.warnings,
    restart: file.changed
      ? 'restart dockerd to load daemon.json (systemctl restart docker; registry-mirrors and ' +
        'insecure-registries also take effect on a reload: systemctl reload docker)'
      : 'nothing to restart',
    notes: [],
  };
}

async function planPodman(req: InitRequest, read: ReadFile): Promise<InitPlan> {
  const before = await read(req.configPath);
  const plan = planRegistriesConf(before, req.registries, req.proxy, req.configPath);
  const file = planned(req.configPath, before, plan.content, true);
  const upstream = req.registries.length === 1 ? req.registries[0]!.origin : '<the registry>';
  return {
    runtime: 'podman',
    files: [file],
    warnings: plan.warnings,
    restart: file.changed
      ? 'no restart needed: podman, skopeo and buildah read registries.conf on every run ' +
        '(restart CRI-O if it uses this file)'
      : 'nothing to restart',
    notes: [
      'podman and skopeo send no registry hint to the mirror: the daemon serving ' +
        `${req.proxy.authority} must have proxy.registryMirror.addr: ${upstream} in its config`,
    ],
  };
}
