// Jest (jest-expo, iOS flavour) runs the client and screen tests against a
// real `luna serve` that test/global-setup.js starts (demo mode, loopback,
// temporary data dir).
module.exports = {
  preset: 'jest-expo/ios',
  testEnvironment: '<rootDir>/test/environment.js',
  // jest-expo adds the "expo-source" condition, whose files (src/) the
  // published expo-router does not ship.
  testEnvironmentOptions: { customExportConditions: ['react-native'] },
  testMatch: ['<rootDir>/test/**/*.test.ts?(x)'],
  resolver: '<rootDir>/test/resolver.js',
  globalSetup: '<rootDir>/test/global-setup.js',
  globalTeardown: '<rootDir>/test/global-teardown.js',
  setupFiles: ['<rootDir>/test/setup.js'],
  setupFilesAfterEnv: ['<rootDir>/test/setup-after-env.js'],
  moduleNameMapper: {
    // expo/fetch is the native streaming fetch; in Node the platform's own
    // fetch streams the same way.
    '^expo/fetch$': '<rootDir>/test/node-fetch.js',
    '^@/(.*)$': '<rootDir>/src/$1',
    // An exports-only entry of react-native that jest-expo's mapping misses.
    '^react-native/unstable-internals-do-not-use$': '<rootDir>/node_modules/react-native/src/unstable-internals-do-not-use.js',
  },
  transformIgnorePatterns: [
    'node_modules/(?!((jest-)?react-native|@react-native(-community)?|expo(nent)?|@expo(nent)?/.*|@expo-google-fonts/.*|react-navigation|@react-navigation/.*|@sentry/react-native|native-base|react-native-svg|react-native-unistyles|react-native-nitro-modules|eventsource-parser|marked|openapi-fetch|@clerk/.*|standard-navigation|react-native-drawer-layout))',
  ],
  testTimeout: 60_000,
  // LUNA_JEST_CACHE: a transform cache of its own (e.g. to time a cold run).
  ...(process.env.LUNA_JEST_CACHE ? { cacheDirectory: process.env.LUNA_JEST_CACHE } : {}),
  maxWorkers: 1,
};
