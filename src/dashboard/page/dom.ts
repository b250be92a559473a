// Tiny DOM helpers: elements from a tag, attributes and children (text is always text, never
// HTML), SVG elements, a view's lifetime, and the formats the page shows.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** An HTML element; `on*` attributes are listeners, `false`/`null`/`undefined` ones are left out. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element, for the charts. */
export function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attrs);
  append(element, children);
  return element;
}

function setAttributes(element: Element, attrs: Attrs): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
}

function append(element: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === 'object' ? child : String(child));
  }
}

/** Replaces an element's content. */
export function fill(element: Element, ...children: Child[]): void {
  element.replaceChildren();
  append(element, children);
}

/** Text in which `backquoted` parts (commands in messages and hints) show as code. */
export function rich(text: string): DocumentFragment {
  const fragment = document.createDocumentFragment();
  text.split('`').forEach((part, i) => {
    if (part) fragment.append(i % 2 ? h('code', {}, part) : part);
  });
  return fragment;
}

/** What a view started (timers, streams), ended together when the view goes. */
export class Scope {
  #disposers: Array<() => void> = [];
  #disposed = false;

  get disposed(): boolean {
    return this.#disposed;
  }

  onDispose(fn: () => void): void {
    if (this.#disposed) fn();
    else this.#disposers.push(fn);
  }

  every(ms: number, fn: () => void): void {
    const timer = setInterval(fn, ms);
    this.onDispose(() => clearInterval(timer));
  }

  after(ms: number, fn: () => void): void {
    const timer = setTimeout(fn, ms);
    this.onDispose(() => clearTimeout(timer));
  }

  dispose(): void {
    this.#disposed = true;
    for (const fn of this.#disposers.splice(0)) fn();
  }
}

const pad = (n: number) => String(n).padStart(2, '0');

/** 2026-12-06, in the browser's time zone. */
export function day(when: string | number): string {
  const d = new Date(when);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** 2026-12-06 09:14, in the browser's time zone. */
export function minute(when: string | number): string {
  return `${day(when)} ${clock(when)}`;
}

/** 09:14, in the browser's time zone. */
export function clock(when: string | number): string {
  const d = new Date(when);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
