package filter

import "github.com/proxylab/proxylab/core/protocol"

// HeadStore is implemented by a Stream whose chain holds the request head
// while a decoder filter has it stopped (after DecodeHeaders returned Stop
// or StopAndBuffer). A filter resuming from an asynchronous answer (an
// authorization server's headers to add) type-asserts its Stream to
// HeadStore and changes the held head under the session (inside its Post
// function) before calling ContinueDecoding; later filters and the router
// see the change. RequestHead returns nil when no head is held. Slices the
// filter sets must stay valid until the stream's OnDestroy.
type HeadStore interface {
	RequestHead() *protocol.Head
}
