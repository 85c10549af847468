import { z } from 'zod';
import { isContentDigest } from './digest.js';
import { ManifestInvalidError } from './errors.js';

/** The parts of an OCI / Docker image config that converters need; other fields are kept as they are. */
const imageConfigSchema = z.looseObject({
  architecture: z.string().min(1),
  os: z.string().min(1),
  variant: z.string().optional(),
  rootfs: z.object({
    type: z.literal('layers'),
    diff_ids: z.array(z.string().refine(isContentDigest, 'not a sha256/sha512 digest')),
  }),
  config: z.looseObject({}).nullable().optional(),
  history: z.array(z.looseObject({ empty_layer: z.boolean().optional() })).optional(),
});

export type ImageConfig = z.infer<typeof imageConfigSchema>;

/** Validates an image config blob (untrusted bytes). */
export function parseImageConfig(bytes: Buffer): ImageConfig {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ManifestInvalidError(`image config is not JSON: ${(err as Error).message}`);
  }
  const result = imageConfigSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ManifestInvalidError(`image config is invalid: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  return result.data;
}
