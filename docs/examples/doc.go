// Package examples holds the worked examples of docs/extending.md: each
// subpackage is one plugin (an LB policy, a transport, a crypto engine, an
// RPC codec) that a binary registers with one line in
// cmd/proxylab/builtins.go. The tests in
// cmd/proxylab (TestDocsExamples) build proxylab with those lines added and
// run each example end to end.
package examples
