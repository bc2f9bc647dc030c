// Clerk mode (GET /v1/auth/config says "clerk"): people sign in with Clerk
// (@clerk/clerk-expo) and the app sends Clerk's session JWT as the bearer
// token. Needs EXPO_PUBLIC_CLERK_PUBLISHABLE_KEY.
import { ClerkProvider, useAuth, useSignIn, useSignUp } from '@clerk/clerk-expo';
import { tokenCache } from '@clerk/clerk-expo/token-cache';
import { useEffect, useState, type ReactNode } from 'react';
import { Text, View } from 'react-native';
import { StyleSheet } from 'react-native-unistyles';

import { Button, ErrorBanner, Field } from '@/components/ui';

import { useSession } from './session';

export function ClerkGate({ children }: { children: ReactNode }) {
  const key = process.env.EXPO_PUBLIC_CLERK_PUBLISHABLE_KEY;
  if (!key) {
    return (
      <View style={styles.center}>
        <ErrorBanner message="This Luna server signs people in with Clerk. Build the app with EXPO_PUBLIC_CLERK_PUBLISHABLE_KEY set to the Clerk publishable key." />
      </View>
    );
  }
  return (
    <ClerkProvider publishableKey={key} tokenCache={tokenCache}>
      <Bridge>{children}</Bridge>
    </ClerkProvider>
  );
}

// Bridge hands Clerk's token getter to the session.
function Bridge({ children }: { children: ReactNode }) {
  const { isLoaded, isSignedIn, getToken } = useAuth();
  const { setExternalToken } = useSession();
  useEffect(() => {
    if (isLoaded) setExternalToken(isSignedIn ? () => getToken() : null);
  }, [isLoaded, isSignedIn, getToken, setExternalToken]);
  return <>{children}</>;
}

function clerkMessage(err: unknown): string {
  const e = err as { errors?: { longMessage?: string; message?: string }[]; message?: string };
  return e.errors?.[0]?.longMessage ?? e.errors?.[0]?.message ?? e.message ?? 'Clerk could not sign you in.';
}

export function ClerkSignIn() {
  const { signIn, setActive, isLoaded } = useSignIn();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    if (!isLoaded) return;
    setBusy(true);
    setError(null);
    try {
      const res = await signIn.create({ identifier: email, password });
      if (res.status === 'complete') await setActive?.({ session: res.createdSessionId });
      else setError('Finish signing in with the steps Clerk asks for.');
    } catch (err) {
      setError(clerkMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <View style={styles.form}>
      <Field label="Email" value={email} onChangeText={setEmail} keyboardType="email-address" autoComplete="email" />
      <Field label="Password" value={password} onChangeText={setPassword} secureTextEntry autoComplete="password" />
      <ErrorBanner message={error} />
      <Button title="Sign in" onPress={submit} busy={busy} disabled={!email || !password} />
    </View>
  );
}

export function ClerkSignUp() {
  const { signUp, setActive, isLoaded } = useSignUp();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [verifying, setVerifying] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const run = async (step: (su: NonNullable<typeof signUp>) => Promise<void>) => {
    if (!isLoaded || !signUp) return;
    setBusy(true);
    setError(null);
    try {
      await step(signUp);
    } catch (err) {
      setError(clerkMessage(err));
    } finally {
      setBusy(false);
    }
  };
  if (verifying) {
    return (
      <View style={styles.form}>
        <Text style={styles.text}>We sent a code to {email}.</Text>
        <Field label="Code" value={code} onChangeText={setCode} keyboardType="number-pad" />
        <ErrorBanner message={error} />
        <Button
          title="Verify"
          busy={busy}
          onPress={() =>
            run(async (su) => {
              const res = await su.attemptEmailAddressVerification({ code });
              if (res.status === 'complete') await setActive?.({ session: res.createdSessionId });
            })
          }
        />
      </View>
    );
  }
  return (
    <View style={styles.form}>
      <Field label="Email" value={email} onChangeText={setEmail} keyboardType="email-address" autoComplete="email" />
      <Field label="Password" value={password} onChangeText={setPassword} secureTextEntry autoComplete="new-password" />
      <ErrorBanner message={error} />
      <Button
        title="Create account"
        busy={busy}
        disabled={!email || !password}
        onPress={() =>
          run(async (su) => {
            await su.create({ emailAddress: email, password });
            await su.prepareEmailAddressVerification({ strategy: 'email_code' });
            setVerifying(true);
          })
        }
      />
    </View>
  );
}

const styles = StyleSheet.create((theme) => ({
  center: { flex: 1, backgroundColor: theme.colors.bg, justifyContent: 'center', padding: 24 },
  form: { gap: 14 },
  text: { color: theme.colors.text, fontSize: 15 },
}));
