//go:build !race

package vktest

const raceEnabled = false
