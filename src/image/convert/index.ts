export * from './convert.js';
export { ConvertError } from './convert-manifest.js';
