package transport

import (
	"errors"
	"strings"
	"testing"
)

func TestRegistry(t *testing.T) {
	Register("test-a", func(Options) (Transport, error) { return nil, errors.New("built") })
	if !Registered("test-a") {
		t.Fatal("not registered")
	}
	if _, err := New("test-a", Options{}); err == nil || err.Error() != "built" {
		t.Fatalf("factory not called: %v", err)
	}
	_, err := New("nope", Options{})
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "test-a") {
		t.Fatalf("unknown transport error should list the available ones: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	Register("test-a", nil)
}
