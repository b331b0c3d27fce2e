package xds

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// How the translator treats a field of an Envoy message that is set.
type policy uint8

const (
	// supported: translated into the proxylab model.
	supported policy = iota
	// warned: proxylab does not honour it but it changes nothing a client
	// or an upstream would notice (stat names, cosmetic options); the
	// update is accepted, the field counted and logged.
	warned
	// refused: proxylab cannot honour it and it changes behaviour or
	// security; the resource is NACKed naming the field. Any field set
	// that is in no table is refused too.
	refused
)

func (p policy) String() string { return [...]string{"supported", "warned", "NACKed"}[p] }

// fieldTable is the policy of each field of one message, by proto name.
type fieldTable map[string]policy

// tables are every message the translator reads, by full proto name; the
// docs test checks docs/xds.md names every entry.
var tables = map[protoreflect.FullName]fieldTable{}

// table registers t as the fields of message m.
func table(m proto.Message, t fieldTable) fieldTable {
	tables[m.ProtoReflect().Descriptor().FullName()] = t
	return t
}

// Warning is a field proxylab accepted without honouring it.
type Warning struct {
	Type, Resource, Field string
}

// FieldError is a NACK reason: the resource and the field path in it.
type FieldError struct {
	Type, Resource, Field, Msg string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("xds: %s %q: %s: %s", shortType(e.Type), e.Resource, e.Field, e.Msg)
}

// tr collects what translating one resource finds.
type tr struct {
	typ, name string
	errs      []*FieldError
	warns     []Warning
	files     FileStore
}

func (t *tr) fail(path, format string, args ...any) {
	t.errs = append(t.errs, &FieldError{Type: t.typ, Resource: t.name, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func (t *tr) err() error {
	if len(t.errs) == 0 {
		return nil
	}
	return t.errs[0]
}

// check applies tab to the fields set in m (under path): warned ones are
// recorded, refused and unknown ones fail the resource.
func (t *tr) check(path string, m proto.Message, tab fieldTable) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return
	}
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		switch p, ok := tab[name]; {
		case !ok || p == refused:
			t.fail(join(path, name), "not supported by proxylab (it would change behaviour)")
		case p == warned:
			t.warns = append(t.warns, Warning{Type: t.typ, Resource: t.name, Field: join(path, name)})
		}
		return true
	})
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func idx(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// shortType is the resource kind of a type URL (Listener, Cluster …).
func shortType(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

// TableRows lists every field of every table as "message.field policy",
// sorted: what docs/xds.md must cover.
func TableRows() []string {
	var out []string
	for msg, t := range tables {
		for f, p := range t {
			out = append(out, string(msg)+"."+f+" "+p.String())
		}
	}
	slices.Sort(out)
	return out
}
