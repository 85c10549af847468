export { ConfigError, loadConfig, mergeConfig } from './load.js';
export * from './schemas.js';
