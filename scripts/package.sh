#!/usr/bin/env bash
# Builds virtkey for distribution: a static binary (CGO_ENABLED=0,
# -trimpath, the version stamped from git) and .deb and .rpm packages made
# with nfpm, run as a pinned tool (never a dependency of virtkey's module).
#
#   scripts/package.sh                 # dist/virtkey, dist/virtkey_*.deb, dist/virtkey-*.rpm
#   scripts/package.sh -o DIR deb      # only the .deb, into DIR
#   GOARCH=arm64 scripts/package.sh    # another architecture
#   VIRTKEY_VERSION=1.2.3 scripts/package.sh   # a version of your own
#
# The packages hold:
#   /usr/bin/virtkey
#   /usr/lib/udev/rules.d/70-virtkey-uhid.rules     (contrib/udev: /dev/uhid for the group virtkey)
#   /usr/lib/modules-load.d/virtkey.conf            (loads uhid at boot)
#   /usr/lib/systemd/user/virtkey.service           (contrib/systemd, ExecStart=/usr/bin/virtkey)
#   /usr/share/man/man1/virtkey.1.gz                ("virtkey man": made from the CLI's own table)
#   bash, zsh and fish completions                  ("virtkey completion SHELL")
# and a post-install script (contrib/package/postinst) that creates the
# system group virtkey and reloads a running udev; it never fails without
# udev or systemd.
#
# The version: a tag vX.Y.Z on HEAD gives X.Y.Z; otherwise the last tag (or
# v0.0.0) + git<commit time>.<commit>, with ".dirty" for uncommitted
# changes. The first run downloads and builds nfpm (a few minutes); later
# runs take seconds.
set -euo pipefail

NFPM_VERSION=v2.48.0 # github.com/goreleaser/nfpm/v2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

out=dist
formats=()
while [ $# -gt 0 ]; do
	case $1 in
	-o)
		out=$2
		shift 2
		;;
	deb | rpm)
		formats+=("$1")
		shift
		;;
	*)
		echo "usage: scripts/package.sh [-o DIR] [deb] [rpm]" >&2
		exit 2
		;;
	esac
done
[ ${#formats[@]} -gt 0 ] || formats=(deb rpm)
mkdir -p "$out"
out=$(cd "$out" && pwd)

goarch=${GOARCH:-$(go env GOARCH)}
hostarch=$(go env GOHOSTARCH)

# ---- the version, from git ----
commit=unknown
when=$(date -u +%Y%m%d%H%M%S)
epoch=$(date +%s)
dirty=""
tag=""
if git rev-parse --git-dir >/dev/null 2>&1; then
	commit=$(git rev-parse HEAD)
	epoch=$(git show -s --format=%ct HEAD)
	when=$(TZ=UTC git show -s --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
	if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
		dirty=.dirty
	fi
	tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null || true)
	last=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || echo v0.0.0)
fi
if [ -n "${VIRTKEY_VERSION:-}" ]; then
	pkgversion=${VIRTKEY_VERSION#v}
elif [ -n "$tag" ] && [ -z "$dirty" ]; then
	pkgversion=${tag#v}
else
	pkgversion="${last:-v0.0.0}"
	pkgversion="${pkgversion#v}+git$when.${commit:0:12}$dirty"
fi
version=v$pkgversion
revision=$commit${dirty:+ (with uncommitted changes)}
# Reproducible: file times in the packages are the commit's.
export SOURCE_DATE_EPOCH=$epoch

echo "== virtkey $version ($goarch), commit $revision"

# ---- the binary ----
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
ldflags="-s -w -X 'main.stampedVersion=$version' -X 'main.stampedRevision=$revision'"
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -buildvcs=false -ldflags "$ldflags" \
	-o "$out/virtkey" ./cmd/virtkey
if go version -m "$out/virtkey" | grep -q 'CGO_ENABLED=1'; then
	echo "package: $out/virtkey is not static" >&2
	exit 1
fi
echo "== $out/virtkey: $(stat -c %s "$out/virtkey") bytes, static"

# ---- what the packages hold besides it ----
docbin=$out/virtkey
if [ "$goarch" != "$hostarch" ]; then
	docbin=$stage/virtkey-host
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$docbin" ./cmd/virtkey
fi
"$docbin" man | gzip -9n >"$stage/virtkey.1.gz"
for shell in bash zsh fish; do
	"$docbin" completion "$shell" >"$stage/completion.$shell"
done
sed 's|/usr/local/bin/virtkey|/usr/bin/virtkey|g' contrib/systemd/virtkey.service >"$stage/virtkey.service"
echo uhid >"$stage/modules-load.conf"

cat >"$stage/nfpm.yaml" <<EOF
name: virtkey
arch: $goarch
platform: linux
version: $pkgversion
version_schema: none
release: "1"
section: utils
priority: optional
maintainer: virtkey developers <virtkey@users.noreply.github.com>
vendor: virtkey
homepage: https://github.com/virtkey/virtkey
description: |-
  virtual FIDO2 security key for Linux, and FIDO2 key manager
  virtkey serves a CTAP2 authenticator through the kernel's /dev/uhid, so
  that browsers, libfido2 and OpenSSH see a USB security key; its passkeys
  live in an encrypted software key store or inside a TPM 2.0. Its other
  commands manage the virtual key or any hardware FIDO2 key.
  Members of the group virtkey may create the key (udev rule for /dev/uhid).
contents:
  - src: $out/virtkey
    dst: /usr/bin/virtkey
    file_info: {mode: 0755}
  - src: $root/contrib/udev/70-virtkey-uhid.rules
    dst: /usr/lib/udev/rules.d/70-virtkey-uhid.rules
    file_info: {mode: 0644}
  - src: $stage/modules-load.conf
    dst: /usr/lib/modules-load.d/virtkey.conf
    file_info: {mode: 0644}
  - src: $stage/virtkey.service
    dst: /usr/lib/systemd/user/virtkey.service
    file_info: {mode: 0644}
  - src: $stage/virtkey.1.gz
    dst: /usr/share/man/man1/virtkey.1.gz
    file_info: {mode: 0644}
  - src: $stage/completion.bash
    dst: /usr/share/bash-completion/completions/virtkey
    file_info: {mode: 0644}
  - src: $stage/completion.zsh
    dst: /usr/share/zsh/vendor-completions/_virtkey
    file_info: {mode: 0644}
    packager: deb
  - src: $stage/completion.zsh
    dst: /usr/share/zsh/site-functions/_virtkey
    file_info: {mode: 0644}
    packager: rpm
  - src: $stage/completion.fish
    dst: /usr/share/fish/vendor_completions.d/virtkey.fish
    file_info: {mode: 0644}
scripts:
  postinstall: $root/contrib/package/postinst
  postremove: $root/contrib/package/postrm
EOF

# ---- the packages ----
for f in "${formats[@]}"; do
	rm -f "$out"/virtkey*."$f"
	go run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" package \
		--config "$stage/nfpm.yaml" --packager "$f" --target "$out/" >&2
	for p in "$out"/virtkey*."$f"; do
		echo "== $p: $(stat -c %s "$p") bytes"
	done
done
