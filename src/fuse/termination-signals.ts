/**
 * Unmount on SIGINT/SIGTERM. The library never exits the process: once every session is unmounted
 * the signal is raised again with its default action (so the exit status still says "killed by
 * SIGTERM"), unless the caller takes over with `onUnmounted`. A second signal during the unmount
 * gets the default action at once.
 */
import type { FuseSession } from './session.js';

export interface TerminationOptions {
  signals?: NodeJS.Signals[];
  /** Called instead of re-raising the signal once the sessions are unmounted. */
  onUnmounted?: (signal: NodeJS.Signals) => void;
}

/** Installs the handlers; returns a function that removes them. */
export function unmountOnTermination(sessions: FuseSession[], options: TerminationOptions = {}): () => void {
  const signals = options.signals ?? ['SIGINT', 'SIGTERM'];
  const remove = () => {
    for (const signal of signals) process.off(signal, onSignal);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    remove();
    void Promise.allSettled(sessions.map((session) => session.unmount())).then(() => {
      if (options.onUnmounted) options.onUnmounted(signal);
      else process.kill(process.pid, signal);
    });
  };
  for (const signal of signals) process.on(signal, onSignal);
  return remove;
}
