// Sign in: built-in accounts (POST /v1/auth/login) or Clerk.
import { useState } from 'react';
import { Text, View } from 'react-native';
import { StyleSheet } from 'react-native-unistyles';

import { Link } from '@/components/themed';

import { ApiError, describeError } from '@/api/errors';
import { ClerkSignIn } from '@/auth/clerkLazy';
import { useSession } from '@/auth/session';
import { AuthScreen } from '@/components/AuthScreen';
import { Button, ErrorBanner, Field } from '@/components/ui';

export default function SignIn() {
  const { client, config, signedIn, notice } = useSession();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  if (config?.mode === 'clerk') {
    return (
      <AuthScreen title="Sign in" subtitle="Welcome back.">
        <ClerkSignIn />
        <SignUpLink />
      </AuthScreen>
    );
  }

  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      await signedIn(await client.login({ email: email.trim(), password }));
    } catch (err) {
      // A 401 here means the email or password (the server says which words).
      setError(err instanceof ApiError && err.status === 401 ? err.message : describeError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <AuthScreen title="Sign in" subtitle="Welcome back.">
      <ErrorBanner message={notice} testID="notice" />
      <Field label="Email" value={email} onChangeText={setEmail} keyboardType="email-address" autoComplete="email" textContentType="emailAddress" />
      <Field label="Password" value={password} onChangeText={setPassword} secureTextEntry autoComplete="password" textContentType="password" onSubmitEditing={submit} />
      <ErrorBanner message={error} />
      <Button title="Sign in" onPress={submit} busy={busy} disabled={!email || !password} />
      {config?.signupMode !== 'closed' ? <SignUpLink /> : null}
    </AuthScreen>
  );
}

function SignUpLink() {
  return (
    <View style={styles.row}>
      <Text style={styles.muted}>New here?</Text>
      <Link href="/sign-up" replace style={styles.link} accessibilityRole="link">
        Create an account
      </Link>
    </View>
  );
}

const styles = StyleSheet.create((theme) => ({
  row: { flexDirection: 'row', gap: 6, justifyContent: 'center', marginTop: 8 },
  muted: { color: theme.colors.textMuted, fontSize: 15 },
  link: { color: theme.colors.accent, fontSize: 15, fontWeight: '600' },
}));
