// Clerk's SDK is large: it is loaded only when the server runs in Clerk
// mode (GET /v1/auth/config), never for built-in accounts.
import { lazy, Suspense, type ReactNode } from 'react';
import { ActivityIndicator } from 'react-native';

const Gate = lazy(() => import('./clerk').then((m) => ({ default: m.ClerkGate })));
const SignInForm = lazy(() => import('./clerk').then((m) => ({ default: m.ClerkSignIn })));
const SignUpForm = lazy(() => import('./clerk').then((m) => ({ default: m.ClerkSignUp })));

export function ClerkGate({ children }: { children: ReactNode }) {
  return (
    <Suspense fallback={<ActivityIndicator />}>
      <Gate>{children}</Gate>
    </Suspense>
  );
}

export function ClerkSignIn() {
  return (
    <Suspense fallback={<ActivityIndicator />}>
      <SignInForm />
    </Suspense>
  );
}

export function ClerkSignUp() {
  return (
    <Suspense fallback={<ActivityIndicator />}>
      <SignUpForm />
    </Suspense>
  );
}
