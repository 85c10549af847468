import { z } from 'zod';

/** Body of POST /v1/downloads on the daemon's unix socket. */
export const downloadRequestSchema = z
  .object({
    url: z.string().refine((u) => /^https?:\/\//i.test(u) && URL.canParse(u), 'must be an http(s) URL'),
    digest: z.string().optional(),
    tag: z.string().max(256).optional(),
    application: z.string().max(256).optional(),
    priority: z.number().int().min(0).max(6).optional(),
    headers: z.record(z.string(), z.string()).default({}),
    pieceLength: z.number().int().positive().optional(),
    disableBackToSource: z.boolean().optional(),
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
  | { event: 'done'; taskId: string; contentLength: number; p2pBytes: number; sourceBytes: number }
  | { event: 'error'; message: string };
