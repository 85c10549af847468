export { type ApplyOutcome, applyPlan, readIfExists } from './apply.js';
export { DEFAULT_CA_DIR, initCa } from './ca.js';
export {
  type ContainerdConfigPlan,
  hostsTomlPath,
  planContainerdConfig,
  planHostsToml,
  REGISTRY_HEADER,
} from './containerd.js';
export { type DockerPlan, planDaemonJson } from './docker.js';
export { InitError } from './errors.js';
export {
  DEFAULT_CONFIG_PATHS,
  type InitPlan,
  type InitRequest,
  type PlannedFile,
  parseRuntime,
  planInit,
  type ReadFile,
  RUNTIMES,
  type Runtime,
} from './plan.js';
export { type PodmanPlan, planRegistriesConf } from './podman.js';
export {
  DEFAULT_PROXY,
  DOCKER_HUB_HOST,
  DOCKER_HUB_ORIGIN,
  type ProxyAddress,
  parseProxy,
  parseRegistries,
  parseRegistry,
  type Registry,
} from './registry-host.js';
