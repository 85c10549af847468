/**
 * Starts a worker thread from a module beside the caller: the compiled `.js` when running from
 * `dist/`, or the `.ts` source when running under tsx (tests, benches) — tsx's loader does not reach
 * worker threads by itself, so the worker registers it first.
 */
import { basename, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** `new URL('./<name>.<same extension as the caller>', callerUrl)`. */
export function siblingModule(callerUrl: string, name: string): URL {
  return new URL(`./${name}${extname(basename(fileURLToPath(callerUrl)))}`, callerUrl);
}

export function startWorker(moduleUrl: URL, options: WorkerOptions = {}): Worker {
  if (!moduleUrl.pathname.endsWith('.ts')) return new Worker(moduleUrl, options);
  // Resolved here: an eval'd worker would resolve 'tsx' against the current directory.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap =
    `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); ` +
    `return import(${JSON.stringify(moduleUrl.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}
