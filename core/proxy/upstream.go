package proxy

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/proxylab/proxylab/core/protocol"
	"github.com/proxylab/proxylab/core/router"
	"github.com/proxylab/proxylab/core/stream"
)

func (s *httpStream) openUpstream(h *stream.Head) {
	if s.ids.spans != nil {
		s.spanTry()
	}
	s.up.cancel = s.host.HTTPPool().NewStream(&s.up, s.enc.Session(), &s.up)
	switch {
	case s.done: // the pool failed synchronously and replied
	case s.up.enc == nil:
		// Not ready yet: keep an owned copy of the head for OnPoolReady.
		s.saveHead(h)
	default:
		if s.replayable() {
			// A reused connection may have been closed by the server while
			// idle, or the route may retry: keep the head to send it again.
			s.saveHead(h)
		}
		s.up.enc.EncodeHead(h, s.reqEnd)
		s.armTryTimer()
	}
}

// headStore is reusable storage for a saved request head.
type headStore struct {
	arena  []byte
	fields []protocol.Field
}

// headStores keeps saved-head storage between requests without tying it to
// a connection, so idle connections hold none.
var headStores = sync.Pool{New: func() any { return new(headStore) }}

func (s *httpStream) saveHead(h *stream.Head) {
	if s.store == nil {
		s.store = headStores.Get().(*headStore)
		s.head.Headers.Fields = s.store.fields
	}
	s.store.arena = h.CloneInto(&s.head, s.store.arena)
	s.headSaved = true
}

// OnPoolReady sends the request on the new upstream stream.
func (u *upstreamRequest) OnPoolReady(enc stream.RequestEncoder, reused bool) {
	s := u.s
	u.cancel = nil
	if s.done {
		enc.Reset()
		return
	}
	u.enc, u.reused = enc, reused
	if !s.headSaved {
		return // synchronous first try: openUpstream encodes the live head
	}
	if s.tun != nil {
		enc.EncodeHead(&s.head, false) // its bytes wait for the upgrade
		s.armTryTimer()
		return
	}
	enc.EncodeHead(&s.head, s.reqEnd && len(s.pending) == 0 && s.pendingTrl == nil && !s.pendingEnd)
	for _, b := range s.pending {
		enc.EncodeData(b.Bytes(), false)
		b.Release()
	}
	s.pending, s.pendingLen = nil, 0
	switch {
	case s.pendingTrl != nil:
		enc.EncodeTrailers(s.pendingTrl)
	case s.pendingEnd:
		enc.EncodeData(nil, true)
	}
	if s.bufDisabled {
		s.bufDisabled = false
		s.enc.ReadDisable(false)
	}
	if !s.replayable() {
		s.headSaved = false // no retry possible: the copy is no longer needed
	}
	s.armTryTimer()
}

// replayable: the whole request is held (it ended with its head) and a
// retry could want it — a stale reused connection, or the route's policy.
func (s *httpStream) replayable() bool {
	return s.reqEnd && (s.up.reused || s.route.RetryOn&^router.RetryConnectFailure != 0)
}

// takeRetry reserves a retry within the request's, the cluster's and the
// budget's limits.
func (s *httpStream) takeRetry() bool {
	if s.retriesLeft <= 0 || !s.headSaved || s.done {
		return false
	}
	if !s.retrySlot {
		if !s.cluster.AdmitRetry() {
			if st := s.cluster.Stats; st != nil {
				st.UpstreamRqRetryOverflow.Inc(s.cm.id)
			}
			return false
		}
		s.retrySlot = true
	}
	s.retriesLeft--
	if st := s.cluster.Stats; st != nil {
		st.UpstreamRqRetry.Inc(s.cm.id)
	}
	return true
}

// sendElsewhere sends the held request to another host of the cluster (the
// same one only if the balancer has no other to give).
func (s *httpStream) sendElsewhere() {
	old, next := s.host, s.host
	for i := 0; i < len(s.cluster.Hosts()) && next == old; i++ {
		next = s.cluster.Choose(&s.lb)
	}
	if next == nil {
		next = old
	}
	old.ActiveRequests.Add(-1)
	next.ActiveRequests.Add(1)
	next.RqTotal.Inc(s.cm.id)
	s.host, s.upHost = next, next
	if s.ids.spans != nil {
		s.spanTry()
	}
	s.up = upstreamRequest{s: s}
	s.up.cancel = next.HTTPPool().NewStream(&s.up, s.enc.Session(), &s.up)
}

