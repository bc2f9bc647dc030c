// Reconnect every live stream when the app returns to the foreground or the
// network changes: iOS suspends a backgrounded app, and a connection that
// died meanwhile may not know it. Streams resume from their last event id.
import NetInfo from '@react-native-community/netinfo';
import { AppState, Platform, type AppStateStatus } from 'react-native';

import { reconnectAll } from '@/api/sse';

// watchLifecycle starts watching; the returned function stops. onResume
// runs after the reconnection (to reload lists).
export function watchLifecycle(onResume: () => void): () => void {
  let state = AppState.currentState as AppStateStatus | null;
  const app = AppState.addEventListener('change', (next) => {
    const wasAway = state !== 'active';
    state = next;
    if (next === 'active' && wasAway) {
      reconnectAll();
      onResume();
    }
  });
  let lastKey: string | null = null;
  const unsubscribeNet =
    Platform.OS === 'web'
      ? webOnline(onResume)
      : NetInfo.addEventListener((s) => {
          // A different network (Wi-Fi ↔ cellular) or coming back online.
          const key = `${s.type}:${s.isConnected ? 1 : 0}`;
          if (lastKey !== null && key !== lastKey && s.isConnected) {
            reconnectAll();
            onResume();
          }
          lastKey = key;
        });
  return () => {
    app.remove();
    unsubscribeNet();
  };
}

function webOnline(onResume: () => void): () => void {
  if (typeof window === 'undefined') return () => {};
  const online = () => {
    reconnectAll();
    onResume();
  };
  window.addEventListener('online', online);
  return () => window.removeEventListener('online', online);
}
