import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { RegistryError } from './errors.js';
import { discardBody } from './response-body.js';

/** Error bodies are a few hundred bytes; read no more than this of one. */
const MAX_ERROR_BODY = 64 * 1024;

const errorBodySchema = z.object({
  errors: z
    .array(
      z.object({
        code: z.string().optional(),
        message: z.string().optional(),
        detail: z.unknown().optional(),
      }),
    )
    .min(1),
});

const STATUS_CODES: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'DENIED',
  404: 'NOT_FOUND',
  405: 'UNSUPPORTED',
  409: 'CONFLICT',
  416: 'RANGE_INVALID',
  429: 'TOOMANYREQUESTS',
};

async function readCapped(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    total += chunk.length;
    if (total >= MAX_ERROR_BODY) {
      discardBody(body);
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY).toString('utf8');
}

/** Keeps only printable characters: error text from a registry ends up on users' terminals. */
function printable(text: string, max = 300): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  const clean = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/**
 * Turns a failed response into a RegistryError, using the registry's error JSON when there is one:
 * `manifest unknown: localhost:5000/foo:bar` (code MANIFEST_UNKNOWN, status 404).
 */
export async function registryErrorFrom(
  res: Dispatcher.ResponseData,
  subject: string,
): Promise<RegistryError> {
  const text = await readCapped(res.body).catch(() => '');
  const parsed = errorBodySchema.safeParse(safeJson(text));
  const status = res.statusCode;
  if (parsed.success) {
    const first = parsed.data.errors[0]!;
    const code = printable(first.code ?? '', 64) || STATUS_CODES[status] || 'UNKNOWN';
    const message = printable(first.message ?? '') || code.toLowerCase().replace(/_/g, ' ');
    return new RegistryError(`${message}: ${subject}`, code, status);
  }
  const code = STATUS_CODES[status] ?? (status >= 500 ? 'UNAVAILABLE' : 'UNEXPECTED_STATUS');
  return new RegistryError(`registry answered HTTP ${status}: ${subject}`, code, status);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
