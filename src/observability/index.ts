export { createLogger, type Logger } from './logger.js';
export { startMetricsServer } from './http-endpoints.js';
