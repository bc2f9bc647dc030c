//go:build race

package credits_test

// simDefaultSeeds is shorter under the race detector, which slows every
// operation several times, so that CI stays under half a minute.
const simDefaultSeeds = 5
