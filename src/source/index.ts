export { readExactly, ShortBodyError } from './body.js';
export { fetchRange, fetchWhole, type Headers, SourceError, type SourceInfo, statSource } from './http.js';
export { type GetIntoOptions, getIntoBuffer } from './into-buffer.js';
