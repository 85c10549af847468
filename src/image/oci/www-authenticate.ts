/**
 * A parser for `WWW-Authenticate` (RFC 9110 §11.6.1): several challenges in one header, each a scheme
 * followed by either a token68 or comma-separated `name=value` pairs whose values may be quoted strings
 * (with commas and backslash escapes inside).
 */

export interface AuthChallenge {
  /** Lowercased: `bearer`, `basic`. */
  scheme: string;
  /** Parameter names lowercased; values unquoted. */
  params: Record<string, string>;
  token68?: string;
}

const TOKEN_CHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*/;

class HeaderScanner {
  pos = 0;
  constructor(readonly text: string) {}

  get done(): boolean {
    return this.pos >= this.text.length;
  }

  peek(): string {
    return this.text[this.pos] ?? '';
  }

  skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }

  skipSeparators(): void {
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === ',') this.pos++;
  }

  token(): string {
    const start = this.pos;
    while (!this.done && TOKEN_CHAR.test(this.peek())) this.pos++;
    return this.text.slice(start, this.pos);
  }

  /** A quoted-string starting at the current `"`; unterminated strings run to the end. */
  quoted(): string {
    let value = '';
    this.pos++; // opening quote
    while (!this.done) {
      const c = this.text[this.pos++]!;
      if (c === '"') return value;
      if (c === '\\' && !this.done) value += this.text[this.pos++];
      else value += c;
    }
    return value;
  }

  /** A token68 that stands alone (followed by end or comma), else undefined and no movement. */
  token68(): string | undefined {
    const m = TOKEN68.exec(this.text.slice(this.pos));
    if (!m) return undefined;
    const after = this.text.slice(this.pos + m[0].length).trimStart();
    if (after !== '' && !after.startsWith(',')) return undefined;
    this.pos += m[0].length;
    return m[0];
  }
}

/** Parses `name=value` pairs until the next challenge begins; leaves the scanner at its scheme. */
function parseParams(scan: HeaderScanner): Record<string, string> {
  const params: Record<string, string> = {};
  for (;;) {
    scan.skipSeparators();
    const start = scan.pos;
    const name = scan.token();
    scan.skipSpaces();
    if (!name || scan.peek() !== '=') {
      scan.pos = start; // a new scheme (or garbage) begins here
      return params;
    }
    scan.pos++; // '='
    scan.skipSpaces();
    const value = scan.peek() === '"' ? scan.quoted() : scan.token();
    params[name.toLowerCase()] = value;
  }
}

export function parseWwwAuthenticate(header: string | string[] | undefined): AuthChallenge[] {
  const text = Array.isArray(header) ? header.join(', ') : (header ?? '');
  const scan = new HeaderScanner(text);
  const challenges: AuthChallenge[] = [];
  while (!scan.done) {
    scan.skipSeparators();
    const scheme = scan.token();
    if (!scheme) {
      scan.pos++; // skip a character that cannot start anything
      continue;
    }
    scan.skipSpaces();
    const challenge: AuthChallenge = { scheme: scheme.toLowerCase(), params: {} };
    const token68 = scan.token68();
    if (token68 !== undefined) challenge.token68 = token68;
    else challenge.params = parseParams(scan);
    challenges.push(challenge);
  }
  return challenges;
}
