/**
 * A FUSE server in its own process, for tests that kill it or signal it:
 *   node --import tsx test/helpers/fuse-mount-child.ts <mountpoint> [--signals | --exit]
 * Mounts a small in-memory tree with the default options (ro, allow_other …), prints "ready", and
 * serves until killed; with --signals, SIGINT/SIGTERM unmount first (unmountOnTermination); with
 * --exit, the program calls process.exit() while mounted.
 */

import { pino } from 'pino';
import { FuseSession, unmountOnTermination } from '../../src/fuse/index.js';
import { MemoryFilesystem } from './fuse-memory-fs.js';

const [mountpoint, flag] = process.argv.slice(2);
if (!mountpoint) throw new Error('usage: fuse-mount-child.ts <mountpoint> [--signals | --exit]');
const fs = new MemoryFilesystem();
fs.addFile('hello.txt', Buffer.from('hello from the child\n'));
const session = await FuseSession.mount(mountpoint, fs, {
  fsName: 'child-memfs',
  subtype: 'damselfly-test',
  logger: pino({ level: 'silent' }),
});
if (flag === '--signals') unmountOnTermination([session]);
process.stdout.write('ready\n');
if (flag === '--exit') setTimeout(() => process.exit(3), 200);