// retryElsewhere retries at once (the request never reached an upstream, or
// the connection broke before any response).
func (s *httpStream) retryElsewhere() bool {
	if !s.takeRetry() {
		return false
	}
	s.sendElsewhere()
	return true
}

// retryAfterBackoff abandons the current attempt and retries after an
// exponential backoff with full jitter.
func (s *httpStream) retryAfterBackoff() bool {
	if !s.takeRetry() {
		return false
	}
	s.abandonAttempt()
	ceiling := s.route.BackoffBase << min(s.attempt-1, 10)
	if ceiling > s.route.BackoffMax || ceiling <= 0 {
		ceiling = s.route.BackoffMax
	}
	attempt := s.attempt
	time.AfterFunc(rand.N(ceiling)+1, func() {
		sess := s.enc.Session()
		sess.Lock()
		defer sess.Unlock()
		if !s.done && s.attempt == attempt {
			s.sendElsewhere()
		}
	})
	return true
}

// abandonAttempt drops the current upstream attempt (its connection is
// closed; an HTTP/1 response cannot be skipped otherwise).
func (s *httpStream) abandonAttempt() {
	if s.tryTimer != nil {
		s.tryTimer.Stop()
	}
	if s.up.disabled {
		s.enc.ReadDisable(false)
	}
	if s.up.cancel != nil {
		s.up.cancel.Cancel()
	}
	if enc := s.up.enc; enc != nil {
		s.up.enc = nil
		enc.Reset()
	}
	s.up = upstreamRequest{s: s}
}

// armTryTimer starts the per-try timeout of the attempt just sent.
func (s *httpStream) armTryTimer() {
	s.attempt++
	d := s.route.PerTryTimeout
	if d <= 0 {
		return
	}
	attempt := s.attempt
	s.tryTimer = time.AfterFunc(d, func() {
		sess := s.enc.Session()
		sess.Lock()
		defer sess.Unlock()
		if s.done || s.attempt != attempt || s.up.gotHead {
			return
		}
		if s.takeRetry() {
			s.abandonAttempt()
			s.sendElsewhere()
			return
		}
		s.timedOut("upstream per-try timeout")
	})
}

func (u *upstreamRequest) OnPoolFailure(f stream.PoolFailure, err error) {
	u.cancel = nil
	s := u.s
	slog.Debug("proxy: upstream pool failure", "host", s.host.Address, "err", err)
	if f == stream.ConnectFailure || f == stream.ConnectTimeout {
		s.cluster.ReportConnectFailure(s.host)
	}
	if (f == stream.ConnectFailure || f == stream.ConnectTimeout) && s.route.RetryOn&router.RetryConnectFailure != 0 && s.retryElsewhere() {
		return // never sent: safe to send elsewhere, body included
	}
	flags := "UF"
	switch f {
	case stream.Overflow:
		flags = "UO"
		if st := s.cluster.Stats; st != nil {
			st.UpstreamRqPendingOverflow.Inc(s.cm.id)
		}
	case stream.CxOverflow:
		flags = "UO"
		if st := s.cluster.Stats; st != nil {
			st.UpstreamCxOverflow.Inc(s.cm.id)
		}
	}
	s.localReply(503, flags, f.String())
}

func (u *upstreamRequest) DecodeInterim(h *stream.Head) {
	if !u.s.done {
		u.s.enc.EncodeInterim(h)
	}
}

