import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Headers about one connection (RFC 9110 §7.6.1) plus the proxy's own: never forwarded either way. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

/** Request headers that describe how the client wants this response, not who it is. */
const PER_RESPONSE = new Set(['range', 'if-range', 'if-none-match', 'if-modified-since', 'accept-encoding']);

function flatten(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function listedInConnection(headers: IncomingHttpHeaders): Set<string> {
  const named = flatten(headers.connection) ?? '';
  return new Set(
    named
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** The client's request headers as they should reach the registry or origin on a direct pass-through. */
export function forwardRequestHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const dropped = listedInConnection(headers);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (HOP_BY_HOP.has(name) || dropped.has(name) || name.startsWith('x-damselfly-')) continue;
    const v = flatten(value);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/**
 * The headers a P2P task sends to the origin when a peer fetches it: the client's identity (authorization,
 * cookies, user agent) but nothing that shapes one response — pieces need identity-encoded byte ranges.
 */
export function taskOriginHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out = forwardRequestHeaders(headers);
  for (const name of PER_RESPONSE) delete out[name];
  return out;
}

/** An upstream answer's headers as they should reach the client. */
export function forwardResponseHeaders(
  headers: Record<string, string | string[] | undefined>,
): OutgoingHttpHeaders {
  const dropped = listedInConnection(headers as IncomingHttpHeaders);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || dropped.has(lower) || value === undefined) continue;
    out[lower] = value;
  }
  return out;
}
