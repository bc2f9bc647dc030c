// Sign up: built-in accounts (POST /v1/auth/signup, with an invite code when
// the server is invite-only) or Clerk.
import { useState } from 'react';
import { Text, View } from 'react-native';
import { StyleSheet } from 'react-native-unistyles';

import { Link } from '@/components/themed';

import { describeError } from '@/api/errors';
import { ClerkSignUp } from '@/auth/clerkLazy';
import { useSession } from '@/auth/session';
import { AuthScreen } from '@/components/AuthScreen';
import { Button, ErrorBanner, Field } from '@/components/ui';

export default function SignUp() {
  const { client, config, signedIn } = useSession();
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [inviteCode, setInviteCode] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  if (config?.mode === 'clerk') {
    return (
      <AuthScreen title="Create your account" subtitle="Chat with open models and make images.">
        <ClerkSignUp />
        <SignInLink />
      </AuthScreen>
    );
  }
  if (config?.signupMode === 'closed') {
    return (
      <AuthScreen title="Sign-up is closed" subtitle="This Luna server is not taking new accounts.">
        <SignInLink />
      </AuthScreen>
    );
  }

  const needsInvite = config?.signupMode === 'invite';
  const submit = async () => {
    if (password.length < 8) {
      setError('The password needs at least 8 characters.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const session = await client.signup({
        email: email.trim(),
        password,
        ...(name.trim() ? { name: name.trim() } : {}),
        ...(inviteCode.trim() ? { inviteCode: inviteCode.trim() } : {}),
      });
      await signedIn(session);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <AuthScreen title="Create your account" subtitle="Chat with open models and make images.">
      <Field label="Name (optional)" value={name} onChangeText={setName} autoCapitalize="words" autoComplete="name" />
      <Field label="Email" value={email} onChangeText={setEmail} keyboardType="email-address" autoComplete="email" textContentType="emailAddress" />
      <Field label="Password (8 characters or more)" value={password} onChangeText={setPassword} secureTextEntry autoComplete="new-password" textContentType="newPassword" />
      <Field
        label={needsInvite ? 'Invite code' : 'Invite code (optional)'}
        value={inviteCode}
        onChangeText={setInviteCode}
        autoCapitalize="characters"
        onSubmitEditing={submit}
      />
      <ErrorBanner message={error} />
      <Button title="Create account" onPress={submit} busy={busy} disabled={!email || !password || (needsInvite && !inviteCode)} />
      <SignInLink />
    </AuthScreen>
  );
}

function SignInLink() {
  return (
    <View style={styles.row}>
      <Text style={styles.muted}>Have an account?</Text>
      <Link href="/sign-in" replace style={styles.link} accessibilityRole="link">
        Sign in
      </Link>
    </View>
  );
}

const styles = StyleSheet.create((theme) => ({
  row: { flexDirection: 'row', gap: 6, justifyContent: 'center', marginTop: 8 },
  muted: { color: theme.colors.textMuted, fontSize: 15 },
  link: { color: theme.colors.accent, fontSize: 15, fontWeight: '600' },
}));
