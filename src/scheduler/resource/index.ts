export { Dag, DagCycleError } from './dag.js';
export { DEFAULT_ANNOUNCE_INTERVAL_MS, Host, type HostKind } from './host.js';
export { Peer, type PeerConnection, type PeerState, PIECE_COST_WINDOW } from './peer.js';
export {
  type GcLimits,
  type GcResult,
  type RemovalReason,
  ResourceStore,
  type StoreListener,
} from './store.js';
export { type SeedTrigger, Task, type TaskState } from './task.js';
