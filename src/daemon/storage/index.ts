export { StorageError, type StorageErrorCode } from './errors.js';
export { type Delivery, type ExportMode, TaskStorage, type TaskStorageEvents } from './task-storage.js';
export type { PieceRecord, StorageOptions, StorageUsage, TaskMeta, TaskRecord, TaskState } from './types.js';
