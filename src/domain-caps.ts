// The per-app caps on domains and ACME orders, and their defaults: read by the flags
// (config.ts), the domain store and the certificate manager.

/** The default --max-app-domains: domains one app may have, its default APP.DOMAIN included. */
export const DEFAULT_MAX_APP_DOMAINS = 20;

/**
 * The default --max-app-acme-orders: ACME orders one app's domains may place in any hour. Enough
 * for an app with the most domains to get all its certificates within the hour, while fifteen
 * apps at their cap stay under Let's Encrypt's 300 new orders per account per 3 hours.
 */
export const DEFAULT_MAX_APP_ACME_ORDERS = 20;

/** The window the order cap counts in. */
export const ACME_ORDER_WINDOW_MS = 60 * 60 * 1000;