func (u *upstreamRequest) DecodeHead(h *stream.Head, end bool) {
	s := u.s
	if s.done {
		return
	}
	if s.tun != nil && u.tunnelResponse(h) {
		return
	}
	s.cluster.ReportResponse(s.host, h.Status)
	s.spanTryStatus(h)
	if s.bodyless && s.route.RetriesStatus(h.Status) && s.retryAfterBackoff() {
		return // this response is dropped; the retry's answers the client
	}
	if s.tryTimer != nil {
		s.tryTimer.Stop()
	}
	u.gotHead = true
	s.respStarted = true
	s.headSaved = false
	s.respAt, s.reqAt = time.Time{}, time.Time{}
	if !end { // (finish disarms otherwise)
		s.touch()
		s.schedule()
	}
	s.status = h.Status
	s.headerOps(&h.Headers, false)
	if st := s.cluster.Stats; st != nil && h.Status >= 100 && h.Status < 600 {
		st.UpstreamRqXX[h.Status/100].Inc(s.cm.id)
	}
	if end {
		s.finish()
	}
	s.enc.EncodeHead(h, end)
}

func (u *upstreamRequest) DecodeData(p []byte, end bool) {
	s := u.s
	if s.done {
		return
	}
	if s.tun != nil {
		u.tunnelUp(p, end)
		return
	}
	s.txBytes += int64(len(p))
	s.touch()
	if end {
		s.finish()
	}
	s.enc.EncodeData(p, end)
}

func (u *upstreamRequest) DecodeTrailers(t *protocol.Headers) {
	s := u.s
	if s.done {
		return
	}
	s.finish()
	s.enc.EncodeTrailers(t)
}

func (u *upstreamRequest) OnAboveWriteHighWatermark() {
	if !u.disabled && !u.s.done {
		u.disabled = true
		u.s.enc.ReadDisable(true)
	}
}

func (u *upstreamRequest) OnBelowWriteLowWatermark() {
	if u.disabled {
		u.disabled = false
		u.s.enc.ReadDisable(false)
	}
}

// OnReset: the upstream failed. Before any response byte a stale reused
// connection is retried once on the pool; otherwise the client gets a 502, or
// a reset if the response had started.
// resetDownstream aborts a response already under way, saying why when the
// codec can (an upstream cancellation stays a cancellation).
func resetDownstream(enc stream.ResponseEncoder, reason error) {
	if rr, ok := enc.(stream.ReasonResetter); ok {
		rr.ResetWith(reason)
		return
	}
	enc.Reset()
}

func (u *upstreamRequest) OnReset(reason error) {
	s := u.s
	s.flags = "UC"
	if s.done {
		if s.respStarted {
			resetDownstream(s.enc, reason)
		}
		return
	}
	if u.disabled {
		u.disabled = false
		s.enc.ReadDisable(false)
	}
	u.enc = nil
	stale := u.reused && errors.Is(reason, stream.ErrUpstreamReset) || errors.Is(reason, stream.ErrRefused)
	if !u.gotHead && stale && s.headSaved && !s.retried {
		s.retried = true
		if st := s.cluster.Stats; st != nil {
			st.UpstreamRqRetry.Inc(s.cm.id)
		}
		u.reused = false
		u.cancel = s.host.HTTPPool().NewStream(u, s.enc.Session(), u)
		return
	}
	if u.gotHead {
		s.finish()
		resetDownstream(s.enc, reason)
		return
	}
	if s.grpc && !s.grpcDeadline.IsZero() && !time.Now().Before(s.grpcDeadline) {
		// The upstream gave up on the call's deadline (gRPC servers reset
		// the stream when it passes): that is the deadline, not a failure.
		s.timedOut("gRPC deadline exceeded")
		return
	}
	if errors.Is(reason, stream.ErrUnencodable) {
		// The request cannot be written upstream as it is (e.g. an HTTP/2
		// request field HTTP/1.1 cannot carry): the client's fault, 400 like
		// Envoy's malformed request; no host is blamed, no retry.
		s.localReply(400, "DPE", "request not encodable for the upstream")
		return
	}
	s.cluster.ReportResponse(s.host, 0) // a reset before any response counts like a 5xx
	if s.bodyless && s.route.RetryOn&router.RetryReset != 0 && s.retryElsewhere() {
		return
	}
	var pe *protocol.Error
	if errors.As(reason, &pe) {
		s.localReply(502, "UPE", "upstream protocol error: "+pe.Reason)
		return
	}
	s.localReply(502, "UC", "upstream connection reset before response")
}
