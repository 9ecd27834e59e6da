// Command benchratio runs virtkey's performance benchmarks and prints the
// ratios the project's targets are stated in, each against raw crypto
// measured in the same run:
//
//	getAssertion in process (ES256, resident, durable counter) / raw ecdsa.SignASN1       ≤ 1.25
//	getAssertion over UDP (allowList, ES256)      / (raw sign + the UDP floor)             ≤ 1.15
//	resident makeCredential over UDP              / (keygen + sign + 512-byte append
//	                                                 fdatasync'ed + the UDP floor)          ≤ 2.0
//	makeCredential in process (ES256, resident)   / keygen + SignASN1                      ≤ 3
//
// The UDP floor is a do-nothing CTAPHID server in another process on the
// same socket setup, answering with canned responses of the real lengths
// (internal/bench/floor.go); both UDP servers run as child processes and
// are timed with the same client code. The older ratio of the UDP round
// trip to a raw signature alone is still shown, without a target.
//
// It compiles the test binaries of ./ctap2 and ./internal/bench once, then
// runs their benchmarks -rounds times. The judged figure of each ratio is
// the x-base metric of a Paired benchmark, which times the operation and
// its yardstick call by call in alternating batches (so a slow spell on a
// shared machine hits both alike); the ratio of the two plain benchmarks
// of the same binary run is shown beside it. The table shows medians over
// rounds. Run it from the module root:
//
//	go run ./internal/bench/cmd/benchratio [-rounds 5] [-benchtime 0.3s] [-check]
//
// The benchmarks' state directories are made under $TMPDIR (see
// -statedir), so makeCredential pays the fsyncs of the disk it runs on.
// With -check the exit status is 1 when a target is missed; speed targets
// are never unit tests.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// binary is one compiled test binary and the benchmarks it runs.
type binary struct {
	pkg   string
	bench string // -test.bench pattern
	path  string
}

// target is one ratio and its goal. The ratio is measured twice: by a
// Paired benchmark (x-base metric, call-by-call against the yardstick,
// the figure judged) and as num/den of two plain benchmarks of the same
// binary run (shown for comparison).
type target struct {
	name     string
	paired   string // benchmark reporting x-base (without the -GOMAXPROCS suffix)
	num, den string // plain benchmarks
	pkg      string // all come from this binary's run
	max      float64
}

var targets = []target{
	{"getAssertion in process / raw sign", "BenchmarkPairedGetAssertionES256",
		"BenchmarkGetAssertionES256", "BenchmarkRawSignES256", "./ctap2", 1.25},
	{"getAssertion over UDP / (sign + floor)", "BenchmarkPairedGetAssertionUDPFloor",
		"BenchmarkGetAssertionUDPProc", "BenchmarkFloorSignUDP", "./internal/bench", 1.15},
	{"makeCredential over UDP / (kg+sign+sync+floor)", "BenchmarkPairedMakeCredentialUDPFloor",
		"BenchmarkMakeCredentialUDPProc", "BenchmarkFloorMakeCredentialUDP", "./internal/bench", 2.0},
	{"makeCredential (rk) / keygen+sign", "BenchmarkPairedMakeCredentialES256",
		"BenchmarkMakeCredentialES256", "BenchmarkRawKeygenSignES256", "./ctap2", 3},
}

// informational ratios (no target).
var extras = []target{
	{"getAssertion via CTAPHID pipe / raw sign", "BenchmarkPairedGetAssertionHIDPipe",
		"BenchmarkGetAssertionHIDPipe", "BenchmarkRawSignES256", "./internal/bench", 0},
	{"getAssertion over UDP / raw sign", "BenchmarkPairedGetAssertionUDP",
		"BenchmarkGetAssertionUDP", "BenchmarkRawSignES256", "./internal/bench", 0},
}

