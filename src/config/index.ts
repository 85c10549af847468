export { ConfigError, loadConfig, mergeConfig } from './load.js';
export * from './schemas.js';
export { parseDuration, parseHostPort, parseSize } from './units.js';
