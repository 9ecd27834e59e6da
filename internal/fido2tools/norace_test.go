//go:build !race

package fido2tools

const raceEnabled = false
