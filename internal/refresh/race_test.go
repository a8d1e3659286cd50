//go:build race

package refresh_test

// raceDetector reports whether the tests run with -race.
const raceDetector = true
