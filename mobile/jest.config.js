// Jest (jest-expo, iOS flavour) runs the client and screen tests against a
// real `luna serve` that test/global-setup.js starts (demo mode, loopback,
// temporary data dir).
module.exports = {
  preset: 'jest-expo/ios',
  testEnvironment: '<rootDir>/test/environment.js',
  testMatch: ['<rootDir>/test/**/*.test.ts?(x)'],
  globalSetup: '<rootDir>/test/global-setup.js',
  globalTeardown: '<rootDir>/test/global-teardown.js',
  setupFiles: ['<rootDir>/test/setup.js'],
  setupFilesAfterEnv: ['<rootDir>/test/setup-after-env.js'],
  moduleNameMapper: {
    // expo/fetch is the native streaming fetch; in Node the platform's own
    // fetch streams the same way.
    '^expo/fetch$': '<rootDir>/test/node-fetch.js',
    '^@/(.*)$': '<rootDir>/src/$1',
  },
  transformIgnorePatterns: [
    'node_modules/(?!((jest-)?react-native|@react-native(-community)?|expo(nent)?|@expo(nent)?/.*|@expo-google-fonts/.*|react-navigation|@react-navigation/.*|@sentry/react-native|native-base|react-native-svg|react-native-unistyles|react-native-nitro-modules|eventsource-parser|marked|openapi-fetch|@clerk/.*))',
  ],
  testTimeout: 60_000,
  maxWorkers: 1,
};
