#!/usr/bin/env bash
# The fuzz campaign (README "Tests"): every fuzz target of the module, one
# after the other, for a given time each. A target that finds a failing
# input fails: go test writes the input under <package>/testdata/fuzz/<Target>/
# (every later `go test` replays it), and the script lists it and exits 1.
#
#   scripts/fuzz.sh                  # 4 s per target: the CI form (about 4 min)
#   scripts/fuzz.sh -t 3m            # a campaign: 3 minutes per target
#   scripts/fuzz.sh -t 3m -p 1       # with one fuzzing worker (a shared machine)
#   scripts/fuzz.sh -only 'Open|CBOR' -t 10m
#   scripts/fuzz.sh -list            # the targets
#
# The targets are found by their `func FuzzX(f *testing.F)` lines, so a new
# one joins the campaign without editing this script.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=4s
parallel=""
only=""
list=false
while [ $# -gt 0 ]; do
	case "$1" in
	-t) fuzztime="$2"; shift 2 ;;
	-p) parallel="$2"; shift 2 ;;
	-only) only="$2"; shift 2 ;;
	-list) list=true; shift ;;
	*) echo "fuzz.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
	esac
done

# "package-dir Target" lines, sorted.
targets=$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
	sed -E 's#^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort)
if [ -n "$only" ]; then
	targets=$(echo "$targets" | grep -E "$only" || true)
fi
if [ -z "$targets" ]; then
	echo "fuzz.sh: no fuzz target matches" >&2
	exit 2
fi
if $list; then
	echo "$targets"
	exit 0
fi

n=0
failed=()
start=$(date +%s)
while read -r dir target; do
	n=$((n + 1))
	args=(-run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime")
	if [ -n "$parallel" ]; then
		args+=(-parallel "$parallel")
	fi
	before=$(find "$dir/testdata/fuzz/$target" -type f 2>/dev/null | sort || true)
	t0=$(date +%s)
	ok=false
	for try in 1 2 3; do
		if out=$(go test "${args[@]}" "./$dir" 2>&1); then
			ok=true
			break
		fi
		after=$(find "$dir/testdata/fuzz/$target" -type f 2>/dev/null | sort || true)
		# Go's fuzz coordinator (go1.26, golang/go#75804, fixed in go1.27)
		# can end a run at the -fuzztime deadline with a bare "context
		# deadline exceeded" and no input: a race between its deadline and
		# a busy worker, not a finding. Such a run is repeated (up to three
		# tries); anything else — an input written, a panic, a hang — fails.
		if [ "$after" = "$before" ] && ! echo "$out" | grep -qE 'panic|Failing input|fuzzing process hung' &&
			echo "$out" | grep -qxE '[[:space:]]*context deadline exceeded'; then
			echo "fuzz: $dir $target: try $try ended in Go's fuzztime race (golang/go#75804), no input; again"
			continue
		fi
		break
	done
	if $ok; then
		echo "fuzz: ok   $dir $target ($(($(date +%s) - t0)) s)"
	else
		echo "fuzz: FAIL $dir $target"
		echo "$out" | tail -40
		after=$(find "$dir/testdata/fuzz/$target" -type f 2>/dev/null | sort || true)
		new=$(comm -13 <(echo "$before") <(echo "$after") || true)
		failed+=("$dir $target: ${new:-no new input file (see the output above)}")
	fi
done <<<"$targets"

echo "fuzz: $n targets × $fuzztime in $(($(date +%s) - start)) s: ${#failed[@]} failing"
for f in "${failed[@]+"${failed[@]}"}"; do
	echo "  $f"
done
[ ${#failed[@]} -eq 0 ]
