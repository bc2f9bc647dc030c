// ESLint: Expo's flat config (React, hooks, import rules, TypeScript).
const { defineConfig } = require('eslint/config');
const expoConfig = require('eslint-config-expo/flat');

module.exports = defineConfig([
  expoConfig,
  {
    ignores: ['node_modules/*', 'dist/*', 'dist-*/*', '.expo/*', 'src/api/schema.gen.ts', 'test-output/*'],
  },
]);
