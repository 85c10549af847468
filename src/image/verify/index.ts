export * from './check.js';
export * from './unpack.js';
