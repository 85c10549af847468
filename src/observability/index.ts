export { startMetricsServer } from './http-endpoints.js';
export { createLogger, type Logger } from './logger.js';
