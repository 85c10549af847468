export { AsyncQueue } from './async-queue.js';
export { ChangeSignal } from './change-signal.js';
export { Semaphore } from './semaphore.js';
export { siblingModule, startWorker } from './worker-thread.js';
