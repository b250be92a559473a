// An Output that keeps each line it is given, with the prefix the terminal would show.
import type { Output } from '../../src/ui/output.ts';

export function recordingOutput(): Output & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    step: (text) => void lines.push(`-----> ${text}`),
    section: (text) => void lines.push(`=====> ${text}`),
    detail: (text) => void lines.push(`       ${text}`),
    error: (text) => void lines.push(` !     ${text}`),
    line: (text) => void lines.push(text),
    raw() {},
  };
}
