package fido2tools

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func b64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// setPIN sets testPIN with `fido2-token -S` and checks getInfo reports it.
func setPIN(t *testing.T, k *keyProc, dir string) {
	t.Helper()
	r := k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-S", k.Device))
	if r.Prompt != 2 {
		t.Fatalf("fido2-token -S answered %d PIN prompts, want 2 (new PIN, again)", r.Prompt)
	}
	info := k.must(t, k.run(t, dir, "fido2-token", "-I", k.Device)).Out
	if !regexp.MustCompile(`(?m)^options:.*[ ,]clientPin\b`).MatchString(info) {
		t.Fatalf("after fido2-token -S, getInfo options lack clientPin:\n%s", info)
	}
}

// pinKey starts a key for a test of programs and sets its PIN with
// fido2-token; dir is the tools' working directory.
func pinKey(t *testing.T, programs ...string) (*keyProc, string) {
	t.Helper()
	needSetup(t, programs...)
	k := startKey(t)
	dir := t.TempDir()
	setPIN(t, k, dir)
	return k, dir
}

// TestTokenInfoListAndPIN: `fido2-token -I` through the shim, `-L` lists the
// UDP device via the interposed manifest, `-S` sets a PIN.
func TestTokenInfoListAndPIN(t *testing.T) {
	needSetup(t, "fido2-token")
	k := startKey(t)
	dir := t.TempDir()

	info := k.must(t, k.run(t, dir, "fido2-token", "-I", k.Device)).Out
	for _, want := range []string{
		`(?m)^version strings:.*FIDO_2_1`,
		`(?m)^extension strings:.*\bhmac-secret\b`,
		`(?m)^extension strings:.*\bcredProtect\b`,
		`(?m)^options:.*\brk\b`,
		`(?m)^options:.*\bnoclientPin\b`,
		`(?m)^options:.*\bcredMgmt\b`,
		`(?m)^algorithms:.*\bes256\b`,
		`(?m)^pin protocols:.*\b2\b`,
	} {
		if !regexp.MustCompile(want).MatchString(info) {
			t.Errorf("fido2-token -I output does not match %s:\n%s", want, info)
		}
	}

	list := k.must(t, k.run(t, dir, "fido2-token", "-L")).Out
	want := k.Device + ": vendor=0x0000, product=0x0000 (virtkey UDP authenticator)"
	if !strings.Contains(list, want) {
		t.Errorf("fido2-token -L does not list %q:\n%s", want, list)
	}

	// Another path passes through the shim to libfido2's own hidraw code.
	r := k.run(t, dir, "fido2-token", "-I", "/nonexistent/hidraw")
	if r.Err == nil || strings.Contains(r.Out, "udpshim") {
		t.Errorf("a non-udp path should fail in libfido2 itself, got:\n%s", r)
	}

	setPIN(t, k, dir)
	info = k.must(t, k.run(t, dir, "fido2-token", "-I", k.Device)).Out
	if !strings.Contains(info, "pin retries: 8") {
		t.Errorf("fido2-token -I after setting the PIN: want \"pin retries: 8\":\n%s", info)
	}
}

