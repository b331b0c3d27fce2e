package registry

import (
	"fmt"
	"testing"
)

func TestRegistry(t *testing.T) {
	r := New[int]("widget")
	r.Register("b", 2)
	r.Register("a", 1)
	if v, ok := r.Get("a"); !ok || v != 1 {
		t.Fatalf("Get a: %v %v", v, ok)
	}
	if _, ok := r.Get("c"); ok {
		t.Fatal("Get of an unregistered name succeeded")
	}
	if fmt.Sprint(r.Names()) != "[a b]" {
		t.Fatalf("names %v", r.Names())
	}
	defer func() {
		if msg := recover(); msg != `widget "a" registered twice` {
			t.Fatalf("duplicate: %v", msg)
		}
	}()
	r.Register("a", 3)
}
