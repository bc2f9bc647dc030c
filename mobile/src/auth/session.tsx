// The session: which server, how it signs people in (GET /v1/auth/config),
// the bearer token, and the one API client the screens use.
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';

import { createLunaClient, type LunaClient } from '@/api/client';
import { lunaBaseUrl } from '@/api/config';
import { describeError } from '@/api/errors';
import { streamFetch } from '@/api/streamFetch';
import type { AuthConfig, Session } from '@/api/types';

import { tokenStore } from './tokenStore';

export type SessionStatus = 'loading' | 'signedOut' | 'signedIn';

interface SessionValue {
  status: SessionStatus;
  client: LunaClient;
  config: AuthConfig | null;
  configError: string | null;
  // notice is shown on the sign-in screen (e.g. "your session has ended").
  notice: string | null;
  signedIn: (session: Session) => Promise<void>;
  signOut: () => Promise<void>;
  retryConfig: () => void;
  // setExternalToken lets Clerk supply tokens (Clerk mode).
  setExternalToken: (get: (() => Promise<string | null>) | null) => void;
}

const SessionContext = createContext<SessionValue | null>(null);

export function SessionProvider({ children, baseUrl = lunaBaseUrl() }: { children: ReactNode; baseUrl?: string }) {
  const [status, setStatus] = useState<SessionStatus>('loading');
  const [config, setConfig] = useState<AuthConfig | null>(null);
  const [configError, setConfigError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);
  // The current token (or Clerk's getter), read when a request is made.
  const [auth] = useState(() => new TokenHolder());

  const client = useMemo(
    () =>
      createLunaClient({
        baseUrl,
        streamFetch,
        getToken: () => auth.get(),
        onUnauthorized: (err) => {
          if (!auth.has()) return;
          auth.setToken(null);
          void tokenStore.clear();
          setNotice(describeError(err));
          setStatus('signedOut');
        },
      }),
    [baseUrl, auth],
  );

  useEffect(() => {
    let cancelled = false;
    (async () => {
      try {
        const cfg = await client.authConfig();
        if (cancelled) return;
        setConfig(cfg);
        setConfigError(null);
        if (cfg.mode === 'clerk') return; // ClerkGate decides
        const saved = await tokenStore.get();
        auth.setToken(saved);
        setStatus(saved ? 'signedIn' : 'signedOut');
      } catch (err) {
        if (!cancelled) setConfigError(describeError(err));
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [client, attempt, auth]);

  const signedIn = useCallback(async (session: Session) => {
    auth.setToken(session.token);
    await tokenStore.set(session.token);
    setNotice(null);
    setStatus('signedIn');
  }, [auth]);

  const signOut = useCallback(async () => {
    if (auth.has()) {
      try {
        await client.logout();
      } catch {
        // Signed out here either way.
      }
    }
    auth.setToken(null);
    await tokenStore.clear();
    setStatus('signedOut');
  }, [client, auth]);

  const setExternalToken = useCallback((get: (() => Promise<string | null>) | null) => {
    auth.setExternal(get);
    setStatus(get ? 'signedIn' : 'signedOut');
  }, [auth]);

  const value = useMemo<SessionValue>(
    () => ({
      status,
      client,
      config,
      configError,
      notice,
      signedIn,
      signOut,
      setExternalToken,
      retryConfig: () => {
        setConfigError(null);
        setAttempt((n) => n + 1);
      },
    }),
    [status, client, config, configError, notice, signedIn, signOut, setExternalToken],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionValue {
  const v = useContext(SessionContext);
  if (!v) throw new Error('useSession outside SessionProvider');
  return v;
}

// TokenHolder keeps the bearer token, or Clerk's token getter in Clerk mode.
class TokenHolder {
  private token: string | null = null;
  private external: (() => Promise<string | null>) | null = null;

  get(): Promise<string | null> {
    return this.external ? this.external() : Promise.resolve(this.token);
  }

  has(): boolean {
    return this.token !== null || this.external !== null;
  }

  setToken(token: string | null): void {
    this.token = token;
  }

  setExternal(get: (() => Promise<string | null>) | null): void {
    this.external = get;
  }
}
