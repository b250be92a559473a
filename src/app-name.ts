// The one validator for app names: the security boundary applied wherever a name enters
// (SSH exec strings, CLI arguments, git remote paths) before it touches disk or Docker.
import { UserError } from './errors.ts';

export const APP_NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;

/** Returns the name when it is a valid app name, otherwise throws a UserError that says why. */
export function validateAppName(name: string): string {
  if (APP_NAME_PATTERN.test(name) && !name.endsWith('-')) return name;
  const shown = name === '' ? 'an empty name' : `"${printable(name)}"`;
  throw new UserError('invalid_app_name', `invalid app name: ${shown}`, {
    hint: 'an app name starts with a lowercase letter, then lowercase letters, digits or dashes (at most 63 characters, not ending in a dash)',
  });
}

/** Names berth keeps for itself: `berth` routes berth.DOMAIN to the dashboard. */
export const RESERVED_APP_NAMES: readonly string[] = ['berth'];

/** validateAppName, and not a name berth keeps: for a new app, or an app's new name. */
export function validateNewAppName(name: string): string {
  validateAppName(name);
  if (RESERVED_APP_NAMES.includes(name)) {
    throw new UserError('app_name_reserved', `app name "${name}" is berth's own name: berth.DOMAIN is its dashboard`, { hint: 'choose another name for the app' });
  }
  return name;
}

export function isValidAppName(name: string): boolean {
  return APP_NAME_PATTERN.test(name) && !name.endsWith('-');
}

function printable(s: string): string {
  const clipped = s.length > 80 ? s.slice(0, 80) + '…' : s;
  return clipped.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
