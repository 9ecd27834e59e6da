package server

// FlagValues are the values of run's flags that accept only a fixed set
// (--transport: udp, uhid …), by flag name: the man page and the shell
// completions offer them.
func FlagValues() map[string][]string {
	c := Default()
	out := map[string][]string{}
	for _, f := range c.flags() {
		if f.values != nil {
			out[f.name] = f.values
		}
	}
	return out
}
