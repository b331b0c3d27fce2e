package transport

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

var runs atomic.Int32

func TestRegistry(t *testing.T) {
	name := fmt.Sprintf("test-%d", runs.Add(1)) // the registry is process-wide: -count=N safe
	Register(name, func(Options) (Transport, error) { return nil, errors.New("built") })
	if !Registered(name) {
		t.Fatal("not registered")
	}
	if _, err := New(name, Options{}); err == nil || err.Error() != "built" {
		t.Fatalf("factory not called: %v", err)
	}
	_, err := New("nope", Options{})
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), name) {
		t.Fatalf("unknown transport error should list the available ones: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	Register(name, nil)
}
