import type { IncomingHttpHeaders } from 'node:http';

/** The first value of a header that may have been sent several times. */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Content-Length as a safe integer, or undefined when missing or malformed. */
export function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const value = headerValue(headers['content-length']);
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** `Content-Range: bytes <start>-<end>/<total|*>` → [start, end], or undefined. */
export function contentRange(headers: IncomingHttpHeaders): [number, number] | undefined {
  const m = /^bytes (\d+)-(\d+)\/(?:\d+|\*)$/.exec(headerValue(headers['content-range'])?.trim() ?? '');
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}
