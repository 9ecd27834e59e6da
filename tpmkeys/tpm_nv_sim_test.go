//go:build cgo

package tpmkeys

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestTPMRollbackReference: a TPM key store keeps state.db's rollback
// reference in a TPM NV counter: defined at first start (and for a
// tpm.json written before the counters), recorded in tpm.json, kept across
// restarts and ResetKeys; its epoch only goes up.
func TestTPMRollbackReference(t *testing.T) {
	sim := newSim(t)
	dir := t.TempDir()
	k := openTestTPM(t, sim, dir)
	st, err := readTPMState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.NVCounter < uint32(nvOwnerFirst) || st.NVCounter >= uint32(nvOwnerFirst)+nvOwnerCount || st.EpochFile {
		t.Fatalf("tpm.json records counter %#x (epoch file %v), want one in the owner range", st.NVCounter, st.EpochFile)
	}
	ref := k.RollbackReference()
	if !strings.Contains(ref.String(), "TPM NV counter") {
		t.Errorf("reference %q", ref)
	}
	for want := uint64(0); want <= 3; want++ {
		if want > 0 {
			v, err := ref.AdvanceEpoch(ctx)
			if err != nil || v != want {
				t.Fatalf("AdvanceEpoch = %d, %v; want %d", v, err, want)
			}
		}
		if v, err := ref.Epoch(ctx); err != nil || v != want {
			t.Fatalf("Epoch = %d, %v; want %d", v, err, want)
		}
	}
	// A response lost after the increment ran: the retry does not
	// increment again.
	sim.conn.mu.Lock()
	sim.conn.loseResponse = tpm2.TPMCCNVIncrement
	sim.conn.mu.Unlock()
	if v, err := ref.AdvanceEpoch(ctx); err != nil || v != 4 {
		t.Fatalf("AdvanceEpoch across a lost response = %d, %v; want 4", v, err)
	}
	if err := k.ResetKeys(ctx); err != nil {
		t.Fatal(err)
	}
	k.Close()

	k = openTestTPM(t, sim, dir)
	if after, _ := readTPMState(dir); after.NVCounter != st.NVCounter || after.NVBase != st.NVBase {
		t.Errorf("counter %#x/%d after ResetKeys and a restart, was %#x/%d", after.NVCounter, after.NVBase, st.NVCounter, st.NVBase)
	}
	if v, err := k.RollbackReference().Epoch(ctx); err != nil || v != 4 {
		t.Errorf("Epoch after a restart = %d, %v; want 4", v, err)
	}
	k.Close()

	// A tpm.json from before the counters gets one.
	old := *st
	old.NVCounter, old.NVBase = 0, 0
	b, _ := json.Marshal(&old)
	if err := os.WriteFile(filepath.Join(dir, TPMStateFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	k = openTestTPM(t, sim, dir)
	if got, _ := readTPMState(dir); got.NVCounter == 0 || got.NVCounter == st.NVCounter {
		t.Errorf("legacy tpm.json: counter %#x, want a new one", got.NVCounter)
	}
	if v, err := k.RollbackReference().Epoch(ctx); err != nil || v != 0 {
		t.Errorf("new counter at epoch %d, %v", v, err)
	}
}

// TestTPMRollbackReferenceReplaced: an index that is no longer virtkey's
// counter (deleted and re-defined as ordinary NV memory, which anyone with
// its auth could write back to an old value) is an error, not a value.
func TestTPMRollbackReferenceReplaced(t *testing.T) {
	sim := newSim(t)
	k := openTestTPM(t, sim, t.TempDir())
	h := k.nvCounter
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	rp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(sim.conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: h, Name: rp.NVName}}).Execute(sim.conn); err != nil {
		t.Fatal(err)
	}
	pub := nvCounterPublic(h)
	pub.Attributes.NT = tpm2.TPMNTOrdinary
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(pub)}).Execute(sim.conn); err != nil {
		t.Fatal(err)
	}
	if _, err := k.RollbackReference().Epoch(ctx); err == nil || !strings.Contains(err.Error(), "not a virtkey counter") {
		t.Errorf("Epoch of a replaced index: %v", err)
	}
}
