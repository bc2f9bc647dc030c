// The web: the browser's fetch streams response bodies.
import type { StreamFetch } from './sse';

export const streamFetch: StreamFetch = (url, init) => globalThis.fetch(url, init);