// TestCredAssertHmacSecret: a resident es256 credential with hmac-secret made
// by fido2-cred -M and verified by fido2-cred -V; assertions by fido2-assert
// -G (by credential id and discoverable, with and without UV) verified by
// fido2-assert -V; the hmac-secret output is stable per credential and salt
// and differs with and without UV.
func TestCredAssertHmacSecret(t *testing.T) {
	k, dir := pinKey(t, "fido2-token", "fido2-cred", "fido2-assert")
	p := func(name string) string { return filepath.Join(dir, name) }

	const rp = "hmac.example.org"
	userID := b64(16)
	writeLines(t, p("cred.in"), b64(32), rp, "alice", userID)
	r := k.must(t, k.runPIN(t, dir, testPIN, "fido2-cred", "-M", "-r", "-h", "-v",
		"-i", p("cred.in"), "-o", p("cred.out"), k.Device, "es256"))
	if r.Prompt != 1 {
		t.Errorf("fido2-cred -M -r -v answered %d PIN prompts, want 1", r.Prompt)
	}
	cred := readLines(t, p("cred.out"))
	if len(cred) < 6 {
		t.Fatalf("fido2-cred -M output has %d lines, want ≥ 6: %q", len(cred), cred)
	}
	if cred[1] != rp || cred[2] != "packed" {
		t.Errorf("fido2-cred -M: rp %q format %q, want %q packed", cred[1], cred[2], rp)
	}
	credID := cred[4]
	k.must(t, k.run(t, dir, "fido2-cred", "-V", "-h", "-v", "-i", p("cred.out"), "-o", p("cred.pub"), "es256"))
	pub := readLines(t, p("cred.pub"))
	if len(pub) < 3 || pub[0] != credID || pub[1] != "-----BEGIN PUBLIC KEY-----" {
		t.Fatalf("fido2-cred -V output: %q", pub)
	}
	if err := os.WriteFile(p("pub.pem"), []byte(strings.Join(pub[1:], "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Verification must fail for a tampered attestation (another rp id).
	bad := append([]string(nil), cred...)
	bad[1] = "evil.example.org"
	writeLines(t, p("cred.bad"), bad...)
	if r := k.run(t, dir, "fido2-cred", "-V", "-h", "-i", p("cred.bad"), "es256"); r.Err == nil {
		t.Errorf("fido2-cred -V accepted a credential with a changed rp id")
	}

	salt := b64(32)
	assert := func(name string, uv, resident bool) []string {
		t.Helper()
		in := []string{b64(32), rp}
		if !resident {
			in = append(in, credID)
		}
		in = append(in, salt)
		writeLines(t, p(name+".in"), in...)
		args := []string{"fido2-assert", "-G", "-h", "-p"}
		if resident {
			args = append(args, "-r")
		}
		var r result
		if uv {
			args = append(args, "-v", "-i", p(name+".in"), "-o", p(name+".out"), k.Device)
			r = k.must(t, k.runPIN(t, dir, testPIN, args...))
			if r.Prompt != 1 {
				t.Errorf("%s: answered %d PIN prompts, want 1", r.Cmd, r.Prompt)
			}
		} else {
			args = append(args, "-i", p(name+".in"), "-o", p(name+".out"), k.Device)
			k.must(t, k.run(t, dir, args...))
		}
		out := readLines(t, p(name+".out"))
		want := 5 // cdh, rp, authData, sig, hmac secret
		if resident {
			want = 6 // … user id before the hmac secret
		}
		if len(out) != want {
			t.Fatalf("%s: %d output lines, want %d: %q", name, len(out), want, out)
		}
		if resident && out[4] != userID {
			t.Errorf("%s: user id %q, want %q", name, out[4], userID)
		}
		// fido2-assert -V reads cdh, rp, authData, sig.
		writeLines(t, p(name+".v"), out[:4]...)
		vargs := []string{"fido2-assert", "-V", "-h", "-p"}
		if uv {
			vargs = append(vargs, "-v")
		}
		k.must(t, k.run(t, dir, append(vargs, "-i", p(name+".v"), p("pub.pem"), "es256")...))
		// A tampered client data hash must not verify.
		tampered := append([]string(nil), out[:4]...)
		tampered[0] = b64(32)
		writeLines(t, p(name+".bad"), tampered...)
		if r := k.run(t, dir, append(vargs, "-i", p(name+".bad"), p("pub.pem"), "es256")...); r.Err == nil {
			t.Errorf("%s: fido2-assert -V accepted a changed client data hash", name)
		}
		secret, err := base64.StdEncoding.DecodeString(out[len(out)-1])
		if err != nil || len(secret) != 32 {
			t.Fatalf("%s: hmac secret %q: %v (want 32 bytes)", name, out[len(out)-1], err)
		}
		return out
	}

	uv1 := assert("uv1", true, false)
	uv2 := assert("uv2", true, false)
	uvRK := assert("uvrk", true, true)
	noUV := assert("nouv", false, false)
	last := func(s []string) string { return s[len(s)-1] }
	if last(uv1) != last(uv2) {
		t.Errorf("hmac-secret with UV not stable: %s vs %s", last(uv1), last(uv2))
	}
	if last(uvRK) != last(uv1) {
		t.Errorf("hmac-secret of the discoverable assertion %s differs from the one by credential id %s",
			last(uvRK), last(uv1))
	}
	if last(noUV) == last(uv1) {
		t.Errorf("hmac-secret without UV equals the one with UV (%s): want the other CredRandom", last(uv1))
	}
	noUV2 := assert("nouv2", false, false)
	if last(noUV2) != last(noUV) {
		t.Errorf("hmac-secret without UV not stable: %s vs %s", last(noUV), last(noUV2))
	}
}

// TestEdDSACredential: a non-resident EdDSA credential made and verified by
// fido2-cred, asserted and verified by fido2-assert, without a PIN.
func TestEdDSACredential(t *testing.T) {
	needSetup(t, "fido2-cred", "fido2-assert")
	k := startKey(t)
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	const rp = "eddsa.example.org"
	writeLines(t, p("cred.in"), b64(32), rp, "bob", b64(16))
	k.must(t, k.run(t, dir, "fido2-cred", "-M", "-i", p("cred.in"), "-o", p("cred.out"), k.Device, "eddsa"))
	k.must(t, k.run(t, dir, "fido2-cred", "-V", "-i", p("cred.out"), "-o", p("cred.pub"), "eddsa"))
	pub := readLines(t, p("cred.pub"))
	if len(pub) < 3 {
		t.Fatalf("fido2-cred -V output: %q", pub)
	}
	os.WriteFile(p("pub.pem"), []byte(strings.Join(pub[1:], "\n")+"\n"), 0o600)
	writeLines(t, p("as.in"), b64(32), rp, pub[0])
	k.must(t, k.run(t, dir, "fido2-assert", "-G", "-p", "-i", p("as.in"), "-o", p("as.out"), k.Device))
	k.must(t, k.run(t, dir, "fido2-assert", "-V", "-p", "-i", p("as.out"), p("pub.pem"), "eddsa"))
}

// TestCredentialManagement: fido2-token -L -r lists relying parties, -L -k
// their credentials, -D -i deletes one.
func TestCredentialManagement(t *testing.T) {
	k, dir := pinKey(t, "fido2-token", "fido2-cred")
	p := func(name string) string { return filepath.Join(dir, name) }

	type made struct{ rp, user, userID, credID string }
	var creds []made
	for i, c := range []made{
		{rp: "one.example.org", user: "alice"},
		{rp: "one.example.org", user: "bob"},
		{rp: "two.example.org", user: "carol"},
	} {
		c.userID = b64(16)
		in := p("cred.in")
		writeLines(t, in, b64(32), c.rp, c.user, c.userID)
		out := p("cred.out")
		k.must(t, k.runPIN(t, dir, testPIN, "fido2-cred", "-M", "-r", "-i", in, "-o", out, k.Device))
		lines := readLines(t, out)
		if len(lines) < 5 {
			t.Fatalf("credential %d: fido2-cred -M output %q", i, lines)
		}
		c.credID = lines[4]
		creds = append(creds, c)
	}

	rps := k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-L", "-r", k.Device)).Out
	for _, rp := range []string{"one.example.org", "two.example.org"} {
		if !regexp.MustCompile(`(?m)^\d\d: \S+ ` + regexp.QuoteMeta(rp) + `$`).MatchString(rps) {
			t.Errorf("fido2-token -L -r does not list %s:\n%s", rp, rps)
		}
	}

	rks := k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-L", "-k", "one.example.org", k.Device)).Out
	for _, c := range creds {
		// "NN: credID displayName userID type protection"
		listed := regexp.MustCompile(`(?m)^\d\d: ` + regexp.QuoteMeta(c.credID) + ` \S+ ` +
			regexp.QuoteMeta(c.userID) + ` es256 `).MatchString(rks)
		if listed != (c.rp == "one.example.org") {
			t.Errorf("fido2-token -L -k one.example.org: credential of %s@%s listed=%v:\n%s",
				c.user, c.rp, listed, rks)
		}
	}

	k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-D", "-i", creds[2].credID, k.Device))
	rps = k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-L", "-r", k.Device)).Out
	if strings.Contains(rps, "two.example.org") || !strings.Contains(rps, "one.example.org") {
		t.Errorf("after deleting the only two.example.org credential, -L -r lists:\n%s", rps)
	}
	k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-D", "-i", creds[0].credID, k.Device))
	rks = k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-L", "-k", "one.example.org", k.Device)).Out
	if strings.Contains(rks, creds[0].credID) || !strings.Contains(rks, creds[1].credID) {
		t.Errorf("after deleting alice's credential, -L -k one.example.org lists:\n%s", rks)
	}
}

// TestLargeBlobs: fido2-token -S -b / -G -b / -D -b / -L -b with a
// credential made with a largeBlobKey (fido2-cred -M -b).
func TestLargeBlobs(t *testing.T) {
	needSetup(t, "fido2-token", "fido2-cred")
	k := startKey(t)
	dir := t.TempDir()
	info := k.must(t, k.run(t, dir, "fido2-token", "-I", k.Device)).Out
	if !regexp.MustCompile(`(?m)^options:.*[ ,]largeBlobs\b`).MatchString(info) {
		t.Fatalf("getInfo does not advertise largeBlobs:\n%s", info)
	}
	setPIN(t, k, dir)
	p := func(name string) string { return filepath.Join(dir, name) }

	const rp = "blob.example.org"
	writeLines(t, p("cred.in"), b64(32), rp, "dave", b64(16))
	k.must(t, k.runPIN(t, dir, testPIN, "fido2-cred", "-M", "-r", "-b", "-i", p("cred.in"), "-o", p("cred.out"), k.Device))
	cred := readLines(t, p("cred.out"))
	if len(cred) < 7 {
		t.Fatalf("fido2-cred -M -b: want a largeBlobKey line, got %q", cred)
	}
	if key, err := base64.StdEncoding.DecodeString(cred[len(cred)-1]); err != nil || len(key) != 32 {
		t.Fatalf("fido2-cred -M -b: largeBlobKey %q: %v", cred[len(cred)-1], err)
	}

	blob := bytes.Repeat([]byte("virtkey large blob. "), 40) // 800 bytes
	if err := os.WriteFile(p("blob"), blob, 0o600); err != nil {
		t.Fatal(err)
	}
	k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-S", "-b", "-n", rp, p("blob"), k.Device))
	k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-G", "-b", "-n", rp, p("blob.got"), k.Device))
	if got, err := os.ReadFile(p("blob.got")); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("fido2-token -G -b returned %d bytes (%v), want the %d written", len(got), err, len(blob))
	}

	// -L -b lists the entry with its original size. fido2-tools 1.12
	// inflates with zlib's uncompress() (RFC 1950) while libfido2 1.12 writes
	// raw DEFLATE (RFC 1951), so it cannot attribute the entry to a
	// credential and prints "<unknown> <unknown>"; newer tools try both.
	list := k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-L", "-b", k.Device)).Out
	if !regexp.MustCompile(`(?m)^00: +\d+ +800 `).MatchString(list) {
		t.Errorf("fido2-token -L -b: want entry 00 of original size 800:\n%s", list)
	}

	k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-D", "-b", "-n", rp, k.Device))
	if r := k.runPIN(t, dir, testPIN, "fido2-token", "-G", "-b", "-n", rp, p("blob.gone"), k.Device); r.Err == nil {
		t.Errorf("fido2-token -G -b succeeded after -D -b")
	}
	list = k.must(t, k.runPIN(t, dir, testPIN, "fido2-token", "-L", "-b", k.Device)).Out
	if regexp.MustCompile(`(?m)^\d\d: `).MatchString(list) {
		t.Errorf("fido2-token -L -b lists entries after -D -b:\n%s", list)
	}
}

// TestSSHKeygen: ssh-keygen's built-in sk middleware (ssh-sk-helper, which
// links libfido2 and inherits LD_PRELOAD): ecdsa-sk with -O device= and
// through the manifest, ed25519-sk -O resident, -Y sign / -Y verify, -K.
func TestSSHKeygen(t *testing.T) {
	k, dir := pinKey(t, "fido2-token", "ssh-keygen")
	p := func(name string) string { return filepath.Join(dir, name) }
	pubKey := func(path string) string { // "type base64" of a .pub file
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			t.Fatalf("%s: %q", path, b)
		}
		return f[0] + " " + f[1]
	}

	// ecdsa-sk, not resident: no PIN needed (makeCredUvNotRqd).
	k.must(t, k.runPIN(t, dir, testPIN, "ssh-keygen", "-q", "-t", "ecdsa-sk", "-O", "device="+k.Device,
		"-f", p("id_ecdsa_sk"), "-N", "", "-C", "ecdsa@virtkey"))
	ecdsa := pubKey(p("id_ecdsa_sk.pub"))
	if !strings.HasPrefix(ecdsa, "sk-ecdsa-sha2-nistp256@openssh.com ") {
		t.Fatalf("ecdsa-sk public key: %s", ecdsa)
	}
	// Without -O device the middleware enumerates (the shim's manifest).
	k.must(t, k.runPIN(t, dir, testPIN, "ssh-keygen", "-q", "-t", "ecdsa-sk",
		"-f", p("id_ecdsa_sk2"), "-N", "", "-C", "ecdsa2@virtkey"))

	// ed25519-sk, resident: the key asks for the PIN.
	r := k.must(t, k.runPIN(t, dir, testPIN, "ssh-keygen", "-q", "-t", "ed25519-sk", "-O", "resident",
		"-O", "application=ssh:virtkey-test", "-O", "user=erin",
		"-f", p("id_ed25519_sk"), "-N", "", "-C", "ed25519@virtkey"))
	if r.Prompt != 1 {
		t.Errorf("ssh-keygen -O resident answered %d PIN prompts, want 1", r.Prompt)
	}
	ed := pubKey(p("id_ed25519_sk.pub"))
	if !strings.HasPrefix(ed, "sk-ssh-ed25519@openssh.com ") {
		t.Fatalf("ed25519-sk public key: %s", ed)
	}

	writeLines(t, p("allowed_signers"),
		"ecdsa@virtkey "+ecdsa,
		"ed25519@virtkey "+ed)
	msg := []byte("signed by virtkey through ssh-keygen\n")
	signVerify := func(name, key, principal string) {
		t.Helper()
		file := p(name)
		if err := os.WriteFile(file, msg, 0o600); err != nil {
			t.Fatal(err)
		}
		k.must(t, k.run(t, dir, "ssh-keygen", "-Y", "sign", "-f", key, "-n", "file", file))
		verify := []string{"sh", "-c", `exec ssh-keygen -Y verify -f "$1" -I "$2" -n file -s "$3" < "$4"`, "sh",
			p("allowed_signers"), principal, file + ".sig", file}
		r := k.must(t, k.run(t, dir, verify...))
		if !strings.Contains(r.Out, `Good "file" signature for `+principal) {
			t.Errorf("ssh-keygen -Y verify: %s", r.Out)
		}
		tampered := file + ".tampered"
		os.WriteFile(tampered, append([]byte("x"), msg...), 0o600)
		verify[len(verify)-1] = tampered
		if r := k.run(t, dir, verify...); r.Err == nil {
			t.Errorf("ssh-keygen -Y verify accepted a changed message: %s", r.Out)
		}
	}
	signVerify("msg-ecdsa", p("id_ecdsa_sk"), "ecdsa@virtkey")
	signVerify("msg-ed25519", p("id_ed25519_sk"), "ed25519@virtkey")

	// ssh-keygen -K downloads the resident key: the same public key, and
	// the downloaded handle signs.
	dl := filepath.Join(dir, "download")
	if err := os.Mkdir(dl, 0o700); err != nil {
		t.Fatal(err)
	}
	k.must(t, k.runPIN(t, dl, testPIN, "ssh-keygen", "-K", "-N", ""))
	files, _ := filepath.Glob(filepath.Join(dl, "*.pub"))
	if len(files) != 1 {
		t.Fatalf("ssh-keygen -K wrote %v, want one public key", files)
	}
	if got := pubKey(files[0]); got != ed {
		t.Errorf("ssh-keygen -K public key %s, want %s", got, ed)
	}
	if !strings.Contains(filepath.Base(files[0]), "erin") {
		t.Errorf("ssh-keygen -K file %s does not name the user id erin", files[0])
	}
	signVerify("msg-downloaded", strings.TrimSuffix(files[0], ".pub"), "ed25519@virtkey")
}
