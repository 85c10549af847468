export { type DecodedBootstrap, decodeBootstrap } from './bootstrap-reader.js';
export { encodeBootstrap } from './bootstrap-writer.js';
export { directorySize } from './directory-codec.js';
export { BootstrapFormatError, InvalidImageError } from './errors.js';
export type { ExtensionHeader, TableLocation } from './extension-header.js';
export type { DeviceSlot, Superblock } from './superblock.js';
export * from './tree.js';
