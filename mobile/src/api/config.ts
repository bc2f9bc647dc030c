// Where Luna is: EXPO_PUBLIC_LUNA_URL (inlined at build time by Expo), else
// the page's own origin on the web, else a local server.
import { Platform } from 'react-native';

export function lunaBaseUrl(): string {
  const configured = process.env.EXPO_PUBLIC_LUNA_URL;
  if (configured) return configured.replace(/\/+$/, '');
  if (Platform.OS === 'web' && typeof window !== 'undefined' && window.location) {
    return window.location.origin;
  }
  return 'http://127.0.0.1:8080';
}

// absoluteUrl resolves a URL the API gave (image URLs are relative to the
// API's base unless the server runs with --public-url) against the base.
export function absoluteUrl(baseUrl: string, url: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) return url;
  return baseUrl + (url.startsWith('/') ? '' : '/') + url;
}
