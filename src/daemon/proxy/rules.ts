/** Forward-proxy rules: the first rule whose regex matches the URL (without query) decides. */
export interface ProxyRule {
  regex: string;
  /** true: always pass straight through to the origin; false: GETs become P2P tasks. */
  direct: boolean;
}

export const USE_P2P_HEADER = 'x-damselfly-use-p2p';

export class ProxyRules {
  private readonly compiled: { re: RegExp; direct: boolean }[];

  constructor(rules: readonly ProxyRule[]) {
    this.compiled = rules.map((r) => ({ re: new RegExp(r.regex), direct: r.direct }));
  }

  /** Whether a GET of this URL should go through the P2P network. */
  useP2P(url: string, forceHeader?: string): boolean {
    if (forceHeader?.trim().toLowerCase() === 'true') return true;
    const bare = url.split(/[?#]/, 1)[0]!;
    const rule = this.compiled.find((r) => r.re.test(bare));
    return rule !== undefined && !rule.direct;
  }
}
