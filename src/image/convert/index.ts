export * from './convert.js';
export { ConvertError } from './convert-manifest.js';
export {
  checkPrefetchPaths,
  nodeAtPath,
  PrefetchListError,
  parsePrefetchList,
  readPrefetchList,
} from './prefetch-list.js';
