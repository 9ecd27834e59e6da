//go:build race

package fido2tools

const raceEnabled = true
