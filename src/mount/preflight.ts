/**
 * What must hold before mounting, each failure one clear ImageMountError: root, /dev/fuse, a
 * mountpoint directory. A dead FUSE mount left at the mountpoint by a killed server (the kernel
 * answers ENOTCONN there) is detached first, so a restart after `kill -9` just works.
 */
import { constants } from 'node:fs';
import { access, stat, statfs } from 'node:fs/promises';
import { unmountStale } from '../fuse/index.js';
import type { Logger } from '../observability/index.js';
import { ImageMountError } from './errors.js';

export async function checkCanMount(mountpoint: string, logger: Logger): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new ImageMountError(
      'ENOTROOT',
      'damselfly mount must run as root (it mounts /dev/fuse with mount(8))',
    );
  }
  await access('/dev/fuse', constants.R_OK | constants.W_OK).catch((err: NodeJS.ErrnoException) => {
    throw new ImageMountError(
      'ENOFUSE',
      `FUSE is not available: /dev/fuse ${describe(err)} (try: modprobe fuse)`,
    );
  });
  await checkMountpoint(mountpoint, logger);
}

async function checkMountpoint(mountpoint: string, logger: Logger): Promise<void> {
  try {
    // statfs always reaches the filesystem; stat may be answered from the dead mount's attribute cache.
    await statfs(mountpoint);
    if (!(await stat(mountpoint)).isDirectory()) {
      throw new ImageMountError('EMOUNTPOINT', `mountpoint ${mountpoint} is not a directory`);
    }
  } catch (err) {
    if (err instanceof ImageMountError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' && (await unmountStale(mountpoint))) {
      logger.warn({ mountpoint }, 'detached a dead FUSE mount left at the mountpoint');
      return checkMountpoint(mountpoint, logger);
    }
    throw new ImageMountError(
      'EMOUNTPOINT',
      `mountpoint ${mountpoint}: ${describe(err as NodeJS.ErrnoException)}`,
    );
  }
}

function describe(err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT') return 'does not exist';
  if (err.code === 'EACCES') return 'is not accessible';
  return err.code ?? err.message;
}
