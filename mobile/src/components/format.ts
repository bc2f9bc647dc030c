// Formatting of prices and numbers.
import type { Model } from '@/api/types';

export function modelPrice(m: Model): string {
  const p = m.creditsPer1kTokens;
  const n = Number.isInteger(p) ? String(p) : p.toFixed(2).replace(/0+$/, '').replace(/\.$/, '');
  return `${n} credit${p === 1 ? '' : 's'} / 1K tokens`;
}

export function tokens(n: number): string {
  return n >= 1000 ? `${Math.round(n / 1000)}K` : String(n);
}

// newId makes a client id for idempotent retries (clientMessageId,
// clientRequestId).
export function newId(): string {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
