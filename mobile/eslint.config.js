// ESLint: Expo's flat config (React, hooks, import rules, TypeScript).
const { defineConfig } = require('eslint/config');
const expoConfig = require('eslint-config-expo/flat');
const globals = require('globals');

module.exports = defineConfig([
  expoConfig,
  {
    // Test harness and tool scripts run in Node.
    files: ['test/**/*.js', 'scripts/**/*.js', '*.config.js'],
    languageOptions: { globals: { ...globals.node, ...globals.jest } },
  },
  {
    ignores: ['node_modules/*', 'dist/*', 'dist-*/*', '.expo/*', 'src/api/schema.gen.ts', 'test-output/*'],
  },
]);
