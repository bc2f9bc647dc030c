// On the web build (used for tests in Chromium) there is no keychain: the
// token is kept in localStorage, as Luna's own web app does.
const KEY = 'luna.session';

export const tokenStore = {
  get: async (): Promise<string | null> => (typeof localStorage === 'undefined' ? null : localStorage.getItem(KEY)),
  set: async (token: string): Promise<void> => {
    if (typeof localStorage !== 'undefined') localStorage.setItem(KEY, token);
  },
  clear: async (): Promise<void> => {
    if (typeof localStorage !== 'undefined') localStorage.removeItem(KEY);
  },
};
