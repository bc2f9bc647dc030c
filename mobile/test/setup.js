// The tests talk to a real Luna over loopback: use Node's real fetch and
// its Request/Response/Headers (see test/environment.js) instead of the
// network-less polyfills of the React Native Jest setup.
Object.assign(globalThis, globalThis.__node);
