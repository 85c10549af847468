export type { ProxyRule } from './rules.js';
export { type ProxyOptions, ProxyServer } from './server.js';
