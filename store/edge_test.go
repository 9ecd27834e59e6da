package store

import "testing"

// Empty and oversized inputs give errors or empty answers, never panics.
func TestEdgeInputs(t *testing.T) {
	t.Parallel()
	d, _ := openTemp(t)
	if rec, ok, err := d.Credential(nil); rec != nil || ok || err != nil {
		t.Errorf("Credential(nil) = %v %v %v", rec, ok, err)
	}
	if recs, err := d.CredentialsByRP(nil); len(recs) != 0 || err != nil {
		t.Errorf("CredentialsByRP(nil) = %v %v", recs, err)
	}
	if err := d.DeleteCredential(nil); err != nil {
		t.Errorf("DeleteCredential(nil) = %v", err)
	}
	if _, err := d.NextCounter(nil); err == nil {
		t.Error("NextCounter(nil) succeeded")
	}
	if v, err := d.Setting(""); v != nil || err != nil {
		t.Errorf("Setting(\"\") = %v %v", v, err)
	}
	if err := d.PutSetting(string(make([]byte, 40000)), []byte{1}); err == nil {
		t.Error("40000-byte setting name accepted")
	}
}
