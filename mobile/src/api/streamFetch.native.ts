// iOS: expo/fetch gives streaming response bodies (React Native's own
// fetch does not), which the SSE client needs.
import { fetch as expoFetch } from 'expo/fetch';

import type { StreamFetch } from './sse';

export const streamFetch: StreamFetch = (url, init) => expoFetch(url, init) as unknown as Promise<Response>;
