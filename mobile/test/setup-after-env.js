// Unistyles' own Jest mocks (the native Nitro module does not exist in Node).
require('react-native-unistyles/mocks');
require('../src/theme/unistyles');
// NetInfo's own Jest stand-in (the native module does not exist in Node).
jest.mock('@react-native-community/netinfo', () => require('@react-native-community/netinfo/jest/netinfo-mock.js'));
// Reanimated (the drawer's animations) in its test mode.
require('react-native-reanimated').setUpTests();
// These tests talk to a real server: React state changes come from the
// network, outside act(). Its warnings about that are noise here.
const consoleError = console.error;
console.error = (...args) => {
  if (typeof args[0] === 'string' && args[0].includes('not wrapped in act(')) return;
  consoleError(...args);
};
