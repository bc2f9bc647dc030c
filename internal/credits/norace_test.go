//go:build !race

package credits_test

// simDefaultSeeds is the simulation's default length: about 2,400
// operations per database, a few seconds on SQLite.
const simDefaultSeeds = 40
