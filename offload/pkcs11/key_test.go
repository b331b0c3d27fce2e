//go:build cgo

package pkcs11

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"
)

const softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"

// tokenDir is the token scripts/softhsm-init.sh made for this test
// process ("" without SoftHSM2). One per process: the module reads
// SOFTHSM2_CONF once, at C_Initialize.
var tokenDir string

func TestMain(m *testing.M) {
	code := func() int {
		if _, err := os.Stat(softhsmModule); err == nil {
			dir, err := os.MkdirTemp("", "pkcs11-test")
			if err != nil {
				panic(err)
			}
			defer os.RemoveAll(dir)
			if out, err := exec.Command("../../scripts/softhsm-init.sh", dir).CombinedOutput(); err != nil {
				panic(fmt.Sprintf("softhsm-init: %v\n%s", err, out))
			}
			os.Setenv("SOFTHSM2_CONF", filepath.Join(dir, "softhsm2.conf"))
			tokenDir = dir
		}
		return m.Run()
	}()
	os.Exit(code)
}

// softhsm is the test token's directory; skipped without SoftHSM2.
func softhsm(t *testing.T) string {
	t.Helper()
	if tokenDir == "" {
		t.Skip("SoftHSM2 not installed (make deps)")
	}
	return tokenDir
}

func TestSignWithTokenKeys(t *testing.T) {
	dir := softhsm(t)
	digest := sha256.Sum256([]byte("proxylab"))
	for _, tc := range []struct {
		label string
		opts  crypto.SignerOpts
	}{
		{"ec", crypto.SHA256},
		{"rsa", &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
		{"rsa", crypto.SHA256},
	} {
		var reasons []string
		k, err := Open(&Options{Module: softhsmModule, TokenLabel: "proxylab", KeyLabel: tc.label, PinFile: filepath.Join(dir, "pin")},
			func(r string) { reasons = append(reasons, r) })
		if err != nil {
			t.Fatalf("%s: %v", tc.label, err)
		}
		sig, err := k.Sign(rand.Reader, digest[:], tc.opts)
		if err != nil {
			t.Fatalf("%s: sign: %v", tc.label, err)
		}
		switch pub := k.Public().(type) {
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(pub, digest[:], sig) {
				t.Fatalf("%s: signature does not verify", tc.label)
			}
		case *rsa.PublicKey:
			if o, ok := tc.opts.(*rsa.PSSOptions); ok {
				err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, o)
			} else {
				err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.label, err)
			}
		}
		if len(reasons) > 0 {
			t.Fatalf("%s: failures counted: %v", tc.label, reasons)
		}
	}
}

func TestOpenRefusesWithReason(t *testing.T) {
	dir := softhsm(t)
	pin := filepath.Join(dir, "pin")
	for _, tc := range []struct {
		name   string
		o      Options
		reason string
	}{
		{"no such key", Options{Module: softhsmModule, TokenLabel: "proxylab", KeyLabel: "nope", PinFile: pin}, "key_not_found"},
		{"no such token", Options{Module: softhsmModule, TokenLabel: "other", KeyLabel: "ec", PinFile: pin}, "token_not_present"},
	} {
		_, err := Open(&tc.o, nil)
		var e *Error
		if !errors.As(err, &e) || e.Reason != tc.reason {
			t.Errorf("%s: got %v (reason %q), want reason %s", tc.name, err, reasonOf(err), tc.reason)
		}
	}
}

// TestTokenLostAndBack moves the token's directory away: signatures fail
// with a counted reason, then succeed again (logged in anew) once it is back.
func TestTokenLostAndBack(t *testing.T) {
	dir := softhsm(t)
	var reasons []string
	k, err := Open(&Options{Module: softhsmModule, TokenLabel: "proxylab", KeyLabel: "ec", PinFile: filepath.Join(dir, "pin")},
		func(r string) { reasons = append(reasons, r) })
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := k.Sign(nil, digest[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Rename(tokens, tokens+".away"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err = k.Sign(nil, digest[:], crypto.SHA256); err == nil {
			t.Fatal("signed with the token away")
		}
		t.Logf("while away: %v", err)
	}
	if len(reasons) != 3 {
		t.Fatalf("reasons counted %v, want 3", reasons)
	}
	if err := os.Rename(tokens+".away", tokens); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = k.Sign(nil, digest[:], crypto.SHA256)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token back, still failing: %v (reasons %v)", err, reasons)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("reasons %v", reasons)
}

func TestReasonFor(t *testing.T) {
	for _, tc := range []struct {
		rv        uint
		reason    string
		reconnect bool
	}{
		{p11.CKR_TOKEN_NOT_PRESENT, "token_not_present", true},
		{p11.CKR_DEVICE_REMOVED, "token_not_present", true},
		{p11.CKR_SESSION_HANDLE_INVALID, "session", true},
		{p11.CKR_USER_NOT_LOGGED_IN, "login", true},
		{p11.CKR_OBJECT_HANDLE_INVALID, "key_not_found", true},
		{p11.CKR_DEVICE_ERROR, "device", true},
		{p11.CKR_MECHANISM_INVALID, "sign_failed", false},
	} {
		e := classify(fmt.Errorf("wrapped: %w", p11.Error(tc.rv))).(*Error)
		if e.Reason != tc.reason || e.reconnect() != tc.reconnect {
			t.Errorf("%#x: %s reconnect=%v, want %s %v", tc.rv, e.Reason, e.reconnect(), tc.reason, tc.reconnect)
		}
	}
}
