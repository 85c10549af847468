import type { Download, Host as HostMessage } from '../../rpc/index.js';
import { Host } from './host.js';
import { Peer, type PeerState } from './peer.js';
import { Task } from './task.js';

export type RemovalReason = 'leave' | 'stream-closed' | 'host-gone' | 'ttl' | 'gc' | 'replaced';

export interface StoreListener {
  /** Called after a peer left its task (its state is now Failed or Leave; `previous` is the one before). */
  peerRemoved(peer: Peer, reason: RemovalReason, previous: PeerState): void;
}

export interface GcLimits {
  peerTtl: number;
  taskTtl: number;
}

export interface GcResult {
  /** Ids of the hosts removed. */
  hosts: string[];
  peers: number;
  tasks: number;
}

/** All scheduler state: hosts, tasks, their peers and DAGs. In memory, like Dragonfly's scheduler. */
export class ResourceStore {
  readonly hosts = new Map<string, Host>();
  readonly tasks = new Map<string, Task>();

  constructor(private readonly listener: StoreListener) {}

  announceHost(msg: HostMessage, intervalMs: number, now: number): Host {
    let host = this.hosts.get(msg.id);
    if (!host) {
      host = new Host(msg.id);
      this.hosts.set(msg.id, host);
    }
    host.update(msg, intervalMs, now);
    return host;
  }

  /** Forgets the host; its peers leave their tasks. */
  removeHost(id: string, now: number, reason: RemovalReason = 'host-gone'): Host | undefined {
    const host = this.hosts.get(id);
    if (!host) return undefined;
    this.hosts.delete(id);
    for (const peer of [...host.peers]) this.removePeer(peer, now, reason);
    return host;
  }

  getOrCreateTask(id: string, download: Download, now: number): Task {
    let task = this.tasks.get(id);
    if (!task) {
      task = new Task(id, download, now);
      this.tasks.set(id, task);
    }
    task.updatedAt = now;
    return task;
  }

  findPeer(taskId: string, peerId: string): Peer | undefined {
    return this.tasks.get(taskId)?.peers.get(peerId);
  }

  /** Creates a peer; an existing peer with the same id (a re-register) is removed first. */
  addPeer(task: Task, host: Host, peerId: string, download: Download, now: number): Peer {
    const old = task.peers.get(peerId);
    if (old) this.removePeer(old, now, 'replaced');
    const peer = new Peer(peerId, task, host, download, now);
    task.peers.set(peerId, peer);
    task.dag.addVertex(peerId);
    task.emptySince = undefined;
    host.peers.add(peer);
    return peer;
  }

  /** Takes the peer out of its task, DAG and host. A peer that had not finished ends in `Leave`. */
  removePeer(peer: Peer, now: number, reason: RemovalReason, state: PeerState = 'Leave'): void {
    const task = peer.task;
    if (task.peers.get(peer.id) !== peer) return;
    const previous = peer.state;
    if (!peer.isTerminal()) peer.state = state;
    task.peers.delete(peer.id);
    task.dag.deleteVertex(peer.id);
    peer.host.peers.delete(peer);
    if (task.peers.size === 0) task.emptySince = now;
    this.listener.peerRemoved(peer, reason, previous);
  }

  /**
   * One GC pass: dead hosts (and their peers), peers idle longer than peerTtl, Failed/Leave peers,
   * and tasks that have had no peer for taskTtl.
   */
  gc(now: number, limits: GcLimits): GcResult {
    const result: GcResult = { hosts: [], peers: 0, tasks: 0 };
    for (const host of [...this.hosts.values()]) {
      if (host.isDead(now)) {
        result.peers += host.peers.size;
        this.removeHost(host.id, now, 'host-gone');
        result.hosts.push(host.id);
      }
    }
    for (const task of this.tasks.values()) {
      for (const peer of [...task.peers.values()]) {
        if (peer.isTerminal()) {
          this.removePeer(peer, now, 'gc');
          result.peers++;
        } else if (now - peer.updatedAt > limits.peerTtl) {
          this.removePeer(peer, now, 'ttl');
          result.peers++;
        }
      }
    }
    for (const task of [...this.tasks.values()]) {
      if (task.peers.size === 0 && task.emptySince !== undefined && now - task.emptySince > limits.taskTtl) {
        this.tasks.delete(task.id);
        result.tasks++;
      }
    }
    return result;
  }

  peerCount(): number {
    let n = 0;
    for (const task of this.tasks.values()) n += task.peers.size;
    return n;
  }
}
