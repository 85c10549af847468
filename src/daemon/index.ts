export { type DownloadApiRequest, type DownloadEvent, downloadRequestSchema } from './api/protocol.js';
export { type RunningDaemon, startDaemon } from './daemon.js';
