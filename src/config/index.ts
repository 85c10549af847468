export { ConfigError, loadConfig, mergeConfig } from './load.js';
export { RegistryAddressError, registryOrigin } from './registry-addr.js';
export * from './schemas.js';
export { parseDuration, parseHostPort, parseSize } from './units.js';
