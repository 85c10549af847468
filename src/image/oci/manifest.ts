import { z } from 'zod';
import { isContentDigest } from './digest.js';
import { ManifestInvalidError, UnsupportedMediaTypeError } from './errors.js';
import {
  type ImageIndexMediaType,
  type ImageManifestMediaType,
  isImageIndexMediaType,
  isImageManifestMediaType,
  OCI_INDEX,
  OCI_MANIFEST,
} from './media-types.js';

/** Manifests are small; anything bigger is a broken or hostile registry (containerd uses the same cap). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

const digestSchema = z.string().refine(isContentDigest, 'not a sha256/sha512 digest in canonical form');
const annotationsSchema = z.record(z.string(), z.string());

const platformSchema = z.object({
  architecture: z.string().min(1),
  os: z.string().min(1),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
  variant: z.string().optional(),
  features: z.array(z.string()).optional(),
});

const descriptorSchema = z.object({
  mediaType: z.string().regex(MEDIA_TYPE, 'not a media type'),
  digest: digestSchema,
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  urls: z.array(z.string()).optional(),
  annotations: annotationsSchema.optional(),
  platform: platformSchema.optional(),
  artifactType: z.string().optional(),
  data: z.string().optional(),
});

export type Descriptor = z.infer<typeof descriptorSchema>;

const imageManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
  subject: descriptorSchema.optional(),
  annotations: annotationsSchema.optional(),
});

const imageIndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  manifests: z.array(descriptorSchema),
  subject: descriptorSchema.optional(),
  annotations: annotationsSchema.optional(),
});

/** An OCI image manifest or a Docker v2 schema 2 manifest (same shape). */
export type ImageManifest = z.infer<typeof imageManifestSchema>;
/** An OCI image index or a Docker manifest list (same shape). */
export type ImageIndex = z.infer<typeof imageIndexSchema>;

export type ParsedManifest =
  | { kind: 'manifest'; mediaType: ImageManifestMediaType; json: ImageManifest }
  | { kind: 'index'; mediaType: ImageIndexMediaType; json: ImageIndex };

function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const path = issue.path.length ? issue.path.join('.') : '(root)';
  return `${path}: ${issue.message}`;
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ManifestInvalidError(`${what} is not JSON: ${(err as Error).message}`);
  }
}

/** The media type a document declares in its own `mediaType` field, if any. */
function declaredMediaType(json: unknown): string | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const value = (json as { mediaType?: unknown }).mediaType;
  return typeof value === 'string' ? value : undefined;
}

/**
 * Which media type to parse `json` as. The registry's Content-Type is the authority; when it is
 * missing or generic (`application/json`, `text/plain`), the document's own `mediaType` decides,
 * and an OCI document without either is told apart by having `manifests` or `layers`.
 */
function resolveMediaType(contentType: string | undefined, json: unknown): string {
  const header = contentType?.split(';')[0]?.trim().toLowerCase();
  const declared = declaredMediaType(json);
  if (
    header &&
    header !== 'application/json' &&
    header !== 'text/plain' &&
    header !== 'application/octet-stream'
  ) {
    if (declared !== undefined && declared !== header) {
      throw new ManifestInvalidError(`manifest declares media type ${declared} but was served as ${header}`);
    }
    return header;
  }
  if (declared !== undefined) return declared;
  if (typeof json === 'object' && json !== null && 'manifests' in json) return OCI_INDEX;
  if (typeof json === 'object' && json !== null && 'layers' in json) return OCI_MANIFEST;
  return header ?? 'unknown';
}

/** Validates untrusted manifest bytes; unknown types raise UnsupportedMediaTypeError naming the type. */
export function parseManifest(
  bytes: Buffer,
  contentType: string | undefined,
  what = 'manifest',
): ParsedManifest {
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new ManifestInvalidError(`${what} is larger than ${MAX_MANIFEST_BYTES} bytes`);
  }
  const json = parseJson(bytes, what);
  const mediaType = resolveMediaType(contentType, json);
  if (isImageManifestMediaType(mediaType)) {
    const result = imageManifestSchema.safeParse(json);
    if (!result.success) throw new ManifestInvalidError(`${what} is invalid: ${describeIssue(result.error)}`);
    return { kind: 'manifest', mediaType, json: result.data };
  }
  if (isImageIndexMediaType(mediaType)) {
    const result = imageIndexSchema.safeParse(json);
    if (!result.success) throw new ManifestInvalidError(`${what} is invalid: ${describeIssue(result.error)}`);
    return { kind: 'index', mediaType, json: result.data };
  }
  throw new UnsupportedMediaTypeError(mediaType, 'manifest');
}
