// Stands in for expo/fetch under Jest: Node's own fetch (undici) gives the
// same streaming bodies the native module gives on iOS.
module.exports = { fetch: (...args) => globalThis.__node.fetch(...args) };
