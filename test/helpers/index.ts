export * from './cluster.js';
export * from './files.js';
export * from './metrics.js';
export * from './origin.js';
