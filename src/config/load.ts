import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';

export class ConfigError extends Error {
  readonly code = 'ECONFIG';
}

type Plain = Record<string, unknown>;

function isPlain(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge where `over` wins; undefined values in `over` are ignored (flags that were not given). */
export function mergeConfig(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isPlain(v) && isPlain(out[k]) ? mergeConfig(out[k] as Plain, v) : v;
  }
  return out;
}

function readYaml(path: string): Plain {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc == null) return {};
  if (!isPlain(doc)) throw new ConfigError(`config file ${path} must hold a mapping at the top level`);
  return doc;
}

/**
 * Loads a component's config: schema defaults < YAML file < flags. Unknown keys are rejected
 * (schemas are strict) so a typo is reported instead of silently ignored.
 */
export function loadConfig<S extends z.ZodType>(
  schema: S,
  opts: { file?: string; flags?: Plain },
): z.infer<S> {
  const fromFile = opts.file ? readYaml(opts.file) : {};
  const merged = mergeConfig(fromFile, opts.flags ?? {});
  const result = schema.safeParse(merged);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const where = opts.file ? ` (in ${opts.file} or flags)` : '';
  let key = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') key = [...issue.path, ...issue.keys].join('.');
  throw new ConfigError(`invalid config key "${key || '(root)'}"${where}: ${issue.message}`);
}
