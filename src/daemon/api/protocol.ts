import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { MAX_PIECE_LENGTH } from '../../task/index.js';

/** Body of POST /v1/downloads on the daemon's unix socket. */
export const downloadRequestSchema = z
  .object({
    url: z.string().refine((u) => /^https?:\/\//i.test(u) && URL.canParse(u), 'must be an http(s) URL'),
    digest: z.string().optional(),
    tag: z.string().max(256).optional(),
    application: z.string().max(256).optional(),
    priority: z.number().int().min(0).max(6).optional(),
    headers: z.record(z.string(), z.string()).default({}),
    pieceLength: z
      .number()
      .int()
      .min(64 * 1024)
      .max(MAX_PIECE_LENGTH)
      .optional(),
    disableBackToSource: z.boolean().optional(),
    /**
     * Absolute path the daemon writes the finished content to (temp file + fsync + rename, copied in the
     * kernel). Without it the client streams the content from GET /v1/tasks/<id>/content.
     */
    output: z
      .string()
      .refine((p) => isAbsolute(p) && !p.includes('\0'), 'must be an absolute path')
      .optional(),
    /**
     * How the content reaches `output`: 'auto' hard-links it to the daemon's copy when both are on one
     * filesystem (no bytes copied) and copies otherwise; 'hard-link' fails rather than copy; 'copy' always
     * writes an independent file.
     */
    outputMode: z.enum(['auto', 'hard-link', 'copy']).default('auto'),
  })
  .strict();
export type DownloadApiRequest = z.infer<typeof downloadRequestSchema>;

/** NDJSON events streamed back while a download runs. */
export type DownloadEvent =
  | { event: 'started'; taskId: string; peerId: string }
  | {
      event: 'progress';
      contentLength: number;
      completedLength: number;
      p2pBytes: number;
      sourceBytes: number;
    }
  | {
      event: 'done';
      taskId: string;
      contentLength: number;
      p2pBytes: number;
      sourceBytes: number;
      /** How the content reached the output, when one was given. */
      delivery?: 'hard-link' | 'copy';
    }
  | { event: 'error'; message: string };
