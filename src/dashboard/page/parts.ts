// Pieces several views show: an error with its hint, process counts, a domain's certificate state.
import { ApiError } from './api.ts';
import { day, h, rich } from './dom.ts';
import type { Domain, ProcessCount } from './types.ts';

/** An error answer as the user reads it: the message, then what to do (the hint), if any. */
export function errorBox(error: unknown, test = 'error'): HTMLElement {
  const message = error instanceof Error ? error.message : String(error);
  const hint = error instanceof ApiError ? error.hint : undefined;
  return h('div', { class: 'error', role: 'alert', 'data-test': test, 'data-code': error instanceof ApiError ? error.code : 'page' }, h('p', { class: 'message' }, rich(message)), hint ? h('p', { class: 'hint' }, rich(hint)) : null);
}

/** web 2/2 · worker 1/1; a type with fewer running than asked is marked. */
export function processList(processes: ProcessCount[]): HTMLElement {
  if (!processes.length) return h('span', { class: 'muted' }, 'no processes');
  return h('span', { class: 'processes' }, ...processes.map((p) => h('span', { class: p.running < p.count ? 'proc warn' : 'proc', 'data-test': 'process', 'data-type': p.type }, `${p.type} ${p.running}/${p.count}`)));
}

const SOON_MS = 14 * 24 * 3600_000;

/** "HTTPS, valid until 2027-03-01", "no certificate yet", plus the last ACME error if there is one. */
export function certificateState(domain: Domain, now = Date.now()): HTMLElement {
  const parts: HTMLElement[] = [];
  if (domain.https && domain.expiresAt) {
    const left = Date.parse(domain.expiresAt) - now;
    const cls = left <= 0 ? 'bad' : left < SOON_MS ? 'warn' : 'ok';
    parts.push(h('span', { class: `cert ${cls}` }, left <= 0 ? `certificate expired ${day(domain.expiresAt)}` : `HTTPS, valid until ${day(domain.expiresAt)}`));
  } else if (domain.https) {
    parts.push(h('span', { class: 'cert ok' }, 'HTTPS'));
  } else {
    parts.push(h('span', { class: 'cert muted' }, domain.auto ? 'HTTP, no certificate yet' : 'HTTP only'));
  }
  if (domain.lastError) parts.push(h('span', { class: 'cert bad' }, `last error: ${domain.lastError}`));
  return h('span', { class: 'cert-state', 'data-test': 'cert-state' }, ...parts);
}

export function badge(text: string, cls: string, test?: string): HTMLElement {
  return h('span', { class: `badge ${cls}`, 'data-test': test }, text);
}
