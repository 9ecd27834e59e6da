package client

import (
	"context"
	"testing"

	"github.com/virtkey/virtkey/ctap2"
)

// FuzzDeviceAnswers feeds arbitrary answers (status ‖ CBOR) to every
// helper: a broken or hostile authenticator may make them fail, never
// panic or allocate without bound.
func FuzzDeviceAnswers(f *testing.F) {
	f.Add([]byte{0x00})
	f.Add([]byte{0x00, 0xA0})
	f.Add([]byte{0x31})
	f.Add([]byte{0x00, 0xA1, 0x03, 0x08})                                     // {3: 8}
	f.Add([]byte{0x00, 0xA2, 0x04, 0x40, 0x05, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF}) // huge totalRPs
	f.Add([]byte{0x00, 0xA1, 0x09, 0x1B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, answer []byte) {
		d := New(&fakeConn{answer: func([]byte) []byte { return answer }}, nil)
		d.info = &ctap2.GetInfoResponse{
			Options:            map[string]bool{"credMgmt": true, "authnrCfg": true, "pinUvAuthToken": true, "clientPin": true},
			PinUvAuthProtocols: []uint{2, 1},
		}
		ctx := context.Background()
		tok, _ := testToken(t, 2)
		d.GetPINRetries(ctx)
		d.GetUVRetries(ctx)
		d.GetKeyAgreement(ctx)
		d.GetPINToken(ctx, "1234", PermCredentialMgmt, "")
		d.SetPIN(ctx, "1234")
		cm, err := d.CredentialManagement(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		cm.Metadata(ctx)
		cm.EnumerateRPs(ctx)
		if creds, err := cm.EnumerateCredentials(ctx, RPIDHash("example.com")); err == nil {
			for _, c := range creds {
				c.Algorithm()
			}
		}
		d.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: testCDH}, tok)
		d.MakeCredential(ctx, mcRequest("example.com", []byte{1}, "u", true), tok)
		d.GetInfo(ctx)
	})
}
