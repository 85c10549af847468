/**
 * A synthetic application tree in two versions, for the "app update" pair of the image benchmark:
 * deterministic bytes (the same on every machine), made once and cached outside the repository.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Deterministic bytes: AES-128-CTR keystream keyed by a label. */
function randomBytes(label: string, size: number): Buffer {
  const key = createHash('sha256').update(label).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return cipher.update(Buffer.alloc(size));
}

const WORDS = (
  'const let function return if else for while import export from default class extends new this ' +
  'async await try catch finally throw typeof instanceof null undefined true false switch case break ' +
  'continue value result options config request response buffer stream error message length index ' +
  'items count offset size chunk digest layer image blob manifest registry client server handler ' +
  'module require exports prototype object array string number boolean map set push pop slice ' +
  'splice concat join split replace match test exec parse stringify keys values entries assign'
).split(' ');

/** Source-code-like text (compresses about 4–5× with zstd), deterministic per label. */
function textBytes(label: string, size: number): Buffer {
  const noise = randomBytes(label, size);
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; length < size; i++) {
    const b = noise[i % noise.length]!;
    const word = WORDS[b % WORDS.length]!;
    const sep = b % 13 === 0 ? ';\n  ' : b % 7 === 0 ? '(' : b % 5 === 0 ? ') ' : ' ';
    parts.push(word, sep);
    length += word.length + sep.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

/** Half random, half text in 64 KiB stripes: a binary's mix of code, data and strings. */
function binaryBytes(label: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  const stripe = 64 * 1024;
  const rnd = randomBytes(`${label}/rnd`, size);
  const txt = textBytes(`${label}/txt`, size);
  for (let off = 0; off < size; off += stripe) {
    const src = (off / stripe) % 2 === 0 ? rnd : txt;
    src.copy(out, off, off, Math.min(size, off + stripe));
  }
  return out;
}

export interface AppTreeInfo {
  version: 1 | 2;
  /** The directory holding `opt/app/…` (the layer's root). */
  path: string;
  files: number;
  bytes: number;
  /** What changed from version 1 (for the report). */
  changes: string;
}

const JS_FILES = 300;
const ASSETS = 20;
const SERVER_SIZE = 12 * 1024 * 1024;
/** Version 2 patches the server binary in place at these offsets (256 bytes each). */
const SERVER_PATCHES = [2.5 * 1024 * 1024, 6 * 1024 * 1024 + 100, 10 * 1024 * 1024 + 5000];
const REMOVED_IN_V2 = new Set([7, 101]);
const ADDED_IN_V2 = 5;

function jsSize(i: number): number {
  // 2 KiB … 64 KiB, spread deterministically (about 10 MB in all).
  return 2048 + ((i * 7919) % 31) * 2048;
}

/**
 * `<cacheDir>/app/v<version>/opt/app`: a 12 MiB server binary, 300 source-like files of 2–64 KiB and
 * 20 incompressible 192 KiB assets (about 26 MB). Version 2: 30 source files rewritten, 5 added,
 * 2 removed, the binary patched in 3 places (256 bytes each), package.json's version bumped.
 */
export async function appTree(cacheDir: string, version: 1 | 2): Promise<AppTreeInfo> {
  const root = join(cacheDir, 'app', `v${version}`);
  const record = `${root}.json`;
  if (existsSync(record) && existsSync(root))
    return JSON.parse(await readFile(record, 'utf8')) as AppTreeInfo;
  const partial = `${root}.partial`;
  await rm(partial, { recursive: true, force: true });
  await rm(root, { recursive: true, force: true });
  const app = join(partial, 'opt', 'app');
  await mkdir(join(app, 'bin'), { recursive: true });
  await mkdir(join(app, 'lib'), { recursive: true });
  await mkdir(join(app, 'assets'), { recursive: true });
  let files = 0;
  let bytes = 0;
  const put = async (rel: string, data: Buffer) => {
    await writeFile(join(app, rel), data);
    files++;
    bytes += data.length;
  };
  const server = binaryBytes('server', SERVER_SIZE);
  if (version === 2)
    for (const [i, off] of SERVER_PATCHES.entries()) randomBytes(`patch${i}`, 256).copy(server, off);
  await put('bin/server', server);
  for (let i = 0; i < JS_FILES; i++) {
    if (version === 2 && REMOVED_IN_V2.has(i)) continue;
    const changed = version === 2 && i % 10 === 3;
    await put(
      `lib/mod-${String(i).padStart(4, '0')}.js`,
      textBytes(`js${i}${changed ? 'v2' : ''}`, jsSize(i)),
    );
  }
  if (version === 2)
    for (let i = 0; i < ADDED_IN_V2; i++)
      await put(`lib/new-${i}.js`, textBytes(`new${i}`, jsSize(i + 1000)));
  for (let i = 0; i < ASSETS; i++) await put(`assets/asset-${i}.bin`, randomBytes(`asset${i}`, 192 * 1024));
  await put('package.json', Buffer.from(`{"name":"app","version":"${version}.0.0"}\n`));
  await rename(partial, root);
  const info: AppTreeInfo = {
    version,
    path: root,
    files,
    bytes,
    changes:
      version === 1
        ? 'first version'
        : `${JS_FILES / 10} of ${JS_FILES} source files rewritten, ${ADDED_IN_V2} added, ${REMOVED_IN_V2.size} removed; ` +
          `the 12 MiB binary patched in ${SERVER_PATCHES.length} places (256 bytes each); package.json changed`,
  };
  await writeFile(record, `${JSON.stringify(info, null, 2)}\n`);
  return info;
}
