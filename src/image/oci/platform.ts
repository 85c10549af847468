import { arch as hostArch, config as nodeBuildConfig } from 'node:process';

/** The platform fields of an index entry (OCI image-index / Docker manifest list). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH_ALIASES: Record<string, Platform['architecture']> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  x64: 'amd64',
  aarch64: 'arm64',
  armhf: 'arm',
  armel: 'arm',
  i386: '386',
  i686: '386',
  ia32: '386',
};

/** Variants implied by an arch alias (`armhf` is ARMv7, `armel` ARMv6). */
const ALIAS_VARIANT: Record<string, string> = { armhf: 'v7', armel: 'v6' };

/** What an empty variant means for an architecture (containerd's normalization). */
const DEFAULT_VARIANT: Record<string, string> = { arm64: 'v8', arm: 'v7', amd64: 'v1' };

/**
 * Lowercases and folds aliases: `x86_64` → amd64, `aarch64` → arm64 (v8), `armhf` → arm v7.
 * The variant is always filled in where the architecture has a default, so that
 * `linux/arm64` and `linux/arm64/v8` compare equal.
 */
export function normalizePlatform(platform: Platform): Required<Platform> {
  const rawArch = platform.architecture.toLowerCase();
  const architecture = ARCH_ALIASES[rawArch] ?? rawArch;
  const variant = (
    platform.variant ||
    ALIAS_VARIANT[rawArch] ||
    DEFAULT_VARIANT[architecture] ||
    ''
  ).toLowerCase();
  return { os: platform.os.toLowerCase(), architecture, variant };
}

/** Parses `os/arch[/variant]`, e.g. `linux/amd64`, `linux/arm64/v8`. */
export function parsePlatform(value: string): Platform {
  const parts = value.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[A-Za-z0-9_.-]+$/.test(p))) {
    throw new TypeError(`invalid platform "${value}": expected os/arch[/variant], e.g. linux/amd64`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** The platform containers run as on this host: images are Linux images even on a macOS laptop. */
export function hostPlatform(): Platform {
  const architecture = hostArch === 'x64' ? 'amd64' : hostArch === 'ia32' ? '386' : hostArch;
  if (architecture !== 'arm') return { os: 'linux', architecture };
  // 32-bit ARM builds of Node record which ARM version they were built for.
  const armVersion = (nodeBuildConfig.variables as Record<string, unknown>).arm_version;
  return armVersion
    ? { os: 'linux', architecture, variant: `v${armVersion}` }
    : { os: 'linux', architecture };
}

/** `v7` → 7; anything that is not `v<number>` → undefined. */
function variantLevel(variant: string): number | undefined {
  const m = /^v(\d+)$/.exec(variant);
  return m ? Number(m[1]) : undefined;
}

/**
 * How well `candidate` serves `wanted`: undefined when it cannot run there, else higher is better.
 * OS and architecture must match after normalization. Numbered variants are backward compatible
 * (an ARMv7 host runs v6 and v5 images; an amd64 v3 host runs v1), and the closest one wins.
 */
export function platformScore(wanted: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(wanted);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return undefined;
  if (w.variant === c.variant) return 1000;
  const wl = variantLevel(w.variant);
  const cl = variantLevel(c.variant);
  if (wl === undefined || cl === undefined || cl > wl) return undefined;
  return 1000 - (wl - cl);
}

/** The index of the best entry for `wanted` among `candidates`, or -1. Ties go to the earlier entry. */
export function choosePlatform(wanted: Platform, candidates: readonly (Platform | undefined)[]): number {
  let best = -1;
  let bestScore = -1;
  candidates.forEach((candidate, i) => {
    const score = candidate ? platformScore(wanted, candidate) : undefined;
    if (score !== undefined && score > bestScore) {
      best = i;
      bestScore = score;
    }
  });
  return best;
}
