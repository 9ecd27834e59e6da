//go:build linux

package main

import "testing"

func TestPromptRE(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want bool
	}{
		{"Enter PIN for /dev/hidraw0: ", true},                               // fido2-tools, pamu2fcfg
		{"Please touch the device.\nPlease enter the PIN: ", true},           // pam-u2f through pamtester
		{"Please enter security token PIN: (press TAB for no echo) ", true},  // systemd 252 ask-password on a tty
		{"🔐 Please enter security token PIN: (press TAB for no echo)", true}, // without the trailing space
		{"Initializing FIDO2 credential on security token.\n", false},        // no prompt yet
		{"Enter PIN for /dev/hidraw0: \nwrong PIN\n", false},                 // a prompt already answered
		{"PIN set with fido2-token -S; pin retries: 8\n", false},             // not at the end of the output
	} {
		if got := promptRE.MatchString(tc.out); got != tc.want {
			t.Errorf("promptRE.MatchString(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
}
