export { ConfigError, loadConfig, mergeConfig } from './load.js';
export { defaultApiSocketPath, defaultDataDir } from './paths.js';
export {
  AUTHORITY,
  checkPort,
  DOCKER_HUB_HOST,
  DOCKER_HUB_ORIGIN,
  parseRegistryAddress,
  type RegistryAddress,
  RegistryAddressError,
  registryOrigin,
} from './registry-addr.js';
export * from './schemas.js';
export { parseDuration, parseHostPort, parseSize } from './units.js';
