export { StorageError, type StorageErrorCode } from './errors.js';
export { TaskStorage, type TaskStorageEvents } from './task-storage.js';
export type { PieceRecord, StorageOptions, StorageUsage, TaskMeta, TaskRecord, TaskState } from './types.js';
