// React Native's Jest environment, plus Node's own fetch (undici) kept
// aside before the React Native and Expo setup files replace it with
// polyfills that cannot reach a network. test/setup.js puts it back.
const ReactNativeEnv = require('@react-native/jest-preset/jest/react-native-env.js');

module.exports = class LunaTestEnv extends ReactNativeEnv {
  constructor(config, context) {
    super(config, context);
    this.global.__node = {
      fetch: globalThis.fetch,
      Request: globalThis.Request,
      Response: globalThis.Response,
      Headers: globalThis.Headers,
      ReadableStream: globalThis.ReadableStream,
      TextDecoder: globalThis.TextDecoder,
      AbortController: globalThis.AbortController,
    };
  }
};
