export * from './blob-chunks.js';
export * from './image-source.js';
