// Terminal output made plain, for a page or a JSON answer.

// CSI and OSC sequences, and any other control character but the tab.
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

/** A line as a page shows it: ANSI colours and cursor moves removed. */
export function withoutEscapes(text: string): string {
  return text.replace(ESCAPES, '');
}
