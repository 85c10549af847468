export { parseByteRange } from './byte-range.js';
export type { ProxyRule } from './rules.js';
export { type ProxyOptions, ProxyServer } from './server.js';
export { REGISTRY_HEADER, resolveUpstream } from './upstream.js';
