// The session token lives in the iOS keychain (expo-secure-store).
import * as SecureStore from 'expo-secure-store';

const KEY = 'luna.session';

export const tokenStore = {
  get: async (): Promise<string | null> => (await SecureStore.getItemAsync(KEY)) ?? null,
  set: (token: string): Promise<void> => SecureStore.setItemAsync(KEY, token),
  clear: (): Promise<void> => SecureStore.deleteItemAsync(KEY),
};