func main() {
	rounds := flag.Int("rounds", 5, "rounds (each runs every benchmark once)")
	benchtime := flag.String("benchtime", "0.3s", "go test -benchtime per benchmark run (a duration or Nx)")
	statedir := flag.String("statedir", "", "directory for the benchmarks' state (TMPDIR); empty: inherit")
	check := flag.Bool("check", false, "exit with status 1 if a target is missed")
	verbose := flag.Bool("v", false, "print every benchmark line")
	cpuprofile := flag.String("cpuprofile", "", "directory to write one CPU profile per benchmark binary (last round)")
	flag.Parse()
	if *rounds < 1 {
		fatalf("-rounds must be at least 1")
	}

	tmp, err := os.MkdirTemp("", "benchratio-")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(tmp)

	bins := []*binary{
		{pkg: "./ctap2", bench: "^Benchmark(Paired)?(RawSignES256|RawKeygenSignES256|GetAssertionES256|MakeCredentialES256)$"},
		{pkg: "./internal/bench", bench: "^Benchmark(Paired)?(RawSignES256|GetAssertionUDP|GetAssertionHIDPipe|GetAssertionUDPFloor|GetAssertionUDPProc|FloorSignUDP|MakeCredentialUDPFloor|MakeCredentialUDPProc|FloorMakeCredentialUDP|FloorUDP)$"},
	}
	for _, b := range bins {
		b.path = filepath.Join(tmp, strings.ReplaceAll(strings.Trim(b.pkg, "./"), "/", "_")+".test")
		cmd := exec.Command("go", "test", "-c", "-o", b.path, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fatalf("building %s: %v", b.pkg, err)
		}
	}

	// results[pkg][bench] = ns/op per round; paired/plain[target] per round.
	all := append(slices.Clone(targets), extras...)
	results := map[string]map[string][]float64{}
	paired := make([][]float64, len(all))
	plain := make([][]float64, len(all))
	start := time.Now()
	for r := 0; r < *rounds; r++ {
		for _, b := range bins {
			args := []string{"-test.run", "^$", "-test.bench", b.bench, "-test.benchtime", *benchtime, "-test.count", "1"}
			if *cpuprofile != "" && r == *rounds-1 {
				if err := os.MkdirAll(*cpuprofile, 0o755); err != nil {
					fatalf("%v", err)
				}
				prof := filepath.Join(*cpuprofile, filepath.Base(b.path)+".prof")
				args = append(args, "-test.cpuprofile", prof)
				fmt.Fprintf(os.Stderr, "cpu profile: %s (binary %s kept beside it)\n", prof, filepath.Base(b.path))
				copyFile(b.path, filepath.Join(*cpuprofile, filepath.Base(b.path)))
			}
			cmd := exec.Command(b.path, args...)
			cmd.Dir = b.pkg // as go test does
			if *statedir != "" {
				cmd.Env = append(os.Environ(), "TMPDIR="+*statedir)
			}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, os.Stderr
			if err := cmd.Run(); err != nil {
				os.Stderr.Write(out.Bytes())
				fatalf("running %s benchmarks: %v", b.pkg, err)
			}
			got := parse(out.Bytes(), *verbose)
			if results[b.pkg] == nil {
				results[b.pkg] = map[string][]float64{}
			}
			for name, m := range got {
				results[b.pkg][name] = append(results[b.pkg][name], m["ns/op"])
			}
			for i, t := range all {
				if t.pkg != b.pkg {
					continue
				}
				x, ok := got[t.paired]["x-base"]
				num, den := got[t.num]["ns/op"], got[t.den]["ns/op"]
				if !ok || num == 0 || den == 0 {
					fatalf("%s: missing %s, %s or %s in the output", b.pkg, t.paired, t.num, t.den)
				}
				paired[i] = append(paired[i], x)
				plain[i] = append(plain[i], num/den)
			}
		}
	}

	fmt.Printf("benchratio: %d rounds, -benchtime %s, %s", *rounds, *benchtime, time.Since(start).Round(time.Second))
	if *statedir != "" {
		fmt.Printf(", state in %s", *statedir)
	}
	fmt.Printf("\n\nmedian ns/op (min–max over rounds)\n")
	for _, b := range bins {
		names := make([]string, 0, len(results[b.pkg]))
		for n := range results[b.pkg] {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			v := results[b.pkg][n]
			fmt.Printf("  %-18s %-34s %12.0f  (%.0f–%.0f)\n", b.pkg, n, median(v), slices.Min(v), slices.Max(v))
		}
	}
	fmt.Printf("\nratios, median over rounds (min–max)       paired (judged)       separate benchmarks   target\n")
	missed := false
	for i, t := range all {
		verdict := ""
		if t.max > 0 {
			verdict = fmt.Sprintf("≤ %.3g×  ok", t.max)
			if median(paired[i]) > t.max {
				verdict, missed = fmt.Sprintf("≤ %.3g×  MISSED", t.max), true
			}
		}
		fmt.Printf("  %-42s %5.2f× (%4.2f–%-5.2f)  %5.2f× (%4.2f–%-5.2f)  %s\n", t.name,
			median(paired[i]), slices.Min(paired[i]), slices.Max(paired[i]),
			median(plain[i]), slices.Min(plain[i]), slices.Max(plain[i]), verdict)
	}
	if missed && *check {
		os.Exit(1)
	}
}

// parse reads `go test -bench` output lines, "Name-P  N  v1 unit1  v2 unit2 …",
// into name (without -P) → unit → value.
func parse(out []byte, verbose bool) map[string]map[string]float64 {
	got := map[string]map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if verbose {
			fmt.Fprintln(os.Stderr, sc.Text())
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{}
		for j := 2; j+1 < len(f); j += 2 {
			if v, err := strconv.ParseFloat(f[j], 64); err == nil {
				m[f[j+1]] = v
			}
		}
		got[name] = m
	}
	return got
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func copyFile(from, to string) {
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o755)
	}
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchratio: "+format+"\n", args...)
	os.Exit(2)
}
