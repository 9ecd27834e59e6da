//go:build race

package vktest

// raceEnabled is true when the test binary is built with -race; the virtkey
// binary is then built with -race too.
const raceEnabled = true
