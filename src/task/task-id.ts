import { createHash } from 'node:crypto';

/** Query parameters that change between requests for the same object (presigned URLs, containerd's ns). */
export const DEFAULT_FILTERED_QUERY_PARAMS: readonly string[] = [
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
  'X-Amz-Security-Token',
  'X-Amz-User-Agent',
  'X-Goog-Algorithm',
  'X-Goog-Credential',
  'X-Goog-Date',
  'X-Goog-Expires',
  'X-Goog-SignedHeaders',
  'X-Goog-Signature',
  'OSSAccessKeyId',
  'Expires',
  'Signature',
  'SecurityToken',
  'AccessKeyId',
  'X-Obs-Date',
  'X-Obs-Security-Token',
  'q-sign-algorithm',
  'q-ak',
  'q-sign-time',
  'q-key-time',
  'q-header-list',
  'q-url-param-list',
  'q-signature',
  'x-cos-security-token',
  'ns',
];

export interface TaskIdInput {
  url: string;
  tag?: string;
  application?: string;
  /** Only when the caller chose it explicitly. */
  pieceLength?: number;
  filteredQueryParams?: readonly string[];
}

/**
 * Canonical URL for task identity: WHATWG normalisation (lower-case scheme and host), filtered query
 * params removed with the rest kept in their original order, a bare "/" path dropped. This is the
 * Rust dfdaemon's canonicalisation, so our ids match Dragonfly's for the same inputs.
 */
export function normalizeUrl(
  raw: string,
  filtered: readonly string[] = DEFAULT_FILTERED_QUERY_PARAMS,
): string {
  const url = new URL(raw);
  const drop = new Set(filtered);
  const kept = [...url.searchParams].filter(([k]) => !drop.has(k));
  url.search = kept.length ? new URLSearchParams(kept).toString() : '';
  url.hash = '';
  let out = url.toString();
  if (url.pathname === '/' && !url.search) out = out.replace(/\/$/, '');
  return out;
}

/** Task id = hex(sha256(url + tag + application + pieceLength + "STANDARD")), as Dragonfly v2. */
export function taskId(input: TaskIdInput): string {
  const h = createHash('sha256');
  h.update(normalizeUrl(input.url, input.filteredQueryParams));
  if (input.tag) h.update(input.tag);
  if (input.application) h.update(input.application);
  if (input.pieceLength) h.update(String(input.pieceLength));
  h.update('STANDARD');
  return h.digest('hex');
}

export function isTaskId(value: string): boolean {
  return /^[0-9a-f]{64}$/.test(value);
}
