// Secrets kept out of what berth writes for others to read (the daemon log, a build's output):
// the credentials of URLs, such as a buildpack's https://user:TOKEN@host/repo.git.

// The scheme, then everything up to the authority's last @ (a password may hold a raw @).
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi;

/** The URL with its user name and password, if any, replaced by `***`: https://***@host/repo.git. */
export function redactUrl(url: string): string {
  return redactUrlsIn(url);
}

/** A text with the credentials of every URL in it replaced by `***`. */
export function redactUrlsIn(text: string): string {
  return text.includes('@') ? text.replace(URL_CREDENTIALS, '$1***@') : text;
}
