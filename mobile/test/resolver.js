// Jest's module resolver: Reanimated's and Worklets' (their web code runs
// under Jest) on top of React Native's.
const reactNativeResolver = require('@react-native/jest-preset/jest/resolver.js');
const reanimatedResolver = require('react-native-reanimated/jest/resolver');

module.exports = (request, options) =>
  reanimatedResolver(request, {
    ...options,
    defaultResolver: (req, opts) => reactNativeResolver(req, { ...opts, defaultResolver: options.defaultResolver }),
  });
