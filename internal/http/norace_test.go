//go:build !race

package http_test

// raceDetector reports whether the tests run with -race.
const raceDetector = false
