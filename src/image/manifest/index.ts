export * from './bootstrap-layer.js';
export * from './media-types.js';
