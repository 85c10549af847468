export * from './digest.js';
export * from './piece.js';
export * from './priority.js';
export * from './staging.js';
export * from './task-id.js';
