// Luna's dark look (the web app's palette), configured for Unistyles. This
// file runs before any screen (see index.ts).
import { StyleSheet } from 'react-native-unistyles';

export const dark = {
  colors: {
    bg: '#0f0f1a',
    bgRaised: '#171728',
    bgSunken: '#0b0b14',
    bgHover: '#22223a',
    border: '#2b2b45',
    text: '#ececf6',
    textMuted: '#a3a3c2',
    accent: '#b9a4ff',
    accentStrong: '#8f72ff',
    accentText: '#140f29',
    userBubble: '#2d2754',
    danger: '#ff7a8a',
    dangerBg: '#3a1620',
    warning: '#ffc56b',
    ok: '#7be0b0',
  },
  radius: { large: 12, small: 8 },
  space: (n: number) => n * 4,
  font: {
    mono: 'Menlo',
  },
} as const;

type AppThemes = { dark: typeof dark };

declare module 'react-native-unistyles' {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  export interface UnistylesThemes extends AppThemes {}
}

StyleSheet.configure({
  themes: { dark },
  settings: { initialTheme: 'dark' },
});
