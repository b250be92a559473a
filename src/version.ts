// berth's version and the runtime it was built for; the bundler replaces the placeholder.
declare const __BERTH_VERSION__: string | undefined;

export const VERSION: string = typeof __BERTH_VERSION__ === 'string' ? __BERTH_VERSION__ : '0.0.0-dev';
